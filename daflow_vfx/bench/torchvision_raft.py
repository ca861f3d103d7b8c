"""torchvision's RAFT, the speed benchmark's reference: loaded here, and only here, without torchvision's ops.

Why this module exists: ``import torchvision`` fails wherever its compiled ops do not match the installed
torch (PyPI's torchvision wheel beside a CPU-only torch), yet RAFT itself is pure Python. So
:func:`load_raft_module` may import ``torchvision.models.optical_flow`` behind stand-in package objects,
editing ``sys.modules`` and putting it back afterwards. That surgery is kept in this one small module,
for the benchmark only: nothing a render runs imports it, and nothing else edits ``sys.modules``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
import warnings

import numpy as np

from ..errors import ModelError
from ..estimators.base import FlowEstimator, WindowFlows

__all__ = ["TorchvisionRAFT", "load_raft_module", "one_line", "torchvision_version"]


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (a benchmark row's reason)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _drop_modules(top: str, keep: set[str]) -> None:
    for name in [n for n in sys.modules if (n == top or n.startswith(top + ".")) and n not in keep]:
        del sys.modules[name]


def load_raft_module(module: str = "torchvision") -> tuple[types.ModuleType, str]:
    """torchvision's ``models.optical_flow`` module and how it was loaded; :class:`ModelError` if neither
    way works.

    ``import torchvision`` is tried first. It fails where torchvision's compiled ops do not match the
    installed torch (for example the PyPI wheel, built against CUDA torch, beside a CPU-only torch:
    its ``__init__`` registers kernels for ops its ``_C`` library could not load). RAFT itself is pure
    Python, so the fallback registers empty package objects for ``torchvision`` and
    ``torchvision.models`` whose ``__path__`` is the installed folder, imports only
    ``torchvision.models.optical_flow`` (and the few pure-Python modules it needs), then removes the
    stand-ins from ``sys.modules`` so later imports see torchvision exactly as before.
    ``module`` is the top-level name to load; tests pass a missing one to exercise the failure path.
    """
    before = set(sys.modules)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(module)
            flow_module = importlib.import_module(f"{module}.models.optical_flow")
        return flow_module, f"import {module}"
    except Exception as exc:  # ImportError, or the RuntimeError/OSError of mismatched compiled ops
        exc_first, first = exc, one_line(exc)
    _drop_modules(module, before)  # what the failed import left half-initialised
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        missing = isinstance(exc_first, ModuleNotFoundError) and exc_first.name == module
        reason = f"{module} is not installed" if missing else f"{module} cannot be imported ({first})"
        raise ModelError(reason)
    root = spec.submodule_search_locations[0]
    try:
        for name, path in ((module, root), (f"{module}.models", os.path.join(root, "models"))):
            package = types.ModuleType(name)
            package.__path__ = [path]
            package.__package__ = name
            sys.modules[name] = package
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flow_module = importlib.import_module(f"{module}.models.optical_flow")
    except Exception as exc:
        reason = (
            f"import {module} failed ({first}); loading only its RAFT modules failed too ({one_line(exc)})"
        )
        raise ModelError(reason) from None
    finally:
        _drop_modules(module, before)
    how = f"RAFT loaded from {module}'s pure-Python modules; `import {module}` failed: {first}"
    return flow_module, how


def torchvision_version(module: str = "torchvision") -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


class TorchvisionRAFT(FlowEstimator):
    """torchvision's RAFT (random weights) behind the estimator contract, forward and backward batched."""

    window = 2
    stride = 8

    def __init__(
        self, *, arch: str, device: str = "cpu", iters: int = 12, module: str = "torchvision"
    ) -> None:
        import torch

        flow_module, _ = load_raft_module(module)
        self.name = arch
        self.version = f"torchvision-{torchvision_version(module) or 'unknown'}"
        self.device = torch.device(device)
        self.iters = iters
        self.model = getattr(flow_module, arch)(weights=None, progress=False).to(self.device).eval()

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        import torch

        # frames: [2, H, W, 3] display [0, 1] -> [2, 3, H, W] in [-1, 1], RAFT's input range
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)
        x = x.to(self.device) * 2.0 - 1.0
        with torch.inference_mode():
            # batch of two: (frame0 -> frame1) and (frame1 -> frame0); the last iteration's flow
            flow = self.model(x, x.flip(0), num_flow_updates=self.iters)[-1]  # [2, 2, H, W]
        flow = flow.float().permute(0, 2, 3, 1).cpu().numpy()  # [2, H, W, 2]
        return WindowFlows(forward=flow[:1], backward=flow[1:])

