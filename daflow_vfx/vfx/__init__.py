"""What users do with flow: retime / slow motion and stabilization.

The CLI, the Nuke plugin and the Blender extension all call these same functions:

- :func:`interpolate` synthesises a frame at any time t between two frames from their flows;
- :func:`retime` renders a whole frame map (speed, fps conversion or a timing curve);
- :func:`estimate_camera_motion` fits a robust global motion to a flow field;
- :func:`stabilize` smooths the camera path of a shot and re-frames it.

The implementations live in :mod:`.synthesis`, :mod:`.retiming` and :mod:`.stabilization`; they
load lazily so ``import daflow_vfx.vfx`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "interpolate": "synthesis",
    "interpolate_detailed": "synthesis",
    "retime": "retiming",
    "speed_map": "retiming",
    "fps_map": "retiming",
    "curve_map": "retiming",
    "estimate_camera_motion": "stabilization",
    "stabilize": "stabilization",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'daflow_vfx.vfx' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
