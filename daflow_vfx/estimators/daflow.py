"""DA-Flow behind the engine's estimator contract.

The estimator owns the model on one device; each call converts a window of display-referred
frames with the weights' input transform, runs the network and hands back numpy flows. Padding
and tiling are the engine's job (frames arrive at a multiple of :attr:`stride`).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from ..errors import ModelError
from .base import FlowEstimator, WindowFlows

DEFAULT_ITERS = 12
_DTYPES = ("float32", "float16", "bfloat16")


class DAFlowEstimator(FlowEstimator):
    """A DA-Flow model (any variant) as a 3-frame window estimator with confidence."""

    window = 3
    provides_confidence = True

    def __init__(
        self,
        *,
        model,
        transform,
        name: str,
        weights_sha256: str | None,
        device: str = "cpu",
        dtype: str = "float32",
        iters: int = DEFAULT_ITERS,
        corr_impl: str = "auto",
    ) -> None:
        import torch

        from .. import __version__

        if dtype not in _DTYPES:
            raise ModelError(f"dtype {dtype!r} is not supported; use one of {', '.join(_DTYPES)}")
        self.name = name
        self.version = __version__
        self.weights_sha256 = weights_sha256
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        self.iters = iters
        self.corr_impl = corr_impl
        self.transform = transform
        self.model = model.to(self.device).eval()
        self.stride = model.stride

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        import torch

        from ..model.update import confidence_from_info

        f = frames.shape[0]
        # frames: [F, H, W, 3] -> x: [1, F, 3, H, W]
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)[None]
        x = self.transform(x.to(self.device))
        low = self.dtype != torch.float32
        # Reduced precision through autocast (weights stay float32), so numerics-sensitive parts
        # such as the correlation look-up and softmax stay in float32.
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if low else nullcontext()
        with torch.inference_mode(), ctx:
            out = self.model(x, iters=self.iters, corr_impl=self.corr_impl)
        flow = out.flow[0].float().permute(0, 2, 3, 1).cpu().numpy()  # [P, H, W, 2]
        conf = confidence_from_info(out.info[0].float()).cpu().numpy()  # [P, H, W]
        p = f - 1
        return WindowFlows(
            forward=flow[:p],
            backward=flow[p:],
            confidence_forward=conf[:p],
            confidence_backward=conf[p:],
        )


def _make(
    name: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    weights: str | None = None,
    iters: int | None = None,
    allow_random: bool = False,
) -> DAFlowEstimator:
    from ..engine import resolve_device
    from ..model.weights import build_model

    model, entry, digest = build_model(name, weights=weights, allow_random=allow_random)
    return DAFlowEstimator(
        model=model,
        transform=entry.transform,
        name=name,
        weights_sha256=digest,
        device=resolve_device(device),
        dtype=dtype,
        iters=iters or DEFAULT_ITERS,
    )


def make_daflow_compact(**kw) -> DAFlowEstimator:
    return _make("daflow-compact", **kw)


def make_daflow_compact_cnn(**kw) -> DAFlowEstimator:
    return _make("daflow-compact-cnn", **kw)


def make_daflow_full(**kw) -> DAFlowEstimator:
    return _make("daflow-full", **kw)
