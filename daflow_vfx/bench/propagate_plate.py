"""The test plate of `bench propagate`: a textured plane under perspective motion, crossed by a disc.

Every frame is rendered from the plane's texture through a known homography ``H_k`` (texture -> frame
pixels), so where a point of the reference frame is on frame k is exact: ``H_k H_r^-1``. A textured disc
moves across in screen space, over the painted spot in the middle of the shot and nowhere near it on the
reference frame, so "truly occluded" is known pixel by pixel. The clean clip is then degraded with a
`degrade` preset (blur, noise, resampling, compression, motion blur from the true flow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["TestPlate", "make_test_plate", "paint_disc", "apply_homography"]


@dataclass(kw_only=True)
class TestPlate:
    frames: np.ndarray  # [N, H, W, 3] degraded display [0, 1]
    clean: np.ndarray  # [N, H, W, 3] before degradation
    homographies: np.ndarray  # [N, 3, 3] texture -> frame pixels
    occluder: np.ndarray  # [N, H, W] bool: the disc covers the plane here
    paint_centre: tuple[float, float]  # on frame 0, pixels


def apply_homography(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` [..., 2] through the 3x3 ``m`` (homogeneous divide) -> [..., 2] float64."""
    p = np.asarray(points, dtype=np.float64)
    den = m[2, 0] * p[..., 0] + m[2, 1] * p[..., 1] + m[2, 2]
    x = (m[0, 0] * p[..., 0] + m[0, 1] * p[..., 1] + m[0, 2]) / den
    y = (m[1, 0] * p[..., 0] + m[1, 1] * p[..., 1] + m[1, 2]) / den
    return np.stack([x, y], axis=-1)


def _translate(x: float, y: float) -> np.ndarray:
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float64)


def _homography(k: int, width: int, height: int, texture: tuple[int, int]) -> np.ndarray:
    """Texture -> frame k: a camera that pans, rolls, pushes in and tilts (scaled to the frame size)."""
    unit = width / 320.0
    tx = -1.1 * k * unit + 2.0 * unit * math.sin(k / 6.0)  # pan with a little wobble: not a pure ramp
    ty = 0.45 * k * unit
    angle = 0.003 * k
    scale = 1.0 + 0.005 * k
    tilt = 0.0012 * k / width  # perspective: one side of the plane recedes as the shot goes on
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    similarity = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)
    perspective = np.array([[1, 0, 0], [0, 1, 0], [tilt, 0.4 * tilt, 1]], np.float64)
    return (_translate(width / 2 + tx, height / 2 + ty) @ perspective @ similarity
            @ _translate(-texture[1] / 2, -texture[0] / 2))


def make_test_plate(*, frames: int = 49, width: int = 320, height: int = 192, seed: int = 0,
                    preset: str | None = "severe") -> TestPlate:
    """The plate, numbered 0 .. frames-1 with the reference at 0; ``preset`` None leaves it clean."""
    import cv2

    from daflow_vfx.demo import _value_noise
    from daflow_vfx.vfx.paint_maps import identity_map

    rng = np.random.default_rng(seed)
    tex_h, tex_w = 2 * height, 2 * width
    texture = _value_noise(rng, tex_h, tex_w, [48, 16, 6, 3])  # [Ht, Wt, 3]
    radius = 0.14 * height
    size = int(2 * radius + 6)
    cy_, cx_ = np.mgrid[0:size, 0:size]
    stripes = ((cx_ // 4) % 2).astype(np.float32)[..., None]  # [S, S, 1]
    # cool stripes, unlike the plane's colours
    disc_tex = stripes * np.array([0.2, 0.35, 0.9], np.float32) + (1 - stripes) * 0.05
    grid = identity_map(height, width).astype(np.float64)  # [H, W, 2]
    homs = np.stack([_homography(k, width, height, (tex_h, tex_w)) for k in range(frames)])
    centre = (width / 2.0, height / 2.0)
    # the disc crosses the painted spot's path early in the shot, and is gone well before its end
    mid = round(0.4 * (frames - 1))
    meet = apply_homography(homs[mid] @ np.linalg.inv(homs[0]), np.array(centre))
    velocity = np.array([6.0, -1.2]) * (width / 320.0) * (48.0 / max(frames - 1, 1))
    clean = np.empty((frames, height, width, 3), np.float32)
    occluder = np.empty((frames, height, width), bool)
    disc_at = [meet + velocity * (k - mid) for k in range(frames)]
    for k in range(frames):
        src = apply_homography(np.linalg.inv(homs[k]), grid).astype(np.float32)  # [H, W, 2] texture px
        plane = cv2.remap(texture, src[..., 0], src[..., 1], cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT101)
        dx, dy = grid[..., 0] - disc_at[k][0], grid[..., 1] - disc_at[k][1]
        fg = cv2.remap(disc_tex, (dx + size / 2).astype(np.float32), (dy + size / 2).astype(np.float32),
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        alpha = np.clip(radius + 0.5 - np.hypot(dx, dy), 0.0, 1.0)[..., None].astype(np.float32)
        clean[k] = np.clip(alpha * fg + (1 - alpha) * plane, 0.0, 1.0)
        occluder[k] = alpha[..., 0] >= 0.5
    degraded = clean
    if preset is not None:
        from daflow_vfx.degrade import degrade_clip

        flows = np.empty((frames - 1, height, width, 2), np.float32)  # true forward flow, for motion blur
        for k in range(frames - 1):
            nxt = apply_homography(homs[k + 1] @ np.linalg.inv(homs[k]), grid) - grid
            flows[k] = np.where(occluder[k][..., None], velocity, nxt)
        degraded = degrade_clip(clean, preset=preset, seed=seed, flows_forward=flows)
    return TestPlate(frames=degraded.astype(np.float32), clean=clean, homographies=homs, occluder=occluder,
                     paint_centre=centre)


def paint_disc(height: int, width: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """A premultiplied RGBA patch ``[H, W, 4]``: a disc of flat grey, the usual clean-up fill."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    alpha = np.clip(radius + 0.5 - np.hypot(xs - centre[0], ys - centre[1]), 0.0, 1.0)
    out = np.zeros((height, width, 4), np.float32)
    out[..., :3] = 0.5 * alpha[..., None]
    out[..., 3] = alpha
    return out
