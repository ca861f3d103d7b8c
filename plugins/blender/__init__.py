"""DAFlow VFX for Blender: motion vectors, retiming and stabilization from optical flow.

A thin adapter over the ``daflow_vfx`` package: the panel's actions run ``daflow-vfx`` in a background
process (never in Blender's UI thread) and the results come back as strips and compositor nodes.
register() and unregister() are exact inverses: every class, the ``Scene.daflow`` property and the
polling timer added by one are removed by the other.
"""

import bpy

from . import core, ops, ops_propagate, props, ui

CLASSES = (*props.CLASSES, *ops.CLASSES, *ops_propagate.CLASSES, *ui.CLASSES)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.daflow = bpy.props.PointerProperty(type=props.DaflowSettings)


def unregister():
    core.shutdown()
    del bpy.types.Scene.daflow
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
