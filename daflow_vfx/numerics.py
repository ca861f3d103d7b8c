"""Reduced-precision numerics: how far bf16 / fp16 autocast moves DA-Flow's flow from float32.

:func:`autocast_epe` runs one fixed window through a DA-Flow estimator twice, in float32 and under
autocast, and reports the endpoint-error difference between the two flows (forward and backward).
The input is deterministic (:func:`fixed_window`), so the numbers compare across devices, dtypes and
versions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daflow_vfx.errors import UsageError

__all__ = ["AUTO_DTYPE", "DTYPES", "DTYPE_CHOICES", "REDUCED_DTYPES", "PrecisionCheck", "autocast_epe",
           "fixed_window", "native_bfloat16", "resolve_dtype"]

REDUCED_DTYPES = ("float16", "bfloat16")
DTYPES = ("float32", *REDUCED_DTYPES)  # every compute precision a learned model runs in
AUTO_DTYPE = "auto"
DTYPE_CHOICES = (AUTO_DTYPE, *DTYPES)  # what --dtype takes


def native_bfloat16(device: str) -> bool:
    """Whether ``device`` has bf16 arithmetic in hardware.

    CUDA: what ``torch.cuda.is_bf16_supported`` says (Ampere and later). CPU: AMX or AVX-512 BF16
    (Intel Sapphire Rapids and later, AMD Zen 4 and later), where oneDNN's bf16 convolutions and
    matrix products run several times faster than float32; elsewhere bf16 is emulated, and was 20x
    slower than float32 on an AMD EPYC without it (docs/benchmarks.md).
    """
    import torch

    kind = str(device).split(":")[0]
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        names = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence the getattr
        probes = [getattr(torch.cpu, name, None) for name in names]
        try:
            return any(bool(p()) for p in probes if p is not None)
        except RuntimeError:
            return False
    return False


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto``: bfloat16 where ``device`` computes it natively, else float32; others as given.

    bf16 autocast moves DA-Flow's flow by well under 0.05 px against float32 (the rule it had to meet
    to be a default; docs/benchmarks.md), and the network's time is in convolutions and matrix
    products, which bf16 hardware runs several times faster.
    """
    if dtype != AUTO_DTYPE:
        return dtype
    return "bfloat16" if native_bfloat16(device) else "float32"


@dataclass(frozen=True, kw_only=True)
class PrecisionCheck:
    """The flow of one window in ``dtype`` against float32, in pixels."""

    dtype: str
    device: str
    height: int
    width: int
    epe_mean: float  # mean |flow_dtype - flow_float32| over every pixel of every pair
    epe_max: float
    flow_mean: float  # mean |flow_float32|, the scale the difference is read against
    confidence_mean_abs: float  # mean |confidence_dtype - confidence_float32|, in [0, 1]


def fixed_window(*, frames: int = 3, height: int = 64, width: int = 96, seed: int = 0,
                 motion: tuple[int, int] = (2, 1)) -> np.ndarray:
    """A deterministic window ``[F, H, W, 3]`` in [0, 1]: smooth colour noise moving by ``motion``
    (dx, dy) whole pixels per frame (+y down), made with numpy only."""
    rng = np.random.default_rng(seed)
    dx, dy = motion
    margin = (frames + 1) * max(abs(dx), abs(dy)) + 8
    size_y, size_x = height + 2 * margin, width + 2 * margin
    base = np.zeros((size_y, size_x, 3), np.float32)
    for cell, weight in ((16, 1.0), (6, 0.6), (3, 0.4)):
        grid = rng.random((size_y // cell + 2, size_x // cell + 2, 3), dtype=np.float32)
        # nearest-neighbour upsampling then a box blur of the cell size: smooth, texture-like
        up = np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)[:size_y, :size_x]
        kernel = np.ones(cell, np.float32) / cell
        up = np.apply_along_axis(np.convolve, 0, up, kernel, mode="same")
        up = np.apply_along_axis(np.convolve, 1, up, kernel, mode="same")
        base += weight * up
    base -= base.min()
    base /= base.max()
    base = base * 0.9 + 0.05
    out = [np.roll(base, (k * dy, k * dx), axis=(0, 1))[margin:margin + height, margin:margin + width]
           for k in range(frames)]
    return np.stack(out).astype(np.float32)  # [F, H, W, 3]


def autocast_epe(estimator, *, dtype: str, frames: np.ndarray | None = None) -> PrecisionCheck:
    """EPE difference of ``dtype`` autocast (``float16`` or ``bfloat16``) against float32.

    ``estimator`` is a :class:`~daflow_vfx.estimators.daflow.DAFlowEstimator`; ``frames`` ``[F, H, W, 3]``
    (default :func:`fixed_window`) are padded to the estimator's stride and cropped back.
    """
    if dtype not in REDUCED_DTYPES:
        raise UsageError(f"dtype {dtype!r}: compare float16 or bfloat16 against float32")
    if not hasattr(estimator, "estimate_as"):
        raise UsageError(f"{estimator.name} has no reduced-precision path; use a DA-Flow model")
    if frames is None:
        window = fixed_window(frames=min(3, estimator.window))
    else:
        window = np.asarray(frames, dtype=np.float32)
    h, w = window.shape[1:3]
    stride = estimator.stride
    padded = np.pad(window, ((0, 0), (0, -h % stride), (0, -w % stride), (0, 0)), mode="edge")
    ref = estimator.estimate_as(padded, dtype="float32")
    low = estimator.estimate_as(padded, dtype=dtype)
    ref_flow = np.concatenate([ref.forward, ref.backward])[:, :h, :w]  # [P, H, W, 2]
    low_flow = np.concatenate([low.forward, low.backward])[:, :h, :w]
    epe = np.linalg.norm(low_flow - ref_flow, axis=-1)  # [P, H, W]
    conf_diff = 0.0
    if ref.confidence_forward is not None and low.confidence_forward is not None:
        ref_conf = np.concatenate([ref.confidence_forward, ref.confidence_backward])[:, :h, :w]
        low_conf = np.concatenate([low.confidence_forward, low.confidence_backward])[:, :h, :w]
        conf_diff = float(np.abs(low_conf - ref_conf).mean())
    return PrecisionCheck(
        dtype=dtype,
        device=str(getattr(estimator, "device", "cpu")),
        height=h,
        width=w,
        epe_mean=float(epe.mean()),
        epe_max=float(epe.max()),
        flow_mean=float(np.linalg.norm(ref_flow, axis=-1).mean()),
        confidence_mean_abs=conf_diff,
    )
