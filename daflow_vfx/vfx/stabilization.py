"""Stabilization: settings, the plan (smoothed path, corrections, crop), warping, STMaps, and
:func:`stabilize` on frames in memory.

Conventions are those of :mod:`.camera_motion` (pixel indices, 3x3 homographies on ``[x, y, 1]``) and
:mod:`.camera_path`. ``transforms[n]`` maps an *output* pixel of stabilized frame n to the *source* pixel
of plate frame n it is sampled from (``transforms[n] = path[n] @ inv(smoothed[n]) @ crop``); the
stabilized frame is ``out(q) = plate(transforms[n] @ q)``. This is what the ``.stabilize.json`` sidecar
stores.

Pipeline: flow -> :func:`~.camera_motion.estimate_camera_motion` per frame pair (robust IRLS or RANSAC,
confidence weighted, so moving foreground is ignored) -> :func:`~.camera_path.camera_path` ->
:func:`smooth_parameters` on the path's parameters (Gaussian local-linear, L1-optimal after Grundmann et
al. 2011, or locked) -> :func:`auto_crop` -> :func:`warp_frame` / :func:`stmap`. :func:`stabilize` runs
all of it on arrays; `daflow-vfx stabilize` on files is :mod:`daflow_vfx.jobs.stabilize`.

Plates are warped in their own colour space (linear in, linear out); flows only ever see display values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from daflow_vfx.errors import SequenceTooShortError, UsageError, check_choice
from daflow_vfx.vfx.camera_motion import (
    FITS,
    MODES,
    apply_matrix,
    corner_pixels,
    estimate_camera_motion,
    frame_centre,
    normalise,
    translation,
)
from daflow_vfx.vfx.camera_path import (
    camera_path,
    l1_optimal_path,
    matrices_from_parameters,
    parameter_bounds,
    path_parameters,
    smooth_gaussian,
)

log = logging.getLogger(__name__)

__all__ = [
    "FILLS",
    "INTERPOLATIONS",
    "METHODS",
    "StabilizePlan",
    "StabilizeResult",
    "StabilizeSettings",
    "auto_crop",
    "check_settings",
    "crop_matrix",
    "parse_crop",
    "plan_stabilization",
    "smooth_parameters",
    "stabilize",
    "stmap",
    "warp_frame",
]

METHODS = ("gaussian", "l1")
FILLS = ("black", "edge")
INTERPOLATIONS = ("linear", "cubic")


# --------------------------------------------------------------------------------------------------
# settings and the plan


@dataclass(frozen=True, kw_only=True)
class StabilizeSettings:
    """How to stabilize; shared by :func:`stabilize` (arrays) and the stabilize job (files)."""

    mode: str = "similarity"  # translation | similarity | affine | perspective
    fit: str = "irls"  # robust motion fit: irls | ransac
    method: str = "gaussian"  # path smoothing: gaussian | l1
    smooth: float = 0.5  # gaussian: sigma of the smoothing in seconds
    fps: float = 24.0  # turns smooth seconds into frames
    lock: bool = False  # locked-off camera: the path held at its mean
    strength: float = 1.0  # 0 = the original camera, 1 = fully smoothed (or locked)
    crop: str | float = "auto"  # "auto" (largest border-free crop), "none", or the kept fraction (0, 1]
    fill: str = "black"  # outside the plate: black, or edge-extended
    margin: float = 0.1  # l1: how far the path may leave the original, as a fraction of the frame
    min_crop: float = 0.5  # auto crop never keeps less than this fraction (the rest is fill)
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
            raise UsageError(f"`crop` {value!r} is neither auto, none nor a number; use auto, none or a "
                             "kept fraction such as 0.9", param="crop") from None
    else:
        ratio = float(value)
    if not (math.isfinite(ratio) and 0.0 < ratio <= 1.0):
        raise UsageError(f"`crop` {value} is out of range; a crop ratio is the kept fraction of the frame, "
                         "0 < RATIO <= 1 (e.g. 0.9), or use auto", param="crop")
    return ratio


def check_settings(settings: StabilizeSettings) -> StabilizeSettings:
    """Raise :class:`UsageError` (one line, names the setting) for any setting that cannot be used."""
    for value, choices, param in ((settings.mode, MODES, "mode"), (settings.fit, FITS, "fit"),
                                  (settings.method, METHODS, "method"), (settings.fill, FILLS, "fill"),
                                  (settings.interpolation, INTERPOLATIONS, "interpolation")):
        check_choice(value, choices, param)
    if not (math.isfinite(settings.strength) and 0.0 <= settings.strength <= 1.0):
        raise UsageError(f"`strength` {settings.strength} is out of range; use a value from 0 (no "
                         "stabilization) to 1 (full)", param="strength")
    if not (math.isfinite(settings.smooth) and settings.smooth >= 0.0):
        raise UsageError(f"`smooth` {settings.smooth} must be zero or more seconds", param="smooth")
    if not (math.isfinite(settings.fps) and settings.fps > 0.0):
        raise UsageError(f"`fps` {settings.fps} must be a positive frame rate such as 24 or 23.976",
                         param="fps")
    if not (math.isfinite(settings.margin) and 0.0 < settings.margin < 0.5):
        raise UsageError(f"`margin` {settings.margin} must be between 0 and 0.5 (a fraction of the frame)",
                         param="margin")
    if not 0.0 < settings.min_crop <= 1.0:
        raise UsageError(f"`min_crop` {settings.min_crop} must be in (0, 1]", param="min_crop")
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
        bounds = parameter_bounds(mode, size, margin)
        # Pin the ends to the Gaussian path there (at least a 1/4 s sigma): see l1_optimal_path.
        anchor = smooth_gaussian(params, max(settings.smooth * settings.fps, 0.25 * settings.fps, 2.0))
        target = np.stack([l1_optimal_path(params[:, k], bound=bounds[k], ends=(anchor[0, k], anchor[-1, k]))
                           for k in range(params.shape[1])], axis=1)
    else:
        target = smooth_gaussian(params, settings.smooth * settings.fps)
    return params + settings.strength * (target - params)


def crop_matrix(scale: float, size: tuple[int, int]) -> np.ndarray:
    """Output pixel -> uncropped stabilized pixel for a centred crop keeping ``scale`` of each side."""
    cx, cy = frame_centre(size)
    return translation(cx, cy) @ np.diag([scale, scale, 1.0]) @ translation(-cx, -cy)


def _crop_fits(corrections: np.ndarray, scale: float, size: tuple[int, int], eps: float) -> bool:
    h, w = size
    corners = apply_matrix(crop_matrix(scale, size), corner_pixels(size))  # [4, 2]
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
    corrections = np.stack([normalise(p @ np.linalg.inv(s)) for p, s in zip(path, smoothed, strict=True)])
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
    transforms = np.stack([normalise(c @ k) for c in corrections])
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
        raise UsageError(f"`flows` must hold one forward flow per frame pair: {len(stack)} frames need "
                         f"{len(stack) - 1} flows, got {len(flow_list)}", param="flows")
    size = stack[0].shape[:2]
    for n, (frame, flow) in enumerate(zip(stack, flow_list, strict=False)):
        if frame.shape[:2] != size or np.shape(flow)[:2] != size:
            raise UsageError(f"frame {n} or its flow is not {size[1]}x{size[0]} like frame 0; every frame "
                             "and flow must have the same size", param=("frames", "flows"))
    conf_list = list(confidence) if confidence is not None else [None] * len(flow_list)
    if len(conf_list) != len(flow_list):
        raise UsageError(f"got {len(conf_list)} `confidence` maps for {len(flow_list)} flows",
                         param="confidence")
    motions = [estimate_camera_motion(f, confidence=c, mode=settings.mode, method=settings.fit)
               for f, c in zip(flow_list, conf_list, strict=True)]
    plan = plan_stabilization(motions, size=size, settings=settings)
    out = np.stack([warp_frame(f, t, fill=settings.fill, interpolation=settings.interpolation)
                    for f, t in zip(stack, plan.transforms, strict=True)])
    return StabilizeResult(frames=out, plan=plan)
