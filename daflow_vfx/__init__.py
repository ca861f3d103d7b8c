"""daflow-vfx: optical flow for VFX pipelines.

Public API::

    import daflow_vfx
    flow = daflow_vfx.estimate_flow(frame1, frame2)   # [H, W, 2] float32, pixels, +x right, +y down
    engine = daflow_vfx.FlowEngine("dis")

Importing the package is cheap: the names above load on first use (PEP 562), so
``import daflow_vfx`` never imports torch, OpenCV, Nuke or bpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["FlowEngine", "__version__", "estimate_flow"]

# public name -> module that defines it, imported on first attribute access
_LAZY = {
    "estimate_flow": "daflow_vfx.engine",
    "FlowEngine": "daflow_vfx.engine",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from daflow_vfx.engine import FlowEngine, estimate_flow


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'daflow_vfx' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
