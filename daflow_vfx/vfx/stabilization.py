"""Stabilization from optical flow: camera motion, path smoothing, framing, warping, STMaps.

Conventions (every matrix in this module and in the ``.stabilize.json`` sidecar):

- Pixel coordinates are *pixel indices*: +x right, +y down, the centre of the top-left pixel at (0, 0) and
  of the bottom-right one at (W - 1, H - 1), as in the ``.flo`` flow convention and OpenCV's warps.
- A matrix is a 3x3 float64 homography on column vectors ``[x, y, 1]``; apply it with a homogeneous
  divide. Translation, similarity and affine matrices have a last row of ``[0, 0, 1]``.
- ``motion[n]`` (from :func:`estimate_camera_motion`) maps a pixel of frame n to where the same scene point
  is in frame n+1: the global part of the forward flow, ``p_{n+1} ~ motion[n] @ p_n``.
- ``path[n]`` is the accumulated motion, frame-0 pixel -> frame-n pixel (``path[0]`` is the identity).
- ``smoothed[n]`` is the virtual (stabilized) camera, same convention as ``path``.
- ``transforms[n]`` maps an *output* pixel of stabilized frame n to the *source* pixel of plate frame n
  it is sampled from (``transforms[n] = path[n] @ inv(smoothed[n]) @ crop``); the stabilized frame is
  ``out(q) = plate(transforms[n] @ q)``. This is what the JSON sidecar stores.

Pipeline: flow -> :func:`estimate_camera_motion` per frame pair (robust IRLS or RANSAC, confidence
weighted, so moving foreground is ignored) -> :func:`camera_path` -> :func:`smooth_parameters` on the
path's parameters (Gaussian local-linear, L1-optimal after Grundmann et al. 2011, or locked) ->
:func:`auto_crop` -> :func:`warp_frame` / :func:`stmap`. :func:`stabilize` runs all of it on arrays;
:func:`run_stabilize` is `daflow-vfx stabilize` on files.

Plates are warped in their own colour space (linear in, linear out); flows only ever see display values.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from daflow_vfx.errors import (
    InputError,
    MissingFramesError,
    SequenceTooShortError,
    UsageError,
)

log = logging.getLogger(__name__)

__all__ = [
    "FILLS",
    "FITS",
    "INTERPOLATIONS",
    "METHODS",
    "MODES",
    "StabilizeJob",
    "StabilizePlan",
    "StabilizeReport",
    "StabilizeResult",
    "StabilizeSettings",
    "auto_crop",
    "camera_path",
    "crop_matrix",
    "estimate_camera_motion",
    "l1_optimal_path",
    "matrices_from_parameters",
    "parse_crop",
    "path_parameters",
    "plan_stabilization",
    "run_stabilize",
    "sidecar_path",
    "smooth_gaussian",
    "smooth_parameters",
    "stabilize",
    "stmap",
    "warp_frame",
]

MODES = ("translation", "similarity", "affine", "perspective")
FITS = ("irls", "ransac")
METHODS = ("gaussian", "l1")
FILLS = ("black", "edge")
INTERPOLATIONS = ("linear", "cubic")

Progress = Callable[[int, int], None]

# Grundmann et al. 2011, section 3: weights of |D1|, |D2|, |D3| in the L1 path objective. The large D3
# weight makes the transitions between constant and linear segments parabolic (smooth ease in/out).
L1_WEIGHTS = (10.0, 1.0, 100.0)

_MIN_POINTS = {"translation": 8, "similarity": 8, "affine": 12, "perspective": 16}
_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))  # median of |N(0, I_2)|: residual norms -> sigma
_TUKEY_C = 4.685
_HUBER_K = 1.345


# --------------------------------------------------------------------------------------------------
# small matrix helpers


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to ``points`` [K, 2] -> [K, 2] (homogeneous divide)."""
    pts = np.asarray(points, dtype=np.float64)
    out = pts @ matrix[:2, :2].T + matrix[:2, 2]
    den = pts @ matrix[2, :2] + matrix[2, 2]
    return out / den[:, None]


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _centre(size: tuple[int, int]) -> tuple[float, float]:
    """Centre of a (height, width) frame in pixel-index coordinates."""
    h, w = size
    return (w - 1) / 2.0, (h - 1) / 2.0


def _corners(size: tuple[int, int]) -> np.ndarray:
    """Centres of the four corner pixels [4, 2]: top-left, top-right, bottom-right, bottom-left."""
    h, w = size
    return np.array([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]])


def _normalise(matrix: np.ndarray) -> np.ndarray:
    return matrix / matrix[2, 2] if abs(matrix[2, 2]) > 1e-12 else matrix


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


# --------------------------------------------------------------------------------------------------
# per-pair camera motion


def _sample_points(flow: np.ndarray, confidence: np.ndarray | None,
                   max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A regular grid of flow samples away from the borders: src [K, 2], dst [K, 2], weight [K]."""
    h, w = flow.shape[:2]
    step = max(1, int(math.sqrt(h * w / max(max_points, 1))))
    # Content enters and leaves at the borders, where flow is a guess: skip a thin margin.
    margin = int(round(0.03 * min(h, w)))
    if h - 2 * margin < 4 or w - 2 * margin < 4:
        margin = 0
    ys = np.arange(margin + step // 2, h - margin, step)
    xs = np.arange(margin + step // 2, w - margin, step)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    gy, gx = gy.ravel(), gx.ravel()
    vec = flow[gy, gx].astype(np.float64)  # [K, 2]
    weight = np.ones(len(gx)) if confidence is None else confidence[gy, gx].astype(np.float64)
    weight = np.where(np.isfinite(weight), np.clip(weight, 0.0, 1.0), 0.0)
    keep = np.isfinite(vec).all(axis=1) & (weight > 0)
    src = np.stack([gx, gy], axis=1).astype(np.float64)[keep]
    return src, src + vec[keep], weight[keep]


def _design(mode: str, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear system rows (x rows then y rows interleaved per point): A [2K, p], b [2K]."""
    u, v = src[:, 0], src[:, 1]
    up, vp = dst[:, 0], dst[:, 1]
    zero, one = np.zeros_like(u), np.ones_like(u)
    if mode == "similarity":  # x' = a x - b y + tx, y' = b x + a y + ty
        ax = np.stack([u, -v, one, zero], axis=1)
        ay = np.stack([v, u, zero, one], axis=1)
    elif mode == "affine":
        ax = np.stack([u, v, one, zero, zero, zero], axis=1)
        ay = np.stack([zero, zero, zero, u, v, one], axis=1)
    else:  # perspective, DLT with h33 = 1
        ax = np.stack([u, v, one, zero, zero, zero, -u * up, -v * up], axis=1)
        ay = np.stack([zero, zero, zero, u, v, one, -u * vp, -v * vp], axis=1)
    a = np.empty((2 * len(u), ax.shape[1]))
    a[0::2], a[1::2] = ax, ay
    b = np.empty(2 * len(u))
    b[0::2], b[1::2] = up, vp
    return a, b


def _to_matrix(mode: str, p: np.ndarray) -> np.ndarray:
    if mode == "similarity":
        a, b, tx, ty = p
        return np.array([[a, -b, tx], [b, a, ty], [0.0, 0.0, 1.0]])
    if mode == "affine":
        return np.array([[p[0], p[1], p[2]], [p[3], p[4], p[5]], [0.0, 0.0, 1.0]])
    return np.array([[p[0], p[1], p[2]], [p[3], p[4], p[5]], [p[6], p[7], 1.0]])


def _weighted_fit(mode: str, system: tuple[np.ndarray, np.ndarray] | None, src: np.ndarray,
                  dst: np.ndarray, weight: np.ndarray, current: np.ndarray | None) -> np.ndarray | None:
    """Weighted least-squares model (normalised coordinates) from the precomputed ``system``
    (:func:`_design`); None when degenerate."""
    total = weight.sum()
    if total <= 1e-9 or np.count_nonzero(weight > 1e-6) < 2:
        return None
    if mode == "translation":
        t = (weight[:, None] * (dst - src)).sum(axis=0) / total
        return _translate(t[0], t[1])
    a, b = system
    row_w = np.repeat(weight, 2)
    if mode == "perspective" and current is not None:
        # The DLT residual is the geometric one times the projective denominator: divide it back out.
        den = src @ current[2, :2] + current[2, 2]
        row_w = row_w / np.maximum(np.repeat(den, 2) ** 2, 1e-6)
    # Normal equations: at most 8 unknowns in centred, scaled coordinates, so they are well conditioned.
    aw = a * row_w[:, None]
    lhs = aw.T @ a
    if np.linalg.cond(lhs) > 1e12:
        return None
    return _to_matrix(mode, np.linalg.solve(lhs, aw.T @ b))


def _irls(mode: str, src: np.ndarray, dst: np.ndarray, base: np.ndarray, model: np.ndarray, *,
          floor: float, huber_iters: int, max_iters: int = 40) -> np.ndarray:
    """Iteratively reweighted least squares: Huber first (convex, pulls towards the majority), then
    Tukey's biweight, which gives outliers (moving foreground) exactly zero weight."""
    system = None if mode == "translation" else _design(mode, src, dst)
    live = base > 0
    corners = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    for it in range(max_iters):
        resid = np.linalg.norm(_apply(model, src) - dst, axis=1)  # [K]
        sigma = max(_weighted_median(resid[live], base[live]) / _RAYLEIGH_MEDIAN, floor)
        if it < huber_iters:
            k = _HUBER_K * sigma * 2.0
            robust = np.minimum(1.0, k / np.maximum(resid, 1e-12))
        else:
            c = _TUKEY_C * sigma
            robust = np.where(resid < c, (1.0 - (resid / c) ** 2) ** 2, 0.0)
        new = _weighted_fit(mode, system, src, dst, base * robust, model)
        if new is None:
            break
        change = np.abs(_apply(new, corners) - _apply(model, corners)).max()
        model = new
        if it >= huber_iters and change < floor * 0.1:
            break
    return model


def _ransac_init(mode: str, src: np.ndarray, dst: np.ndarray, weight: np.ndarray,
                 threshold: float) -> np.ndarray | None:
    """A RANSAC model in pixel coordinates, from the confident points; None when RANSAC fails."""
    import cv2

    good = weight >= 0.5 * weight.max()
    if np.count_nonzero(good) < _MIN_POINTS[mode]:
        good = weight > 0
    s, d = src[good].astype(np.float32), dst[good].astype(np.float32)
    if mode == "translation":
        # One point is a hypothesis: try a deterministic spread of them, keep the best-supported one.
        disp = (d - s).astype(np.float64)
        w = weight[good]
        rng = np.random.default_rng(0)
        picks = rng.choice(len(disp), size=min(len(disp), 300), replace=False)
        support = [(w * (np.linalg.norm(disp - disp[i], axis=1) < threshold)).sum() for i in picks]
        t = disp[picks[int(np.argmax(support))]]
        return _translate(t[0], t[1])
    # OpenCV's RANSAC estimators seed their generator with a constant, so results are repeatable.
    if mode == "similarity":
        m, _ = cv2.estimateAffinePartial2D(s, d, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                           maxIters=2000, confidence=0.995, refineIters=0)
    elif mode == "affine":
        m, _ = cv2.estimateAffine2D(s, d, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                    maxIters=2000, confidence=0.995, refineIters=0)
    else:
        m, _ = cv2.findHomography(s, d, cv2.RANSAC, threshold, maxIters=2000, confidence=0.995)
    if m is None or not np.isfinite(m).all():
        return None
    return np.vstack([m, [0.0, 0.0, 1.0]]) if m.shape == (2, 3) else _normalise(m.astype(np.float64))


def estimate_camera_motion(
    flow: np.ndarray,
    *,
    confidence: np.ndarray | None = None,
    mode: str = "similarity",
    method: str = "irls",
    max_points: int = 4096,
    ransac_threshold: float = 1.0,
) -> np.ndarray:
    """The global (camera) motion in a flow field, robust to moving foreground.

    ``flow``: ``[H, W, 2]`` forward flow of frame n (``.flo`` convention: pixel (x, y) of frame n is at
    ``(x + u, y + v)`` in frame n+1). ``confidence``: optional ``[H, W]`` in [0, 1], used as weights
    (0 = ignore). Returns a 3x3 float64 matrix ``M`` mapping pixel-index coordinates of frame n to
    frame n+1: ``[x', y', w]^T = M @ [x, y, 1]^T`` then ``(x'/w, y'/w)``.

    ``mode``: ``translation`` (2 dof), ``similarity`` (4: rotation + uniform scale), ``affine`` (6),
    ``perspective`` (8). ``method``:

    - ``irls``: start from the weighted median displacement (50% breakdown), then iteratively
      reweighted least squares, Huber then Tukey's biweight with the scale from the median residual,
      so points that move differently from the majority (foreground) end with zero weight; richer
      models are fitted coarse to fine (translation, similarity, affine, perspective) from there;
    - ``ransac``: OpenCV RANSAC (``estimateAffinePartial2D``/``estimateAffine2D``/``findHomography``)
      on the confident points with ``ransac_threshold`` pixels, then the same Tukey refinement.

    The fit runs on a grid of at most ``max_points`` samples (a thin border is skipped: flow there is
    unreliable) in centred, scaled coordinates for conditioning. Too few usable samples give the
    identity, with a warning, rather than a wild guess.
    """
    if mode not in MODES:
        raise UsageError(f"unknown stabilize mode {mode!r}; choose one of {', '.join(MODES)}")
    if method not in FITS:
        raise UsageError(f"unknown motion fit {method!r}; choose one of {', '.join(FITS)}")
    flow = np.asarray(flow)  # [H, W, 2]
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise UsageError(f"a flow must be [H, W, 2], got shape {tuple(flow.shape)}")
    if confidence is not None:
        confidence = np.asarray(confidence)  # [H, W]
        if confidence.shape != flow.shape[:2]:
            raise UsageError(f"confidence {tuple(confidence.shape)} does not match the flow {flow.shape[:2]}")
    h, w = flow.shape[:2]
    src, dst, weight = _sample_points(flow, confidence, max_points)
    if len(src) < _MIN_POINTS[mode]:
        log.warning("camera motion: only %d usable flow samples; assuming no motion", len(src))
        return np.eye(3)

    # Centred, scaled coordinates: the normal equations stay well conditioned at any resolution.
    cx, cy = _centre((h, w))
    scale = max(h, w) / 2.0
    norm = np.array([[1 / scale, 0.0, -cx / scale], [0.0, 1 / scale, -cy / scale], [0.0, 0.0, 1.0]])
    denorm = np.linalg.inv(norm)
    src_n, dst_n = (src - (cx, cy)) / scale, (dst - (cx, cy)) / scale
    floor = 0.01 / scale  # 0.01 px: exact (synthetic) flow has ~zero residuals, keep the scale positive

    init = None
    if method == "ransac":
        found = _ransac_init(mode, src, dst, weight, ransac_threshold)
        if found is not None:
            init = norm @ found @ denorm
        else:
            log.warning("camera motion: RANSAC found no model; falling back to IRLS")
    if init is not None:
        model = _irls(mode, src_n, dst_n, weight, init, floor=floor, huber_iters=0)
    else:
        # Coarse to fine: a robust translation first (Huber from the median, then Tukey), then each richer
        # model starts from the last with Tukey only, so the foreground, already rejected, cannot pull
        # the extra degrees of freedom towards itself.
        disp = dst_n - src_n
        model = _translate(_weighted_median(disp[:, 0], weight), _weighted_median(disp[:, 1], weight))
        model = _irls("translation", src_n, dst_n, weight, model, floor=floor, huber_iters=4)
        for step in MODES[1:MODES.index(mode) + 1]:
            model = _irls(step, src_n, dst_n, weight, model, floor=floor, huber_iters=0)
    result = _normalise(denorm @ model @ norm)
    if not np.isfinite(result).all():
        log.warning("camera motion: the fit did not converge; assuming no motion")
        return np.eye(3)
    return result


# --------------------------------------------------------------------------------------------------
# the camera path and its parameters


def camera_path(motions: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Accumulate per-pair motions ``[N-1, 3, 3]`` (frame n -> n+1) into the path ``[N, 3, 3]``:
    ``path[n]`` maps frame-0 pixels to frame-n pixels, ``path[0]`` is the identity."""
    motions = np.asarray(motions, dtype=np.float64).reshape(-1, 3, 3)
    path = np.empty((len(motions) + 1, 3, 3))
    path[0] = np.eye(3)
    for n, m in enumerate(motions):
        path[n + 1] = _normalise(m @ path[n])
    return path


def path_parameters(path: np.ndarray, *, mode: str, size: tuple[int, int]) -> np.ndarray:
    """Smoothable parameters ``[N, P]`` of a path ``[N, 3, 3]``, about the frame centre.

    translation: (tx, ty); similarity: (tx, ty, rotation in radians, unwrapped, log scale);
    affine: the six entries of the centred matrix; perspective: where the four corner pixels go
    (x0, y0, ..., x3, y3). Rotation about the centre keeps translation and rotation apart, so smoothing
    one does not leak into the other.
    """
    cx, cy = _centre(size)
    to_c, from_c = _translate(-cx, -cy), _translate(cx, cy)
    if mode == "perspective":
        corners = _corners(size)
        return np.stack([_apply(m, corners).ravel() for m in path])
    centred = np.stack([to_c @ m @ from_c for m in path])  # [N, 3, 3]
    if mode == "translation":
        return centred[:, :2, 2].copy()
    if mode == "similarity":
        a = (centred[:, 0, 0] + centred[:, 1, 1]) / 2.0
        b = (centred[:, 1, 0] - centred[:, 0, 1]) / 2.0
        theta = np.unwrap(np.arctan2(b, a))
        return np.stack([centred[:, 0, 2], centred[:, 1, 2], theta, np.log(np.hypot(a, b))], axis=1)
    if mode == "affine":
        return centred[:, :2, :].reshape(len(path), 6).copy()
    raise UsageError(f"unknown stabilize mode {mode!r}; choose one of {', '.join(MODES)}")


def matrices_from_parameters(params: np.ndarray, *, mode: str, size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`path_parameters`: ``[N, P]`` -> ``[N, 3, 3]``."""
    cx, cy = _centre(size)
    to_c, from_c = _translate(-cx, -cy), _translate(cx, cy)
    out = np.empty((len(params), 3, 3))
    for n, p in enumerate(np.asarray(params, dtype=np.float64)):
        if mode == "perspective":
            import cv2

            m = cv2.getPerspectiveTransform(_corners(size).astype(np.float32),
                                            p.reshape(4, 2).astype(np.float32))
            out[n] = _normalise(m.astype(np.float64))
            continue
        if mode == "translation":
            centred = _translate(p[0], p[1])
        elif mode == "similarity":
            s = math.exp(p[3])
            c, si = s * math.cos(p[2]), s * math.sin(p[2])
            centred = np.array([[c, -si, p[0]], [si, c, p[1]], [0.0, 0.0, 1.0]])
        else:
            centred = np.vstack([p.reshape(2, 3), [0.0, 0.0, 1.0]])
        out[n] = from_c @ centred @ to_c
    return out


def _parameter_bounds(mode: str, size: tuple[int, int], margin: float) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# settings and the plan


@dataclass(frozen=True, kw_only=True)
class StabilizeSettings:
    """How to stabilize; shared by :func:`stabilize` (arrays) and :class:`StabilizeJob` (files)."""

    mode: str = "similarity"  # translation | similarity | affine | perspective
    fit: str = "irls"  # robust motion fit: irls | ransac
    method: str = "gaussian"  # path smoothing: gaussian | l1
    smooth: float = 0.5  # gaussian: sigma of the smoothing in seconds
    fps: float = 24.0  # turns --smooth seconds into frames
    lock: bool = False  # locked-off camera: the path held at its mean
    strength: float = 1.0  # 0 = the original camera, 1 = fully smoothed (or locked)
    crop: str | float = "auto"  # "auto" (largest border-free crop), "none", or the kept fraction (0, 1]
    fill: str = "black"  # outside the plate: black, or edge-extended
    margin: float = 0.1  # l1: how far the path may leave the original, as a fraction of the frame
    min_crop: float = 0.5  # auto crop never keeps less than this fraction (the rest is --fill)
    interpolation: str = "linear"  # resampling filter: linear | cubic


def parse_crop(value: str | float | None) -> str | float:
    """``auto`` | ``none`` | a kept fraction in (0, 1] (``0.9`` keeps 90% of width and height)."""
    if value is None:
        return "auto"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "none"):
            return text
        try:
            ratio = float(text)
        except ValueError:
            raise UsageError(f"--crop {value!r} is neither auto, none nor a number; use auto, none or a "
                             "kept fraction such as 0.9") from None
    else:
        ratio = float(value)
    if not (math.isfinite(ratio) and 0.0 < ratio <= 1.0):
        raise UsageError(f"--crop {value} is out of range; a crop ratio is the kept fraction of the frame, "
                         "0 < RATIO <= 1 (e.g. 0.9), or use auto")
    return ratio


def check_settings(settings: StabilizeSettings) -> StabilizeSettings:
    """Raise :class:`UsageError` (one line, names the option) for any setting that cannot be used."""
    for value, choices, what in ((settings.mode, MODES, "--mode"), (settings.fit, FITS, "--fit"),
                                 (settings.method, METHODS, "--method"), (settings.fill, FILLS, "--fill"),
                                 (settings.interpolation, INTERPOLATIONS, "--filter")):
        if value not in choices:
            raise UsageError(f"{what} {value!r} is not known; choose one of {', '.join(choices)}")
    if not (math.isfinite(settings.strength) and 0.0 <= settings.strength <= 1.0):
        raise UsageError(f"--strength {settings.strength} is out of range; use a value from 0 (no "
                         "stabilization) to 1 (full)")
    if not (math.isfinite(settings.smooth) and settings.smooth >= 0.0):
        raise UsageError(f"--smooth {settings.smooth} must be zero or more seconds")
    if not (math.isfinite(settings.fps) and settings.fps > 0.0):
        raise UsageError(f"--fps {settings.fps} must be a positive frame rate such as 24 or 23.976")
    if not (math.isfinite(settings.margin) and 0.0 < settings.margin < 0.5):
        raise UsageError(f"--margin {settings.margin} must be between 0 and 0.5 (a fraction of the frame)")
    if not 0.0 < settings.min_crop <= 1.0:
        raise UsageError(f"min_crop {settings.min_crop} must be in (0, 1]")
    parse_crop(settings.crop)
    return settings


def smooth_parameters(params: np.ndarray, *, settings: StabilizeSettings, mode: str,
                      size: tuple[int, int]) -> np.ndarray:
    """The virtual camera's parameters ``[N, P]`` from the real ones: smoothed, L1-optimal or locked,
    then blended back towards the original by ``1 - strength``."""
    params = np.asarray(params, dtype=np.float64)
    if settings.lock:
        # the camera held at its average position: the lock that needs the least crop
        target = np.broadcast_to(params.mean(axis=0), params.shape)
    elif settings.method == "l1":
        crop = parse_crop(settings.crop)
        margin = (1.0 - crop) / 2.0 if isinstance(crop, float) and crop < 1.0 else settings.margin
        bounds = _parameter_bounds(mode, size, margin)
        # Pin the ends to the Gaussian path there (at least a 1/4 s sigma): see l1_optimal_path.
        anchor = smooth_gaussian(params, max(settings.smooth * settings.fps, 0.25 * settings.fps, 2.0))
        target = np.stack([l1_optimal_path(params[:, k], bound=bounds[k], ends=(anchor[0, k], anchor[-1, k]))
                           for k in range(params.shape[1])], axis=1)
    else:
        target = smooth_gaussian(params, settings.smooth * settings.fps)
    return params + settings.strength * (target - params)


def crop_matrix(scale: float, size: tuple[int, int]) -> np.ndarray:
    """Output pixel -> uncropped stabilized pixel for a centred crop keeping ``scale`` of each side."""
    cx, cy = _centre(size)
    return _translate(cx, cy) @ np.diag([scale, scale, 1.0]) @ _translate(-cx, -cy)


def _crop_fits(corrections: np.ndarray, scale: float, size: tuple[int, int], eps: float) -> bool:
    h, w = size
    corners = _apply(crop_matrix(scale, size), _corners(size))  # [4, 2]
    homog = np.concatenate([corners, np.ones((4, 1))], axis=1)  # [4, 3]
    mapped = np.einsum("nij,kj->nki", corrections, homog)  # [N, 4, 3]
    if (mapped[..., 2] <= 1e-9).any():
        return False
    xy = mapped[..., :2] / mapped[..., 2:]
    return bool((xy[..., 0] >= -eps).all() and (xy[..., 0] <= w - 1 + eps).all()
                and (xy[..., 1] >= -eps).all() and (xy[..., 1] <= h - 1 + eps).all())


def auto_crop(corrections: np.ndarray, size: tuple[int, int], *, minimum: float = 0.5) -> tuple[float, bool]:
    """The largest centred crop (kept fraction of each side, aspect kept) that samples only inside the
    plate in every frame, for corrections ``[N, 3, 3]`` (output pixel -> source pixel, before crop).

    The corrected frame's valid region is convex and the crop rectangles are nested, so it is enough to
    test the four corner pixels, and a bisection finds the largest scale. Returns ``(scale, limited)``;
    ``limited`` is True when even ``minimum`` leaves borders (the camera moves too far for any crop).
    """
    # Every output pixel must sample between the edge pixels' centres, so it is a true interpolation of
    # plate pixels; the tolerance lets a shot that needs no correction keep crop 1.0 exactly.
    eps = 1e-6
    if _crop_fits(corrections, 1.0, size, eps):
        return 1.0, False
    if not _crop_fits(corrections, minimum, size, eps):
        return minimum, True
    lo, hi = minimum, 1.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _crop_fits(corrections, mid, size, eps):
            lo = mid
        else:
            hi = mid
    return lo, False


@dataclass(frozen=True, kw_only=True)
class StabilizePlan:
    """What stabilizing a shot does, frame by frame (conventions in the module docstring)."""

    motions: np.ndarray  # [N-1, 3, 3] frame n -> frame n+1
    path: np.ndarray  # [N, 3, 3] frame-0 pixel -> frame-n pixel (the real camera)
    smoothed: np.ndarray  # [N, 3, 3] the virtual camera, same convention
    transforms: np.ndarray  # [N, 3, 3] output pixel -> source pixel, crop included
    crop: float  # kept fraction of width and height (1.0 = no crop)
    crop_limited: bool  # auto crop hit settings.min_crop: borders remain and are filled


def plan_stabilization(motions: Sequence[np.ndarray] | np.ndarray, *, size: tuple[int, int],
                       settings: StabilizeSettings) -> StabilizePlan:
    """From per-pair motions ``[N-1, 3, 3]`` to per-frame output->source transforms (``size`` = (H, W))."""
    check_settings(settings)
    motions = np.asarray(motions, dtype=np.float64).reshape(-1, 3, 3)
    path = camera_path(motions)
    params = path_parameters(path, mode=settings.mode, size=size)
    target = smooth_parameters(params, settings=settings, mode=settings.mode, size=size)
    smoothed = matrices_from_parameters(target, mode=settings.mode, size=size)
    # out(q) = plate_n(path_n @ inv(smoothed_n) @ q): a scene point at frame-0 position X lands at
    # smoothed_n @ X in the output (virtual camera) and is at path_n @ X in the plate (real camera).
    corrections = np.stack([_normalise(p @ np.linalg.inv(s)) for p, s in zip(path, smoothed, strict=True)])
    crop = parse_crop(settings.crop)
    limited = False
    if crop == "auto":
        scale, limited = auto_crop(corrections, size, minimum=settings.min_crop)
        if limited:
            log.warning("auto crop: the camera moves too far to crop out every border (kept %.0f%%); "
                        "borders are filled (--fill); lower --strength or --smooth to avoid them",
                        100 * scale)
    elif crop == "none":
        scale = 1.0
    else:
        scale = float(crop)
    k = crop_matrix(scale, size)
    transforms = np.stack([_normalise(c @ k) for c in corrections])
    return StabilizePlan(motions=motions, path=path, smoothed=smoothed, transforms=transforms, crop=scale,
                         crop_limited=limited)


# --------------------------------------------------------------------------------------------------
# warping and STMaps


def _source_coords(transform: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel coordinates (map_x, map_y), each float32 [H, W], of every output pixel."""
    h, w = size
    xs = np.arange(w, dtype=np.float64)[None, :]  # [1, W]: broadcasting keeps 4K frames light
    ys = np.arange(h, dtype=np.float64)[:, None]  # [H, 1]
    m = transform
    den = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    map_x = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / den
    map_y = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / den
    return map_x.astype(np.float32), map_y.astype(np.float32)


def warp_frame(image: np.ndarray, transform: np.ndarray, *, fill: str = "black",
               interpolation: str = "linear") -> np.ndarray:
    """Stabilized frame: ``out(q) = image(transform @ q)`` for ``image`` [H, W, C] float32 (any values;
    linear stays linear). ``fill``: black outside the plate, or ``edge`` to repeat the border pixels.

    The filter reads edge-repeated pixels beyond the border, so black never bleeds into pixels that
    sample inside the plate (not even through a cubic filter's outer taps); with ``black``, pixels whose
    source lies outside the plate's pixel footprint (beyond half a pixel past the edge pixels' centres)
    are then set to zero.
    """
    import cv2

    data = np.ascontiguousarray(image, dtype=np.float32)  # [H, W, C]
    h, w = data.shape[:2]
    map_x, map_y = _source_coords(np.asarray(transform, dtype=np.float64), (h, w))
    flag = cv2.INTER_CUBIC if interpolation == "cubic" else cv2.INTER_LINEAR
    out = cv2.remap(data, map_x, map_y, flag, borderMode=cv2.BORDER_REPLICATE).reshape(data.shape)
    if fill != "edge":
        out[~_inside(map_x, map_y, (h, w))] = 0.0
    return out


def _inside(map_x: np.ndarray, map_y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W] bool: the source position lies on the plate (within its pixel footprint)."""
    h, w = size
    with np.errstate(invalid="ignore"):
        return (map_x >= -0.5) & (map_x <= w - 0.5) & (map_y >= -0.5) & (map_y <= h - 0.5)


def stmap(transform: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nuke-style STMap ``[H, W, 4]`` float32 for one frame: R, G = normalised source position
    ``s = (x + 0.5) / W``, ``t = 1 - (y + 0.5) / H`` (pixel centres, t measured from the bottom as in
    Nuke's STMap node), B = 0, A = 1 where the source position lies inside the plate."""
    h, w = size
    map_x, map_y = _source_coords(np.asarray(transform, dtype=np.float64), size)
    out = np.zeros((h, w, 4), dtype=np.float32)
    out[..., 0] = (map_x.astype(np.float64) + 0.5) / w
    out[..., 1] = 1.0 - (map_y.astype(np.float64) + 0.5) / h
    out[..., 3] = _inside(map_x, map_y, size)
    return out


# --------------------------------------------------------------------------------------------------
# the pure array API


@dataclass(frozen=True, kw_only=True)
class StabilizeResult:
    frames: np.ndarray  # [N, H, W, C] stabilized, same dtype semantics as the input (float32)
    plan: StabilizePlan


def stabilize(frames: np.ndarray | Sequence[np.ndarray], flows: np.ndarray | Sequence[np.ndarray], *,
              confidence: np.ndarray | Sequence[np.ndarray | None] | None = None,
              settings: StabilizeSettings | None = None) -> StabilizeResult:
    """Stabilize a shot held in memory.

    ``frames``: ``[N, H, W, C]`` float (any colour space; warped as given). ``flows``: the forward flows
    ``[N-1, H, W, 2]`` (frame n -> n+1, ``.flo`` convention), computed on display-referred frames.
    ``confidence``: optional ``[N-1, H, W]`` in [0, 1]. Returns the stabilized frames and the
    :class:`StabilizePlan` (per-frame output -> source matrices, path, crop).
    """
    settings = check_settings(settings or StabilizeSettings())
    stack = [np.asarray(f, dtype=np.float32) for f in frames]
    if len(stack) < 2:
        raise SequenceTooShortError(f"stabilize needs at least two frames, got {len(stack)}")
    flow_list = list(flows)
    if len(flow_list) != len(stack) - 1:
        raise UsageError(f"stabilize needs one forward flow per frame pair: {len(stack)} frames need "
                         f"{len(stack) - 1} flows, got {len(flow_list)}")
    size = stack[0].shape[:2]
    for n, (frame, flow) in enumerate(zip(stack, flow_list, strict=False)):
        if frame.shape[:2] != size or np.shape(flow)[:2] != size:
            raise UsageError(f"frame {n} or its flow is not {size[1]}x{size[0]} like frame 0; every frame "
                             "and flow must have the same size")
    conf_list = list(confidence) if confidence is not None else [None] * len(flow_list)
    if len(conf_list) != len(flow_list):
        raise UsageError(f"got {len(conf_list)} confidence maps for {len(flow_list)} flows")
    motions = [estimate_camera_motion(f, confidence=c, mode=settings.mode, method=settings.fit)
               for f, c in zip(flow_list, conf_list, strict=True)]
    plan = plan_stabilization(motions, size=size, settings=settings)
    out = np.stack([warp_frame(f, t, fill=settings.fill, interpolation=settings.interpolation)
                    for f, t in zip(stack, plan.transforms, strict=True)])
    return StabilizeResult(frames=out, plan=plan)


# --------------------------------------------------------------------------------------------------
# the job: `daflow-vfx stabilize`


@dataclass(frozen=True, kw_only=True)
class StabilizeJob:
    """Everything `daflow-vfx stabilize` needs; the CLI fills it from its options."""

    input: str
    output: str  # image pattern with a frame token (EXR/PNG/TIFF/...) or a video file
    settings: StabilizeSettings = field(default_factory=StabilizeSettings)
    fps: float | None = None  # None: the video's rate, else 24
    frames: str | None = None  # a contiguous Deadline range such as 1001-1100; None = the whole plate
    vectors: str | None = None  # rendered motion-vector EXR pattern to reuse instead of computing flow
    stmap: str | None = None  # STMap EXR pattern to write
    nk: str | None = None  # Nuke snippet file to write
    json_path: str | None = None  # sidecar; None = OUTPUT base + ".stabilize.json"
    model: str = "default"
    device: str = "auto"
    dtype: str = "float32"
    tile: int | None = None  # flow in overlapping tiles of at most this many pixels (large plates)
    tile_pad: int = 32
    weights: str | None = None  # local weights for a learned --model
    iters: int | None = None  # refinement iterations of a learned model
    input_colorspace: str = "auto"
    layer: str | None = None
    start_frame: int = 1
    half: bool = True  # EXR output channels
    compression: str = "zip"


@dataclass(kw_only=True)
class StabilizeReport:
    output: str
    frames: list[int]
    json_path: str
    nk_path: str | None = None
    stmap: str | None = None
    crop: float = 1.0
    crop_limited: bool = False
    shake_before: float = 0.0  # rms frame-to-frame jerk of the frame centre, source pixels
    shake_after: float = 0.0
    estimator: str = ""  # flow model, or "vectors"
    seconds: float = 0.0


def sidecar_path(output: str) -> str:
    """``OUTPUT`` base + ``.stabilize.json``: ``out/sh010.####.exr`` -> ``out/sh010.stabilize.json``,
    ``out/sh010.mp4`` -> ``out/sh010.stabilize.json``."""
    from daflow_vfx.frames import SequencePattern

    pattern = SequencePattern.parse(output)
    if pattern is None:
        base = os.path.splitext(output)[0]
    else:
        folder, name = os.path.split(pattern.prefix)
        base = os.path.join(folder, name.rstrip("._- ") or "stabilize")
    return base + ".stabilize.json"


def _centre_shake(matrices: np.ndarray, size: tuple[int, int]) -> float:
    """rms second difference of where the frame centre goes: the frame-to-frame jerk people see."""
    centre = np.array([_centre(size)])
    track = np.stack([_apply(m, centre)[0] for m in matrices])  # [N, 2]
    if len(track) < 3:
        return 0.0
    return float(np.sqrt((np.diff(track, n=2, axis=0) ** 2).sum(axis=1).mean()))


def _write_text(path: str, text: str) -> None:
    from daflow_vfx.io._atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)


def _json_document(job: StabilizeJob, plan: StabilizePlan, frames: list[int], size: tuple[int, int],
                   fps: float) -> dict:
    h, w = size
    s = job.settings

    def mat(m: np.ndarray) -> list[list[float]]:
        return [[float(f"{v:.10g}") for v in row] for row in m]

    return {
        "tool": "daflow-vfx stabilize",
        "version": 1,
        "source": os.path.abspath(job.input),
        "output": job.output,
        "width": w,
        "height": h,
        "fps": fps,
        "mode": s.mode,
        "fit": s.fit,
        "method": "lock" if s.lock else s.method,
        "smooth_seconds": s.smooth,
        "strength": s.strength,
        "crop": {"request": str(parse_crop(s.crop)), "scale": plan.crop, "limited": plan.crop_limited},
        "fill": s.fill,
        "conventions": {
            "coordinates": "pixel indices: +x right, +y down, top-left pixel centre at (0, 0)",
            "matrix": "3x3 row-major homography on column vectors [x, y, 1] with a homogeneous divide",
            "frames": "frame -> matrix mapping an OUTPUT pixel of the stabilized frame to the SOURCE pixel "
                      "of the plate frame it is sampled from: out(q) = plate(M @ q)",
            "motion": "frame n -> matrix mapping a pixel of plate frame n to plate frame n+1 (camera motion)",
            "nuke": "Nuke coordinates are X = x + 0.5, Y = height - 0.5 - y (origin bottom-left, +Y up)",
        },
        "frames": {str(f): mat(m) for f, m in zip(frames, plan.transforms, strict=True)},
        "motion": {str(f): mat(m) for f, m in zip(frames[:-1], plan.motions, strict=True)},
    }


def _check_frames(spec: str | None, first: int, last: int, source: str) -> list[int]:
    from daflow_vfx.frames import format_frame_spec, parse_frame_spec

    if not spec:
        return list(range(first, last + 1))
    wanted = parse_frame_spec(spec)
    outside = [f for f in wanted if not first <= f <= last]
    if outside:
        raise MissingFramesError(f"{source}: frames {format_frame_spec(outside)} are outside the plate's "
                                 f"range {first}-{last}; fix --frames", missing=outside)
    if wanted != list(range(wanted[0], wanted[-1] + 1)):
        raise UsageError(f"--frames {spec}: stabilizing needs a contiguous range such as "
                         f"{wanted[0]}-{wanted[-1]}, not a list or a stepped range")
    if len(wanted) < 2:
        raise SequenceTooShortError(f"{source}: --frames {spec} is one frame; stabilizing needs at least two")
    return wanted


def _motions_from_vectors(pattern_text: str, wanted: list[int], size: tuple[int, int],
                          settings: StabilizeSettings, tick: Callable[[], None]) -> list[np.ndarray]:
    """Camera motions from rendered motion-vector EXRs, one file at a time (never all flows in memory)."""
    from daflow_vfx.frames import SequencePattern, format_frame_spec
    from daflow_vfx.io import is_complete_exr
    from daflow_vfx.vfx.flows import read_vector_flows

    pattern = SequencePattern.parse(pattern_text)
    if pattern is None:
        raise UsageError(f"--vectors {pattern_text}: needs a frame pattern such as vectors.####.exr")
    needed = wanted[:-1]
    missing = [f for f in needed if not is_complete_exr(pattern.path(f))]
    if missing:
        raise MissingFramesError(f"{pattern_text}: vectors for frames {format_frame_spec(missing)} are "
                                 "missing or unreadable; render them (daflow-vfx render --skip-existing)",
                                 missing=missing)
    motions = []
    for f in needed:
        flows = read_vector_flows(pattern_text, [f], size=size)[f]
        if flows.forward is not None:
            motion = estimate_camera_motion(flows.forward, confidence=flows.confidence_forward,
                                            mode=settings.mode, method=settings.fit)
        else:
            # A pass with no forward flow (rendered as a plate's last frame): use frame f+1's backward one.
            if not is_complete_exr(pattern.path(f + 1)):
                raise MissingFramesError(f"{pattern.path(f)}: has no forward vectors and frame {f + 1} has "
                                         "no vectors; render the range again", missing=[f + 1])
            nxt = read_vector_flows(pattern_text, [f + 1], size=size)[f + 1]
            if nxt.backward is None:
                raise InputError(f"{pattern.path(f)}: no forward vectors, and {pattern.path(f + 1)} no "
                                 "backward vectors; render the vectors over the whole range")
            back = estimate_camera_motion(nxt.backward, confidence=nxt.confidence_backward,
                                          mode=settings.mode, method=settings.fit)
            motion = _normalise(np.linalg.inv(back))
        motions.append(motion)
        tick()
    return motions


def _output_kind(output: str) -> str:
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io.plate import VIDEO_EXTENSIONS

    ext = os.path.splitext(output)[1].lower()
    if SequencePattern.parse(output) is not None:
        if ext not in (".exr", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".dpx"):
            raise UsageError(f"output {output!r}: unsupported image extension {ext!r}; use .exr, .png, .tif, "
                             ".jpg or .dpx, or a video file")
        return "sequence"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    raise UsageError(f"output {output!r} has no frame token and is not a video file; use a pattern such as "
                     "stab/sh010.####.exr or a .mp4/.mov file")


def run_stabilize(job: StabilizeJob, *, progress: Progress | None = None) -> StabilizeReport:
    """`daflow-vfx stabilize`: flows (engine or --vectors) -> motions -> plan -> frames, JSON, .nk, STMaps.

    Everything that can be refused (options, plate, frames, vectors, output folders) is checked before
    any flow is computed. Two passes over the plate: flows and motions first (one pair in memory at a
    time), then the warp; EXR output keeps the plate's values, 8/16-bit images and video get the
    display-referred values the flows were computed on.
    """
    from daflow_vfx.color import COLORSPACES, resolve_colorspace, sanitize, to_display
    from daflow_vfx.engine import check_dtype, device_for_model
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io import BackgroundWriter, PrefetchReader, open_plate, prepare_output_folder, write_image
    from daflow_vfx.io.exr import LOSSLESS_COMPRESSIONS

    started = time.perf_counter()
    settings = check_settings(job.settings)
    if job.input_colorspace not in COLORSPACES:
        raise UsageError(f"unknown input colour space {job.input_colorspace!r}; use one of "
                         f"{', '.join(COLORSPACES)}")
    if job.compression not in LOSSLESS_COMPRESSIONS:
        raise UsageError(f"--compression {job.compression!r}: use one of {', '.join(LOSSLESS_COMPRESSIONS)}")
    check_dtype(job.dtype)
    if job.fps is not None and not (math.isfinite(job.fps) and job.fps > 0):
        raise UsageError(f"--fps {job.fps} must be a positive frame rate such as 24 or 23.976")
    kind = _output_kind(job.output)
    stmap_pattern = None
    if job.stmap:
        stmap_pattern = SequencePattern.parse(job.stmap)
        if stmap_pattern is None or not stmap_pattern.suffix.lower().endswith(".exr"):
            raise UsageError(f"--stmap {job.stmap!r} must be an EXR pattern with a frame token, such as "
                             "stmap/sh010.####.exr")
    out_pattern = SequencePattern.parse(job.output) if kind == "sequence" else None
    json_path = job.json_path or sidecar_path(job.output)

    with open_plate(job.input, layer=job.layer, start_frame=job.start_frame) as plate:
        info = plate.info
        first, last = info.require_span(needs="stabilizing")
        wanted = _check_frames(job.frames, first, last, job.input)
        fps = float(job.fps or info.fps or 24.0)
        settings = check_settings(_replace(settings, fps=fps))
        colorspace = resolve_colorspace(job.input_colorspace, info)
        size = (info.height, info.width)
        folders = {os.path.dirname(json_path)}
        folders.add(os.path.dirname(out_pattern.path(wanted[0]) if out_pattern else job.output))
        if stmap_pattern is not None:
            folders.add(os.path.dirname(stmap_pattern.path(wanted[0])))
        if job.nk:
            folders.add(os.path.dirname(job.nk))
        for folder in sorted(folders):
            prepare_output_folder(folder)

        total = 2 * len(wanted)
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        if job.vectors:
            estimator_name = "vectors"
            motions = _motions_from_vectors(job.vectors, wanted, size, settings, tick)
        else:
            from daflow_vfx.engine import FlowEngine

            device = device_for_model(job.model, job.device)
            engine = FlowEngine(job.model, device=device, dtype=job.dtype, tile=job.tile,
                                tile_pad=job.tile_pad, weights=job.weights, iters=job.iters)
            estimator_name = engine.estimator.name

            def read_display(frame: int) -> np.ndarray:
                return to_display(sanitize(plate.read(frame)).image, colorspace)  # [H, W, 3] display

            motions = []
            for flows in engine.flows(read_display, wanted[:-1], first=wanted[0], last=wanted[-1]):
                motions.append(estimate_camera_motion(flows.forward, confidence=flows.confidence_forward,
                                                      mode=settings.mode, method=settings.fit))
                tick()
        tick()  # the last frame needs no flow

        plan = plan_stabilization(motions, size=size, settings=settings)
        report = StabilizeReport(output=job.output, frames=list(wanted), json_path=json_path,
                                 crop=plan.crop, crop_limited=plan.crop_limited, estimator=estimator_name,
                                 shake_before=_centre_shake(plan.path, size),
                                 shake_after=_centre_shake(plan.smoothed, size))

        # Plate values stay as they are in EXR; integer images and video hold display values.
        display_out = kind == "video" or not out_pattern.suffix.lower().endswith(".exr")
        transforms = dict(zip(wanted, plan.transforms, strict=True))

        def read_raw(frame: int) -> np.ndarray:
            raw = plate.read(frame)
            # NaN/Inf would smear through the filter; negatives are legitimate linear values and stay.
            return np.nan_to_num(raw, nan=0.0, posinf=np.finfo(np.float32).max, neginf=0.0)

        def warped() -> Iterator[tuple[int, np.ndarray]]:
            with PrefetchReader(read_raw, wanted, depth=4) as reader:
                for frame, raw in reader:
                    image = warp_frame(raw, transforms[frame], fill=settings.fill,
                                       interpolation=settings.interpolation)
                    yield frame, (to_display(image, colorspace) if display_out else image)

        def write_frame(frame: int, image: np.ndarray) -> None:
            write_image(out_pattern.path(frame), image, half=job.half, compression=job.compression)
            if stmap_pattern is not None:
                _write_stmap(stmap_pattern.path(frame), stmap(transforms[frame], size), job.compression)
            tick()

        if kind == "video":
            from daflow_vfx.io import write_video

            def frames_for_video() -> Iterator[np.ndarray]:
                for frame, image in warped():
                    if stmap_pattern is not None:
                        _write_stmap(stmap_pattern.path(frame), stmap(transforms[frame], size),
                                     job.compression)
                    tick()
                    yield image

            write_video(job.output, frames_for_video(), fps=fps)
        else:
            writer = BackgroundWriter(depth=4)
            try:
                for frame, image in warped():
                    writer.submit(functools.partial(write_frame, frame, image))
            except BaseException:
                _close_quietly(writer)
                raise
            writer.close()

    document = _json_document(job, plan, wanted, size, fps)
    document["flow"] = estimator_name
    document["inputColorspace"] = colorspace
    _write_text(json_path, json.dumps(document, indent=1) + "\n")
    if job.nk:
        from daflow_vfx.vfx.nuke_snippet import nuke_snippet

        node = "CornerPin2D" if settings.mode in ("affine", "perspective") else "Transform"
        text = nuke_snippet(wanted, plan.transforms, width=size[1], height=size[0], node=node,
                            label=f"daflow-vfx stabilize {settings.mode}")
        _write_text(job.nk, text)
        report.nk_path = job.nk
    report.stmap = job.stmap
    report.seconds = time.perf_counter() - started
    return report


def _write_stmap(path: str, data: np.ndarray, compression: str) -> None:
    from daflow_vfx.io.images import write_oiio_image

    # float32: half has 11 bits of mantissa, which is more than a pixel of error across a 4K frame.
    write_oiio_image(path, data, channel_names=("R", "G", "B", "A"), pixel_type="float",
                     attributes={"compression": compression, "daflow/stmap": "s=(x+0.5)/W, t=1-(y+0.5)/H"})


def _close_quietly(writer) -> None:
    try:
        writer.close()
    except Exception as exc:  # the caller re-raises the first error
        log.debug("writer error after an earlier failure: %s", exc)


def _replace(settings: StabilizeSettings, **changes) -> StabilizeSettings:
    from dataclasses import replace

    return replace(settings, **changes)
