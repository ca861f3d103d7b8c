"""Camera motion from optical flow: the global motion of each frame pair, robust to moving foreground.

Conventions (shared by :mod:`.camera_path`, :mod:`.stabilization` and the ``.stabilize.json`` sidecar):

- Pixel coordinates are *pixel indices*: +x right, +y down, the centre of the top-left pixel at (0, 0) and
  of the bottom-right one at (W - 1, H - 1), as in the ``.flo`` flow convention and OpenCV's warps.
- A matrix is a 3x3 float64 homography on column vectors ``[x, y, 1]``; apply it with a homogeneous
  divide (:func:`apply_matrix`). Translation, similarity and affine matrices have a last row of
  ``[0, 0, 1]``.
- ``motion[n]`` (from :func:`estimate_camera_motion`) maps a pixel of frame n to where the same scene point
  is in frame n+1: the global part of the forward flow, ``p_{n+1} ~ motion[n] @ p_n``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from daflow_vfx.errors import UsageError, check_choice

log = logging.getLogger(__name__)

__all__ = [
    "FITS",
    "MODES",
    "apply_matrix",
    "corner_pixels",
    "estimate_camera_motion",
    "frame_centre",
    "normalise",
    "translation",
]

MODES = ("translation", "similarity", "affine", "perspective")
FITS = ("irls", "ransac")

_MIN_POINTS = {"translation": 8, "similarity": 8, "affine": 12, "perspective": 16}
_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))  # median of |N(0, I_2)|: residual norms -> sigma
_TUKEY_C = 4.685
_HUBER_K = 1.345


# --------------------------------------------------------------------------------------------------
# small matrix helpers


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to ``points`` [K, 2] -> [K, 2] (homogeneous divide)."""
    pts = np.asarray(points, dtype=np.float64)
    out = pts @ matrix[:2, :2].T + matrix[:2, 2]
    den = pts @ matrix[2, :2] + matrix[2, 2]
    return out / den[:, None]


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def frame_centre(size: tuple[int, int]) -> tuple[float, float]:
    """Centre of a (height, width) frame in pixel-index coordinates."""
    h, w = size
    return (w - 1) / 2.0, (h - 1) / 2.0


def corner_pixels(size: tuple[int, int]) -> np.ndarray:
    """Centres of the four corner pixels [4, 2]: top-left, top-right, bottom-right, bottom-left."""
    h, w = size
    return np.array([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]])


def normalise(matrix: np.ndarray) -> np.ndarray:
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
        return translation(t[0], t[1])
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
        resid = np.linalg.norm(apply_matrix(model, src) - dst, axis=1)  # [K]
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
        change = np.abs(apply_matrix(new, corners) - apply_matrix(model, corners)).max()
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
        return translation(t[0], t[1])
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
    return np.vstack([m, [0.0, 0.0, 1.0]]) if m.shape == (2, 3) else normalise(m.astype(np.float64))


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
    check_choice(mode, MODES, "mode")
    check_choice(method, FITS, "method")
    flow = np.asarray(flow)  # [H, W, 2]
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise UsageError(f"`flow` must be [H, W, 2], got shape {tuple(flow.shape)}", param="flow")
    if confidence is not None:
        confidence = np.asarray(confidence)  # [H, W]
        if confidence.shape != flow.shape[:2]:
            raise UsageError(f"`confidence` {tuple(confidence.shape)} does not match the flow "
                             f"{flow.shape[:2]}", param="confidence")
    h, w = flow.shape[:2]
    src, dst, weight = _sample_points(flow, confidence, max_points)
    if len(src) < _MIN_POINTS[mode]:
        log.warning("camera motion: only %d usable flow samples; assuming no motion", len(src))
        return np.eye(3)

    # Centred, scaled coordinates: the normal equations stay well conditioned at any resolution.
    cx, cy = frame_centre((h, w))
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
        model = translation(_weighted_median(disp[:, 0], weight), _weighted_median(disp[:, 1], weight))
        model = _irls("translation", src_n, dst_n, weight, model, floor=floor, huber_iters=4)
        for step in MODES[1:MODES.index(mode) + 1]:
            model = _irls(step, src_n, dst_n, weight, model, floor=floor, huber_iters=0)
    result = normalise(denorm @ model @ norm)
    if not np.isfinite(result).all():
        log.warning("camera motion: the fit did not converge; assuming no motion")
        return np.eye(3)
    return result
