"""DAFlow Nuke plugin, loaded by Nuke at start-up (also in terminal and render sessions).

Adds the gizmo and toolset folders to Nuke's plugin path and the plugin folder to ``sys.path`` (for
``daflow_nuke``). No UI code here: menus live in ``menu.py``, which Nuke runs only with a GUI.
"""

import os

import nuke

_HERE = os.path.dirname(os.path.abspath(__file__))

nuke.pluginAddPath(os.path.join(_HERE, "gizmos"))
nuke.pluginAddPath(os.path.join(_HERE, "toolsets"))
nuke.pluginAddPath(_HERE)  # daflow_nuke (the node's button code) becomes importable
