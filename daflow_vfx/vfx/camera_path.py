"""The camera path of a shot and how it is smoothed: accumulated motions, their parameters, Gaussian
and L1-optimal smoothing (conventions in :mod:`.camera_motion`).

- ``path[n]`` is the accumulated motion, frame-0 pixel -> frame-n pixel (``path[0]`` is the identity).
- The smoothed path (the virtual, stabilized camera) has the same convention.
- Paths are smoothed as parameters about the frame centre (:func:`path_parameters`), not as matrices.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from daflow_vfx.errors import check_choice
from daflow_vfx.vfx.camera_motion import (
    MODES,
    apply_matrix,
    corner_pixels,
    frame_centre,
    normalise,
    translation,
)

log = logging.getLogger(__name__)

__all__ = [
    "L1_WEIGHTS",
    "camera_path",
    "l1_optimal_path",
    "matrices_from_parameters",
    "parameter_bounds",
    "path_parameters",
    "smooth_gaussian",
]

# Grundmann et al. 2011, section 3: weights of |D1|, |D2|, |D3| in the L1 path objective. The large D3
# weight makes the transitions between constant and linear segments parabolic (smooth ease in/out).
L1_WEIGHTS = (10.0, 1.0, 100.0)


def camera_path(motions: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Accumulate per-pair motions ``[N-1, 3, 3]`` (frame n -> n+1) into the path ``[N, 3, 3]``:
    ``path[n]`` maps frame-0 pixels to frame-n pixels, ``path[0]`` is the identity."""
    motions = np.asarray(motions, dtype=np.float64).reshape(-1, 3, 3)
    path = np.empty((len(motions) + 1, 3, 3))
    path[0] = np.eye(3)
    for n, m in enumerate(motions):
        path[n + 1] = normalise(m @ path[n])
    return path


def path_parameters(path: np.ndarray, *, mode: str, size: tuple[int, int]) -> np.ndarray:
    """Smoothable parameters ``[N, P]`` of a path ``[N, 3, 3]``, about the frame centre.

    translation: (tx, ty); similarity: (tx, ty, rotation in radians, unwrapped, log scale);
    affine: the six entries of the centred matrix; perspective: where the four corner pixels go
    (x0, y0, ..., x3, y3). Rotation about the centre keeps translation and rotation apart, so smoothing
    one does not leak into the other.
    """
    check_choice(mode, MODES, "mode")
    cx, cy = frame_centre(size)
    to_c, from_c = translation(-cx, -cy), translation(cx, cy)
    if mode == "perspective":
        corners = corner_pixels(size)
        return np.stack([apply_matrix(m, corners).ravel() for m in path])
    centred = np.stack([to_c @ m @ from_c for m in path])  # [N, 3, 3]
    if mode == "translation":
        return centred[:, :2, 2].copy()
    if mode == "similarity":
        a = (centred[:, 0, 0] + centred[:, 1, 1]) / 2.0
        b = (centred[:, 1, 0] - centred[:, 0, 1]) / 2.0
        theta = np.unwrap(np.arctan2(b, a))
        return np.stack([centred[:, 0, 2], centred[:, 1, 2], theta, np.log(np.hypot(a, b))], axis=1)
    return centred[:, :2, :].reshape(len(path), 6).copy()  # affine


def matrices_from_parameters(params: np.ndarray, *, mode: str, size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`path_parameters`: ``[N, P]`` -> ``[N, 3, 3]``."""
    cx, cy = frame_centre(size)
    to_c, from_c = translation(-cx, -cy), translation(cx, cy)
    out = np.empty((len(params), 3, 3))
    for n, p in enumerate(np.asarray(params, dtype=np.float64)):
        if mode == "perspective":
            import cv2

            m = cv2.getPerspectiveTransform(corner_pixels(size).astype(np.float32),
                                            p.reshape(4, 2).astype(np.float32))
            out[n] = normalise(m.astype(np.float64))
            continue
        if mode == "translation":
            centred = translation(p[0], p[1])
        elif mode == "similarity":
            s = math.exp(p[3])
            c, si = s * math.cos(p[2]), s * math.sin(p[2])
            centred = np.array([[c, -si, p[0]], [si, c, p[1]], [0.0, 0.0, 1.0]])
        else:
            centred = np.vstack([p.reshape(2, 3), [0.0, 0.0, 1.0]])
        out[n] = from_c @ centred @ to_c
    return out


def parameter_bounds(mode: str, size: tuple[int, int], margin: float) -> np.ndarray:
    """How far (per parameter) the L1 path may leave the original path: ``margin`` of the frame."""
    h, w = size
    if mode == "translation":
        return np.array([margin * w, margin * h])
    if mode == "similarity":
        # a rotation of theta about the centre moves the corners by theta * half-diagonal
        theta = margin * min(w, h) / math.hypot(w, h)  # corners move by half the margin
        return np.array([margin * w, margin * h, theta, margin])
    if mode == "affine":
        return np.array([margin, margin, margin * w, margin, margin, margin * h])
    return np.tile([margin * w, margin * h], 4)


# --------------------------------------------------------------------------------------------------
# smoothing


def smooth_gaussian(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian local-linear smoothing of ``values`` ``[N]`` or ``[N, P]`` along frames (sigma in frames).

    Each frame gets the value at that frame of a straight line fitted with Gaussian weights: in the
    middle of a shot this equals a plain Gaussian blur, and at the ends it still follows a pan (a plain
    blur with edge padding would flatten it; odd reflection would pin the end frames to their shaky
    values).
    """
    x = np.asarray(values, dtype=np.float64)
    flat = x.reshape(len(x), -1)  # [N, P]
    n = len(flat)
    if sigma <= 0 or n < 3:
        return x.copy()
    radius = min(int(math.ceil(4.0 * sigma)), n - 1)
    pad = np.zeros((n + 2 * radius, flat.shape[1]))
    pad[radius:radius + n] = flat
    valid = np.zeros(n + 2 * radius)
    valid[radius:radius + n] = 1.0
    s0 = np.zeros(n)
    s1 = np.zeros(n)
    s2 = np.zeros(n)
    t0 = np.zeros_like(flat)
    t1 = np.zeros_like(flat)
    for d in range(-radius, radius + 1):
        g = math.exp(-0.5 * (d / sigma) ** 2)
        v = valid[radius + d:radius + d + n] * g
        xs = pad[radius + d:radius + d + n]
        s0 += v
        s1 += v * d
        s2 += v * d * d
        t0 += v[:, None] * xs
        t1 += (v * d)[:, None] * xs
    det = s0 * s2 - s1 * s1
    ok = det > 1e-9 * np.maximum(s0 * s2, 1e-300)
    safe = np.where(ok, det, 1.0)
    line = (s2[:, None] * t0 - s1[:, None] * t1) / safe[:, None]
    out = np.where(ok[:, None], line, t0 / s0[:, None])
    return out.reshape(x.shape)


def l1_optimal_path(values: np.ndarray, *, bound: float | np.ndarray,
                    weights: tuple[float, float, float] = L1_WEIGHTS,
                    ends: tuple[float, float] | None = None) -> np.ndarray:
    """The L1-optimal path ``[N]`` near ``values`` ``[N]`` (Grundmann, Kwatra, Essa, CVPR 2011).

    Minimises ``w1 |D1 s| + w2 |D2 s| + w3 |D3 s|`` (sums over frames of the first, second and third
    differences) subject to ``|s - values| <= bound``, as a linear programme with slack variables solved
    by HiGHS. L1 norms make most differences exactly zero, so the path is made of constant (D1 = 0),
    linear (D2 = 0) and parabolic (D3 = 0) segments: a camera that holds, pans at constant speed, or
    eases between the two, never wobbles. ``bound`` (scalar or ``[N]``) is how far the virtual camera
    may leave the real one (the crop margin); without it the optimum is a locked-off camera.

    ``ends`` pins the first and last values of the path (each clipped into its bound). Without it the
    optimum lags a pan by the whole bound at both ends of the shot, since any lag shortens sum |D1|:
    on a short shot that visibly slows the pan. Pinned ends fix the total travel, so |D1| no longer pays
    for lagging and the pan keeps its speed.
    """
    from scipy import sparse
    from scipy.optimize import linprog

    p = np.asarray(values, dtype=np.float64).ravel()
    n = len(p)
    if n < 3:
        return p.copy()
    r = np.broadcast_to(np.asarray(bound, dtype=np.float64), (n,))
    # Scale to O(1) for the solver's tolerances; the problem is equivariant under scale and offset.
    offset = float(p.mean())
    unit = max(float(np.abs(p - offset).max()), float(r.max()), 1e-12)
    q, rq = (p - offset) / unit, r / unit

    diffs = []
    d = sparse.identity(n, format="csr")
    for _ in range(3):
        d = (d[1:] - d[:-1]).tocsr()
        diffs.append(d)
    counts = [m.shape[0] for m in diffs]  # n-1, n-2, n-3
    total = n + sum(counts)
    cost = np.concatenate([np.zeros(n)] + [np.full(c, wt) for c, wt in zip(counts, weights, strict=True)])
    blocks = []
    start = n
    for m, c in zip(diffs, counts, strict=True):
        if c == 0:
            continue
        eye = sparse.identity(c, format="csr")
        slack = sparse.hstack([sparse.csr_matrix((c, start)), -eye,
                               sparse.csr_matrix((c, total - start - c))]).tocsr()
        ds = sparse.hstack([m, sparse.csr_matrix((c, total - n))]).tocsr()
        blocks += [ds + slack, -ds + slack]  # D s - e <= 0 and -D s - e <= 0, i.e. |D s| <= e
        start += c
    a_ub = sparse.vstack(blocks).tocsc()
    bounds = [(float(v - b), float(v + b)) for v, b in zip(q, rq, strict=True)] + [(0.0, None)] * (total - n)
    if ends is not None:
        for index, value in ((0, ends[0]), (n - 1, ends[1])):
            lo, hi = bounds[index]
            pinned = min(max((float(value) - offset) / unit, lo), hi)
            bounds[index] = (pinned, pinned)
    result = linprog(cost, A_ub=a_ub, b_ub=np.zeros(a_ub.shape[0]), bounds=bounds, method="highs")
    if result.status != 0 or result.x is None:
        log.warning("L1 camera path: the solver failed (%s); keeping the original path", result.message)
        return p.copy()
    return result.x[:n] * unit + offset
