"""Frame synthesis at a fractional time t between two frames, from their forward and backward flow.

``interpolate(frame0, frame1, flow01, flow10, t)`` is a pure function on arrays. The motion method is
forward splatting of both frames to time t (Niklaus & Liu, "Softmax Splatting", 2020), with explicit
occlusion reasoning on top:

1. **Visibility.** A pixel of frame 0 is *visible* in frame 1 when its flow is forward-backward
   consistent (Sundaram et al. 2010): ``|F01(x) + F10(x + F01(x))|`` small against the motion. Pixels
   whose flow leaves the picture, or that the model's confidence marks unreliable, count as not
   visible. Likewise for frame 1 with the flows swapped. ``v`` in [0, 1], soft.
2. **Coverage.** Both frames are splatted once with weight ``v * time weight`` (bilinear, (1 - t) for
   frame 0, t for frame 1). Where content is visible in both frames this sums to ~1 at time t: the
   *coverage* ``C`` of every target pixel by surfaces that are certainly there.
3. **Gated splat.** Each source pixel then lands with weight
   ``bilinear * time weight * exp(Z) * (v + (1 - v) * max(0, 1 - C(target)))``. A pixel that will be
   (or was) hidden, such as background about to slide under a foreground object, counts only where
   nothing visible covers its landing spot: so it fills the part of the background still visible at t
   and vanishes under the object. No z-buffer and no depth are needed; this is what removes the ghost
   on a translating object. ``splat="softmax"`` sets ``Z = -photometric_weight * |I0(x) - I1(x + F01)|``
   (brightness constancy, on display-referred guide frames) so that, among pixels landing together,
   the ones that match across the two frames win; ``splat="average"`` uses ``Z = 0``.
4. **Holes.** Target pixels nothing lands on (stretching motion, disocclusions both frames miss) are
   filled by push-pull (pyramid normalised convolution) from their valid neighbours: no holes, ever.
5. **Fallback.** Where the flows' confidence at time t is low the result fades to a plain
   ``(1 - t) * I0 + t * I1`` blend; when most of the frame fails the consistency check (wrong flows, a
   cut the caller missed) the whole frame is a blend and the result says so.

Colour: the pixels blended are the frames as given, so a linear plate stays linear (interpolate in
the plate's own colour space). The photometric term compares ``guide0``/``guide1`` when given
(display-referred [0, 1] frames, as the flow estimator saw them), else the frames clipped to [0, 1].

Devices: the computation is NumPy + OpenCV on the CPU. Torch tensors are accepted (any device) and the
result comes back as a tensor on the device of ``frame0``; the work itself runs on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["METHODS", "SPLATS", "Interpolation", "interpolate", "interpolate_detailed",
           "forward_backward_error", "backward_warp", "fill_holes"]

METHODS: tuple[str, ...] = ("motion", "blend", "nearest")
SPLATS: tuple[str, ...] = ("softmax", "average")

_Z_FLOOR = -30.0  # exp(-30) ~ 1e-13: small, yet far above float underflow, so weights never vanish


@dataclass(frozen=True, kw_only=True)
class Interpolation:
    """A synthesised frame and what it took to make it."""

    image: np.ndarray  # [H, W, C] float32, same space as the inputs
    method: str  # "motion", "blend", "nearest", "source" (t at 0 or 1), or "blend-fallback"
    occluded_fraction: float = 0.0  # share of source pixels that failed the visibility test
    hole_fraction: float = 0.0  # share of output pixels filled by push-pull
    fallback_fraction: float = 0.0  # share of output pixels blended for low confidence


# --------------------------------------------------------------------------------------------------
# helpers


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx, gy  # [H, W] each


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` [H, W, C] at ``x + flow(x)`` (bilinear, edges replicated) -> [H, W, C]."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = _grid(h, w)
    map_x = gx + flow[..., 0]
    map_y = gy + flow[..., 1]
    src = np.ascontiguousarray(image, dtype=np.float32)
    squeeze = src.ndim == 2
    if squeeze:
        src = src[..., None]
    # cv2.remap takes at most 4 channels at a time
    parts = [cv2.remap(src[..., c:c + 4], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
             for c in range(0, src.shape[2], 4)]
    parts = [p[..., None] if p.ndim == 2 else p for p in parts]
    out = np.concatenate(parts, axis=2)
    return out[..., 0] if squeeze else out


def forward_backward_error(flow_ab: np.ndarray, flow_ba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward-backward error ``|F_ab(x) + F_ba(x + F_ab(x))|`` [H, W] (pixels) and the in-frame mask.

    ``inside`` [H, W] bool is False where ``x + F_ab(x)`` leaves the picture: there is nothing to check
    against, and that content is not visible in frame b.
    """
    h, w = flow_ab.shape[:2]
    gx, gy = _grid(h, w)
    tx, ty = gx + flow_ab[..., 0], gy + flow_ab[..., 1]
    inside = (tx >= -0.5) & (tx <= w - 0.5) & (ty >= -0.5) & (ty <= h - 0.5)
    back = backward_warp(flow_ba, flow_ab)  # [H, W, 2]
    err = np.linalg.norm(flow_ab + back, axis=-1)  # [H, W]
    return err.astype(np.float32), inside


def _visibility(err: np.ndarray, inside: np.ndarray, flow_ab: np.ndarray, tolerance: float) -> np.ndarray:
    """Soft visibility [H, W] in [0, 1] from the forward-backward error, scaled by the motion."""
    magnitude = np.linalg.norm(flow_ab, axis=-1)
    # tolerance grows with the motion: long vectors carry proportionally larger estimation error
    sigma = tolerance * (1.0 + 0.05 * magnitude)
    return (np.exp(-np.square(err / sigma)) * inside).astype(np.float32)


def _splat_accumulate(values: np.ndarray | None, gx: np.ndarray, gy: np.ndarray, flow: np.ndarray,
                      scale: float, weight: np.ndarray, gate: tuple[np.ndarray, np.ndarray] | None,
                      den: np.ndarray, num: np.ndarray | None = None,
                      count: np.ndarray | None = None) -> None:
    """Bilinear forward splat: add ``weight`` (and ``weight * values``) at ``x + scale * flow``.

    ``den`` [H*W] float64, ``num`` [H*W, C] float64 accumulate in place. ``gate = (vis, coverage)``
    multiplies each corner's weight by ``vis + (1 - vis) * max(0, 1 - coverage[corner])``. ``count``
    [H*W] accumulates ``bilinear * gate`` alone: how much content lands, whatever its weight.
    """
    h, w = flow.shape[:2]
    x = gx + scale * flow[..., 0]
    y = gy + scale * flow[..., 1]
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx, fy = x - x0, y - y0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    finite = np.isfinite(x) & np.isfinite(y)
    corners = (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    )
    flat_values = None if values is None else values.reshape(h * w, -1)
    for dx, dy, bil in corners:
        xi, yi = x0 + dx, y0 + dy
        ok = finite & (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        idx = (yi * w + xi)[ok]  # [N] target pixel of each landing source pixel
        bil_ok = bil[ok].astype(np.float64)
        if gate is not None:
            vis, coverage = gate
            v = vis[ok]
            bil_ok = bil_ok * (v + (1.0 - v) * np.maximum(0.0, 1.0 - coverage[idx]))
        wgt = bil_ok * weight[ok]
        den += np.bincount(idx, weights=wgt, minlength=h * w)
        if count is not None:
            count += np.bincount(idx, weights=bil_ok, minlength=h * w)
        if num is not None and flat_values is not None:
            src = flat_values[ok.reshape(-1)]
            for c in range(src.shape[1]):
                num[:, c] += np.bincount(idx, weights=wgt * src[:, c], minlength=h * w)


def fill_holes(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Push-pull fill: pixels with ``weight`` [H, W] < 1 take colour from a smooth pyramid of neighbours.

    ``image`` [H, W, C] holds valid values where ``weight`` is 1, partly valid where it is between 0
    and 1, anything where it is 0. Vectorised per pyramid level (log2(size) levels), no pixel loops.
    """
    import cv2

    w = np.clip(weight, 0.0, 1.0).astype(np.float32)
    img = np.asarray(image, dtype=np.float32)
    img = np.where(w[..., None] > 0.0, img, 0.0)  # whatever sits in a hole (NaN too) never leaks out
    if float(w.min()) >= 1.0:
        return img.copy()
    h, wd = w.shape
    if float(w.max()) <= 0.0:
        return np.zeros_like(img)
    if h <= 2 or wd <= 2:
        total = max(float(w.sum()), 1e-12)
        mean = (img * w[..., None]).reshape(-1, img.shape[2]).sum(axis=0) / total
        return (w[..., None] * img + (1.0 - w[..., None]) * mean).astype(np.float32)
    size = ((wd + 1) // 2, (h + 1) // 2)
    small_w = cv2.resize(w, size, interpolation=cv2.INTER_AREA)
    small_num = cv2.resize(img * w[..., None], size, interpolation=cv2.INTER_AREA)
    if small_num.ndim == 2:
        small_num = small_num[..., None]
    small = small_num / np.maximum(small_w, 1e-12)[..., None]
    # a coarse cell is trusted as soon as a quarter of it is valid (the sum of its four children)
    coarse = fill_holes(small, np.minimum(1.0, 4.0 * small_w))
    up = cv2.resize(coarse, (wd, h), interpolation=cv2.INTER_LINEAR)
    if up.ndim == 2:
        up = up[..., None]
    return (w[..., None] * img + (1.0 - w[..., None]) * up).astype(np.float32)


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _to_numpy(x: Any, name: str, *, ndim: tuple[int, ...]) -> np.ndarray | None:
    if x is None:
        return None
    if _is_tensor(x):
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim not in ndim:
        raise ValueError(f"{name} must have {' or '.join(str(n) for n in ndim)} dimensions, got {arr.shape}")
    return arr


# --------------------------------------------------------------------------------------------------
# the public functions


def interpolate(frame0: Any, frame1: Any, flow01: Any, flow10: Any, t: float, *,
                conf0: Any = None, conf1: Any = None, method: str = "motion", splat: str = "softmax",
                guide0: Any = None, guide1: Any = None, photometric_weight: float = 10.0,
                consistency_tolerance: float = 1.0, confidence_threshold: tuple[float, float] = (0.05, 0.2),
                max_occluded: float = 0.6, occlusion: bool = True) -> Any:
    """The frame at time ``t`` in [0, 1] between ``frame0`` (t = 0) and ``frame1`` (t = 1).

    ``frame0``, ``frame1``: [H, W, C] (any C, e.g. linear RGB). ``flow01``: [H, W, 2] flow frame0 ->
    frame1 and ``flow10`` frame1 -> frame0, ``.flo`` convention (pixels, +x right, +y down).
    ``conf0``/``conf1``: optional [H, W] confidences in [0, 1] of ``flow01``/``flow10``.
    ``method``: ``motion`` (flow-based, see the module docstring), ``blend`` ((1 - t) I0 + t I1) or
    ``nearest`` (frame0 for t < 0.5, else frame1). ``splat``: ``softmax`` or ``average``.
    ``guide0``/``guide1``: display-referred [H, W, 3] frames for the brightness-constancy metric.
    ``consistency_tolerance``: forward-backward error (pixels, at zero motion) treated as consistent.
    ``confidence_threshold``: (low, high): splatted confidence below ``low`` gives a plain blend, above
    ``high`` pure motion, a ramp in between. ``max_occluded``: when a larger share of pixels fails the
    visibility test the flows are taken as wrong and the frame is a blend. ``occlusion=False`` turns
    the visibility gating off (every pixel lands with its full weight): only for comparisons.

    Returns [H, W, C] float32 (a torch tensor on ``frame0``'s device when ``frame0`` is one).
    See :func:`interpolate_detailed` for the same with diagnostics.
    """
    result = interpolate_detailed(
        frame0, frame1, flow01, flow10, t, conf0=conf0, conf1=conf1, method=method, splat=splat,
        guide0=guide0, guide1=guide1, photometric_weight=photometric_weight,
        consistency_tolerance=consistency_tolerance, confidence_threshold=confidence_threshold,
        max_occluded=max_occluded, occlusion=occlusion)
    if _is_tensor(frame0):
        import torch

        return torch.from_numpy(result.image).to(frame0.device)
    return result.image


def interpolate_detailed(frame0: Any, frame1: Any, flow01: Any, flow10: Any, t: float, *,
                         conf0: Any = None, conf1: Any = None, method: str = "motion",
                         splat: str = "softmax", guide0: Any = None, guide1: Any = None,
                         photometric_weight: float = 10.0, consistency_tolerance: float = 1.0,
                         confidence_threshold: tuple[float, float] = (0.05, 0.2),
                         max_occluded: float = 0.6, occlusion: bool = True) -> Interpolation:
    """:func:`interpolate`, returning an :class:`Interpolation` (NumPy image plus diagnostics)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if splat not in SPLATS:
        raise ValueError(f"unknown splat {splat!r}; choose one of {', '.join(SPLATS)}")
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {t}")
    img0 = _to_numpy(frame0, "frame0", ndim=(2, 3))
    img1 = _to_numpy(frame1, "frame1", ndim=(2, 3))
    assert img0 is not None and img1 is not None
    squeeze = img0.ndim == 2
    if squeeze:
        img0, img1 = img0[..., None], img1[..., None]
    if img0.shape != img1.shape:
        raise ValueError(f"frame0 {img0.shape} and frame1 {img1.shape} differ in shape")

    def done(image: np.ndarray, used: str, **info: float) -> Interpolation:
        image = image[..., 0] if squeeze else image
        return Interpolation(image=np.ascontiguousarray(image, dtype=np.float32), method=used, **info)

    # exact ends: a source frame is returned untouched, never resampled
    if t == 0.0:
        return done(img0.copy(), "source")
    if t == 1.0:
        return done(img1.copy(), "source")
    blend = (1.0 - t) * img0 + t * img1  # [H, W, C]
    if method == "nearest":
        return done((img0 if t < 0.5 else img1).copy(), "nearest")
    if method == "blend":
        return done(blend, "blend")

    f01 = _to_numpy(flow01, "flow01", ndim=(3,))
    f10 = _to_numpy(flow10, "flow10", ndim=(3,))
    assert f01 is not None and f10 is not None
    h, w = img0.shape[:2]
    for name, flow in (("flow01", f01), ("flow10", f10)):
        if flow.shape != (h, w, 2):
            raise ValueError(f"{name} is {flow.shape} but the frames need ({h}, {w}, 2)")
    c0 = _to_numpy(conf0, "conf0", ndim=(2,))
    c1 = _to_numpy(conf1, "conf1", ndim=(2,))
    g0 = _to_numpy(guide0, "guide0", ndim=(2, 3))
    g1 = _to_numpy(guide1, "guide1", ndim=(2, 3))
    if g0 is None or g1 is None:
        g0, g1 = np.clip(img0, 0.0, 1.0), np.clip(img1, 0.0, 1.0)
    if g0.ndim == 2:
        g0, g1 = g0[..., None], g1[..., None]

    # 1. visibility of each source pixel in the other frame
    err0, in0 = forward_backward_error(f01, f10)
    err1, in1 = forward_backward_error(f10, f01)
    vis0 = _visibility(err0, in0, f01, consistency_tolerance)  # [H, W]
    vis1 = _visibility(err1, in1, f10, consistency_tolerance)
    # judged on the round trip alone: a model that is unsure everywhere is handled by the fallback below
    occluded = float(1.0 - 0.5 * (vis0.mean() + vis1.mean()))
    if c0 is not None:
        vis0 = vis0 * np.clip(c0, 0.0, 1.0)
    if c1 is not None:
        vis1 = vis1 * np.clip(c1, 0.0, 1.0)
    if occluded > max_occluded:
        # most pixels disagree with their own round trip: the flows are wrong here, do no harm
        return done(blend, "blend-fallback", occluded_fraction=occluded, fallback_fraction=1.0)

    # photometric (brightness constancy) error on the guides, neutral (0) where the flow leaves the frame
    if splat == "softmax":
        photo0 = np.abs(g0 - backward_warp(g1, f01)).mean(axis=-1) * in0  # [H, W]
        photo1 = np.abs(g1 - backward_warp(g0, f10)).mean(axis=-1) * in1
        z0 = np.exp(np.maximum(-photometric_weight * photo0, _Z_FLOOR))
        z1 = np.exp(np.maximum(-photometric_weight * photo1, _Z_FLOOR))
    else:
        z0 = z1 = np.ones((h, w), np.float32)

    gx, gy = _grid(h, w)
    # 2. coverage of each target pixel by surely visible content
    coverage = np.zeros(h * w, np.float64)
    _splat_accumulate(None, gx, gy, f01, t, vis0 * (1.0 - t), None, coverage, None)
    _splat_accumulate(None, gx, gy, f10, 1.0 - t, vis1 * t, None, coverage, None)

    # 3. gated (softmax) splat of colour plus confidence as one extra channel
    conf_a = np.ones((h, w, 1), np.float32) if c0 is None else np.clip(c0, 0, 1)[..., None]
    conf_b = np.ones((h, w, 1), np.float32) if c1 is None else np.clip(c1, 0, 1)[..., None]
    nch = img0.shape[2]
    den = np.zeros(h * w, np.float64)
    num = np.zeros((h * w, nch + 1), np.float64)
    count = np.zeros(h * w, np.float64)
    _splat_accumulate(np.concatenate([img0, conf_a], axis=2), gx, gy, f01, t, (1.0 - t) * z0,
                      (vis0, coverage) if occlusion else None, den, num, count)
    _splat_accumulate(np.concatenate([img1, conf_b], axis=2), gx, gy, f10, 1.0 - t, t * z1,
                      (vis1, coverage) if occlusion else None, den, num, count)

    # 4. normalise; targets that less than half a pixel's worth of content reaches are (partial) holes
    out = (num / np.maximum(den, 1e-300)[:, None]).reshape(h, w, nch + 1).astype(np.float32)
    strength = np.clip(count.reshape(h, w) / 0.5, 0.0, 1.0).astype(np.float32)
    strength[den.reshape(h, w) <= 0.0] = 0.0
    holes = float(np.mean(strength < 0.5))
    if strength.min() < 1.0:
        out = fill_holes(out, strength)
    image, conf_t = out[..., :nch], out[..., nch]

    # 5. fall back to a blend where the splatted confidence is low
    low, high = confidence_threshold
    alpha = np.clip((conf_t - low) / max(high - low, 1e-6), 0.0, 1.0)[..., None]  # [H, W, 1]
    fallback = float(np.mean(alpha < 1.0))
    if fallback > 0.0:
        image = alpha * image + (1.0 - alpha) * blend
    return done(image, "motion", occluded_fraction=occluded, hole_fraction=holes, fallback_fraction=fallback)
