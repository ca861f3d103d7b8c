"""What users do with flow: retime / slow motion and stabilization.

The CLI, the Nuke plugin and the Blender extension all call these same functions:

- :func:`interpolate` synthesises a frame at any time t between two frames from their flows;
- :func:`retime` renders a whole frame map (speed, fps conversion or a timing curve);
- :func:`estimate_camera_motion` fits a robust global motion to a flow field;
- :func:`stabilize` smooths the camera path of a shot and re-frames it;
- :func:`propagate` carries paint made on one frame along the surface through the shot.

The implementations live in :mod:`.synthesis`, :mod:`.timing`, :mod:`.retiming`, :mod:`.camera_motion`,
:mod:`.camera_path`, :mod:`.stabilization`, :mod:`.propagation`, :mod:`.correspondence` and
:mod:`.paint_maps`; they load lazily so ``import daflow_vfx.vfx`` stays cheap.
Everything here is array code: the commands that read plates and write files are :mod:`daflow_vfx.jobs`.
"""

from __future__ import annotations

from daflow_vfx._lazy import lazy_getattr

_EXPORTS = {
    "interpolate": "synthesis",
    "interpolate_detailed": "synthesis",
    "retime": "retiming",
    "speed_map": "timing",
    "fps_map": "timing",
    "curve_map": "timing",
    "estimate_camera_motion": "camera_motion",
    "stabilize": "stabilization",
    "propagate": "propagation",
    "PropagateResult": "propagation",
    "TrackSettings": "correspondence",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
