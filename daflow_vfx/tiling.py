"""Padding to an estimator's stride and overlapping, feather-blended tiles: the engine's pixel plumbing.

Frames are padded on the bottom and right by replicating the edge, so the flows of the real pixels are
cropped back out unchanged in position. Tiles overlap by ``pad`` pixels on every side and are blended
with weights that fall linearly across the overlap, so no seam shows where two tiles meet.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from daflow_vfx.estimators.base import WindowFlows

__all__ = ["blend_tiles", "pad_to_stride", "ramp", "round_up", "tile_region", "tile_spans"]


def pad_to_stride(frames: np.ndarray, stride: int) -> np.ndarray:
    """Replicate-pad ``[..., H, W, C]`` (one window ``[F, H, W, C]`` or a batch ``[B, F, H, W, C]``) on
    the bottom and right so H and W are multiples of ``stride``."""
    h, w = frames.shape[-3:-1]
    ph, pw = (-h) % stride, (-w) % stride
    if ph == 0 and pw == 0:
        return frames
    lead = [(0, 0)] * (frames.ndim - 3)
    return np.pad(frames, (*lead, (0, ph), (0, pw), (0, 0)), mode="edge")


def tile_spans(size: int, tile: int) -> list[tuple[int, int]]:
    """Split ``0 .. size`` into near-equal core spans of at most ``tile`` pixels."""
    count = max(1, math.ceil(size / tile))
    edges = [round(i * size / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def tile_region(size: int, tile: int, pad: int) -> int:
    """The largest extent an estimator sees along one axis when ``size`` is cut into ``tile`` tiles
    with ``pad`` pixels of overlap: the longest core span plus the overlap, at most the whole axis."""
    core = max(end - start for start, end in tile_spans(size, tile))
    return min(size, core + 2 * pad)


def round_up(value: int, stride: int) -> int:
    return -(-value // stride) * stride


def ramp(length: int, before: int, after: int) -> np.ndarray:
    """1-D feather weights ``[length]``: 1 over the core, falling linearly across the overlap margins.

    The margin pixels nearest the tile edge get the least weight because the estimator sees the
    least context there; every pixel lies in some tile's core, so the weights never sum to zero.
    """
    weights = np.ones(length, dtype=np.float32)
    if before:
        weights[:before] = (np.arange(before, dtype=np.float32) + 0.5) / (before + 0.5)
    if after:
        weights[length - after:] = ((np.arange(after, dtype=np.float32) + 0.5) / (after + 0.5))[::-1]
    return weights


def blend_tiles(estimate: Callable[[np.ndarray], WindowFlows], frames: np.ndarray, *, tile: int,
                pad: int) -> WindowFlows:
    """The flows of ``frames`` ``[F, H, W, 3]`` computed tile by tile with ``estimate`` (any size in,
    flows of that size out) and blended back with feathered weights."""
    pairs, h, w = frames.shape[0] - 1, frames.shape[1], frames.shape[2]
    acc: dict[str, np.ndarray] = {}
    weight_sum = np.zeros((h, w), dtype=np.float32)  # [H, W]
    for y0, y1 in tile_spans(h, tile):
        for x0, x1 in tile_spans(w, tile):
            ey0, ey1, ex0, ex1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
            part = estimate(frames[:, ey0:ey1, ex0:ex1])
            weight = np.outer(ramp(ey1 - ey0, y0 - ey0, ey1 - y1), ramp(ex1 - ex0, x0 - ex0, ex1 - x1))
            weight_sum[ey0:ey1, ex0:ex1] += weight
            for key in ("forward", "backward", "confidence_forward", "confidence_backward"):
                value = getattr(part, key)
                if value is None:
                    continue
                if key not in acc:
                    acc[key] = np.zeros((pairs, h, w, *value.shape[3:]), dtype=np.float32)
                wgt = weight if value.ndim == 3 else weight[..., None]
                acc[key][:, ey0:ey1, ex0:ex1] += value * wgt
    for value in acc.values():
        value /= weight_sum if value.ndim == 3 else weight_sum[..., None]
    return WindowFlows(
        forward=acc["forward"],  # [F-1, H, W, 2]
        backward=acc["backward"],
        confidence_forward=acc.get("confidence_forward"),  # [F-1, H, W]
        confidence_backward=acc.get("confidence_backward"),
    )
