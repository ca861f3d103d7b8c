"""Correspondence maps as pictures: sampling through a map, composing maps, Nuke STMaps, paint over a plate.

A *map* here is float32 ``[H, W, 2]``: for every pixel (x, y) of one frame, the position (pixel indices,
+x right, +y down, top-left pixel centre at (0, 0)) of the same surface point in another frame. The
paint of a reference frame lands on frame k as ``paint(map_k(x))``: a backward warp, so every output
pixel gets exactly one sample and the paint neither tears nor piles up.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "compose",
    "fill_map",
    "identity_map",
    "inside",
    "map_to_stmap",
    "over",
    "sample",
    "stmap_to_map",
]


def identity_map(h: int, w: int) -> np.ndarray:
    """The map of a frame onto itself, ``[H, W, 2]`` float32."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.stack([gx, gy], axis=-1)


def sample(image: np.ndarray, where: np.ndarray, *, border: str = "zero") -> np.ndarray:
    """``image`` [h, w, C] (or [h, w]) sampled bilinearly at ``where`` [H, W, 2] -> [H, W, C] (or [H, W]).

    ``border``: ``zero`` outside the image (paint ends at the frame edge), ``edge`` to repeat the
    border pixels (maps and plates, whose values continue past the edge).
    """
    import cv2

    src = np.ascontiguousarray(image, dtype=np.float32)
    squeeze = src.ndim == 2
    if squeeze:
        src = src[..., None]
    mode = cv2.BORDER_REPLICATE if border == "edge" else cv2.BORDER_CONSTANT
    map_x = np.ascontiguousarray(where[..., 0], dtype=np.float32)
    map_y = np.ascontiguousarray(where[..., 1], dtype=np.float32)
    # cv2.remap takes at most 4 channels at a time
    parts = []
    for c in range(0, src.shape[2], 4):
        part = cv2.remap(src[..., c:c + 4], map_x, map_y, cv2.INTER_LINEAR, borderMode=mode, borderValue=0)
        parts.append(part[..., None] if part.ndim == 2 else part)
    out = np.concatenate(parts, axis=2)
    return out[..., 0] if squeeze else out


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer(inner(x))`` for maps ``inner`` [H, W, 2] (frame k -> frame a) and ``outer`` [h, w, 2]
    (frame a -> frame r) -> [H, W, 2] (frame k -> frame r). ``outer`` is extended past its edge linearly
    rather than clamped, so points that leave frame a still land where the motion carries them."""
    h, w = outer.shape[:2]
    offsets = outer - identity_map(h, w)  # [h, w, 2] displacement: smooth, safe to repeat at the edge
    return inner + sample(offsets, inner, border="edge")


def inside(where: np.ndarray, h: int, w: int) -> np.ndarray:
    """[H, W] bool: ``where`` [H, W, 2] lies on an ``h`` x ``w`` frame (within its pixel footprint)."""
    x, y = where[..., 0], where[..., 1]
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def fill_map(where: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``where`` [H, W, 2] with the pixels of low ``weight`` [H, W] replaced by a smooth continuation of
    their neighbours' displacement: the best guess for a hidden surface that will come back."""
    from daflow_vfx.vfx.synthesis import fill_holes

    h, w = where.shape[:2]
    grid = identity_map(h, w)
    # filled as displacements: a surface's motion is smooth, its absolute positions are a ramp
    hard = (weight >= 0.5).astype(np.float32)
    return grid + fill_holes(where - grid, hard)


def map_to_stmap(where: np.ndarray, alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nuke STMap ``[H, W, 4]`` float32 of a map ``where`` [H, W, 2] into a frame of ``size`` (h, w):
    R = s = (x + 0.5) / w, G = t = 1 - (y + 0.5) / h (normalised, pixel centres, origin bottom-left as
    Nuke's STMap node reads them), B = 0, A = ``alpha`` [H, W] (where the surface is seen)."""
    h, w = size
    out = np.zeros((*where.shape[:2], 4), dtype=np.float32)
    out[..., 0] = (where[..., 0].astype(np.float64) + 0.5) / w
    out[..., 1] = 1.0 - (where[..., 1].astype(np.float64) + 0.5) / h
    out[..., 3] = alpha
    return out


def stmap_to_map(st: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The inverse of :func:`map_to_stmap`: pixel positions ``[H, W, 2]`` from an STMap's R, G."""
    h, w = size
    x = st[..., 0].astype(np.float64) * w - 0.5
    y = (1.0 - st[..., 1].astype(np.float64)) * h - 0.5
    return np.stack([x, y], axis=-1).astype(np.float32)


def over(paint: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """Premultiplied ``paint`` [H, W, 4] over ``plate`` [H, W, 3] -> [H, W, 3] (any values: linear in,
    linear out)."""
    alpha = paint[..., 3:4]
    return (paint[..., :3] + (1.0 - alpha) * plate[..., :3]).astype(np.float32)
