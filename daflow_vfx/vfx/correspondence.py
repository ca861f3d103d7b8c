"""Long-range correspondence: where every pixel of frame k was on the reference frame, without drift.

Chaining frame-to-frame vectors adds every step's error to the next, so paint carried that way slides
off the surface after a few dozen frames. Here each frame is matched against an *anchor* image instead:

1. The anchor starts as the reference frame itself. Frame k is matched to it directly: the anchor is
   warped onto frame k's grid with the map found for frame k-1 (the guess), and the flow between frame k
   and that warped anchor (a small residual) corrects the guess. The correction is measured against the
   anchor's own pixels, so errors do not pile up from frame to frame: a guess that is off by e pixels
   is pulled back by the residual flow, not passed on.
2. The match is scored: the share of frame k's pixels (among those that land on the anchor) that pass
   the forward-backward check and look like the anchor there. While the score holds above
   ``min_confidence`` the anchor stays. When it drops (the view has changed too much: scale,
   perspective, lighting), the previous frame, which still matched, becomes a *keyframe*: its map to the
   reference is kept, frame k is matched to the keyframe directly, and the two maps are composed. Error
   then grows only by one direct match per keyframe, never per frame.
3. Where the keyframe itself could not see the surface (it was hidden when the keyframe was made),
   frame k is also matched to the reference directly for the pixels that matter (those that land on the
   ``focus`` of the reference, the paint), so a surface that comes back gets its paint back.

Visibility (``alpha`` [H, W] in [0, 1]) is the product of the forward-backward consistency of each
match, a photometric check against the anchor and the keyframe's own visibility; 0 where the surface
is hidden or off the reference frame. The map is kept for hidden pixels too (filled from their
neighbours), so the next frame's guess is sensible when they reappear.

``method="chain"`` is the naive baseline the benchmark compares with: frame k matched to frame k-1 only,
maps composed all the way back, visibility multiplied along the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from daflow_vfx.errors import UsageError
from daflow_vfx.vfx.paint_maps import compose, fill_map, identity_map, inside, sample
from daflow_vfx.vfx.surface_fit import steady_map

__all__ = ["METHODS", "FrameMap", "PairFlow", "TrackSettings", "check_track_settings", "track"]

METHODS = ("anchored", "chain")

# The photometric check's tolerance: this many times the typical (median) blurred-colour difference of
# a match, between PHOTO_FLOOR and TrackSettings.photo_tolerance (display values).
PHOTO_SPREAD = 3.0
PHOTO_FLOOR = 0.02

# (image a, image b), each [H, W, 3] display [0, 1] -> (flow a->b, flow b->a), each [H, W, 2] pixels
PairFlow = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, kw_only=True)
class TrackSettings:
    method: str = "anchored"  # anchored | chain (naive, for comparison)
    min_confidence: float = 0.6  # match score under which a new keyframe is taken
    fb_tolerance: float = 1.0  # pixels of forward-backward error at which visibility falls to 1/e
    photo_tolerance: float = 0.1  # ceiling of the display-value difference (blurred) above which
    # visibility fades; each match uses 3x its median difference when that is lower (_photo_tolerance)
    edge: int = 1  # pixels the visible region is shrunk by: flow is least reliable at occlusion edges
    steady: float = 32.0  # Gaussian sigma (pixels) of the local affine fit that steadies each match's map
    # (surface_fit.steady_map); 0 keeps the raw flow


def check_track_settings(settings: TrackSettings) -> TrackSettings:
    from daflow_vfx.errors import check_choice

    check_choice(settings.method, METHODS, "method")
    if not 0.0 <= settings.min_confidence <= 1.0:
        raise UsageError(f"`min_confidence` {settings.min_confidence} must be between 0 and 1",
                         param="min_confidence")
    if not settings.fb_tolerance > 0 or not settings.photo_tolerance > 0:
        raise UsageError("`fb_tolerance` and `photo_tolerance` must be positive",
                         param=("fb_tolerance", "photo_tolerance"))
    if settings.edge < 0:
        raise UsageError(f"`edge` {settings.edge} must be zero or more pixels", param="edge")
    if not settings.steady >= 0:
        raise UsageError(f"`steady` {settings.steady} must be zero (off) or more pixels", param="steady")
    return settings


@dataclass
class FrameMap:
    """Where the pixels of one frame were on the reference frame."""

    frame: int
    where: np.ndarray  # [H, W, 2] float32 reference-frame pixel position of each pixel of this frame
    alpha: np.ndarray  # [H, W] float32 in [0, 1]: the surface seen here is seen on the reference frame
    anchor: int  # the frame this one was matched to directly (the reference, a keyframe, or k-1 for chain)
    confidence: float  # the match score against that anchor


@dataclass
class _Match:
    where: np.ndarray  # [H, W, 2] this frame -> anchor pixels
    valid: np.ndarray  # [H, W] in [0, 1]
    score: float


def _blur(image: np.ndarray) -> np.ndarray:
    import cv2

    # noise and compression blocks differ between frames of one surface; their blurred colour does not
    return cv2.GaussianBlur(np.ascontiguousarray(image, dtype=np.float32), (0, 0), 1.5)


def _photo_tolerance(diff: np.ndarray, matched: np.ndarray, settings: TrackSettings) -> float:
    """The photometric tolerance of one match: a multiple of the typical difference where it matched.

    Where a surface is hidden, the colour differs from the anchor's by more than where it is seen. How
    much more depends on the plate: noise, compression and lighting raise the difference everywhere.
    So the tolerance follows the median difference over the pixels the forward-backward check passed
    (PHOTO_SPREAD times it, a robust "clearly more than usual"), never above ``photo_tolerance`` (the
    fixed ceiling) nor below PHOTO_FLOOR (so a clean plate does not drop paint for a grain of noise).
    """
    if not matched.any():
        return settings.photo_tolerance
    typical = float(np.median(diff[matched]))
    return float(np.clip(PHOTO_SPREAD * typical, PHOTO_FLOOR, settings.photo_tolerance))


def _match(image: np.ndarray, anchor: np.ndarray, guess: np.ndarray, pair: PairFlow,
           settings: TrackSettings) -> _Match:
    """Frame ``image`` [H, W, 3] matched to ``anchor`` [h, w, 3] starting from ``guess`` [H, W, 2]."""
    import cv2

    h, w = image.shape[:2]
    ah, aw = anchor.shape[:2]
    warped = sample(anchor, guess, border="edge")  # [H, W, 3] the anchor as the guess puts it on this frame
    forward, backward = pair(image, warped)  # [H, W, 2] each: residual motion between the two
    step = identity_map(h, w) + forward  # [H, W, 2] this frame -> warped anchor
    where = compose(guess, step)  # [H, W, 2] this frame -> anchor
    fb = np.linalg.norm(forward + sample(backward, step, border="edge"), axis=-1)  # [H, W] pixels
    vis_fb = np.exp(-np.square(fb / settings.fb_tolerance))
    diff = np.abs(_blur(image) - sample(_blur(anchor), where, border="edge")).mean(axis=-1)  # [H, W]
    on = inside(where, ah, aw) & inside(step, h, w)
    tol = _photo_tolerance(diff, on & (vis_fb > 0.5), settings)
    vis_photo = np.clip((2.0 * tol - diff) / tol, 0.0, 1.0)  # 1 up to tol, 0 from 2 * tol
    valid = (vis_fb * vis_photo * on).astype(np.float32)
    if settings.edge:
        size = 2 * settings.edge + 1
        valid = cv2.erode(valid, np.ones((size, size), np.uint8), borderType=cv2.BORDER_REPLICATE)
    score = float(valid[on].mean()) if on.any() else 0.0
    # scored on the raw flow; the paint then follows the steadied map (noise averaged over the surface)
    where = steady_map(where.astype(np.float32), valid, settings.steady)
    return _Match(where=where, valid=valid, score=score)


def _focus_holes(where: np.ndarray, alpha: np.ndarray, focus: np.ndarray | None) -> int:
    """How many pixels that land on the reference's ``focus`` [h, w] are not seen through the chain."""
    h, w = where.shape[:2]
    on_focus = inside(where, h, w)
    if focus is not None:
        on_focus &= sample(focus.astype(np.float32), where, border="zero") > 0.5
    return int((on_focus & (alpha < 0.5)).sum())


def _anchored(read: Callable[[int], np.ndarray], at: int, frames: list[int], reference: np.ndarray,
              pair: PairFlow, settings: TrackSettings, focus: np.ndarray | None) -> Iterator[FrameMap]:
    """``frames`` (consecutive, moving away from ``at``), matched through anchors."""
    h, w = reference.shape[:2]
    ident = identity_map(h, w)
    anchor_frame, anchor_image = at, reference
    anchor_where, anchor_alpha = ident, np.ones((h, w), np.float32)  # anchor -> reference
    guess = ident  # this frame -> anchor: the previous frame's map (the surface moves little per frame)
    prev_frame, prev_image, prev_where, prev_alpha = at, reference, ident, anchor_alpha
    min_holes = max(16, h * w // 2000)  # a few scattered pixels are not worth a second match
    for frame in frames:
        image = read(frame)
        match = _match(image, anchor_image, guess, pair, settings)
        if match.score < settings.min_confidence and prev_frame != anchor_frame:
            # the view has moved on: the previous frame, which still matched, becomes the keyframe
            anchor_frame, anchor_image = prev_frame, prev_image
            anchor_where, anchor_alpha = fill_map(prev_where, prev_alpha), prev_alpha
            match = _match(image, anchor_image, ident, pair, settings)
        where = compose(anchor_where, match.where)  # [H, W, 2] this frame -> reference
        alpha = match.valid * sample(anchor_alpha, match.where, border="zero")
        if anchor_frame != at and _focus_holes(where, alpha, focus) >= min_holes:
            # what the keyframe could not see, ask the reference directly (a surface that came back)
            direct = _match(image, reference, fill_map(where, alpha), pair, settings)
            better = direct.valid > alpha
            where = np.where(better[..., None], direct.where, where)
            alpha = np.maximum(alpha, direct.valid)
        alpha = alpha.astype(np.float32)
        yield FrameMap(frame=frame, where=where.astype(np.float32), alpha=alpha, anchor=anchor_frame,
                       confidence=match.score)
        guess = fill_map(match.where, match.valid)
        prev_frame, prev_image, prev_where, prev_alpha = frame, image, where, alpha


def _chained(read: Callable[[int], np.ndarray], at: int, frames: list[int], reference: np.ndarray,
             pair: PairFlow, settings: TrackSettings) -> Iterator[FrameMap]:
    """The naive baseline: each frame matched to its neighbour only, maps composed back to ``at``."""
    h, w = reference.shape[:2]
    ident = identity_map(h, w)
    prev_frame, prev_image, prev_where, prev_alpha = at, reference, ident, np.ones((h, w), np.float32)
    for frame in frames:
        image = read(frame)
        match = _match(image, prev_image, ident, pair, settings)
        where = compose(prev_where, match.where)
        alpha = (match.valid * sample(prev_alpha, match.where, border="zero")).astype(np.float32)
        yield FrameMap(frame=frame, where=where, alpha=alpha, anchor=prev_frame, confidence=match.score)
        prev_frame, prev_image, prev_where, prev_alpha = frame, image, where, alpha


def track(read: Callable[[int], np.ndarray], at: int, frames: list[int], pair: PairFlow, *,
          settings: TrackSettings | None = None, focus: np.ndarray | None = None) -> Iterator[FrameMap]:
    """Yield a :class:`FrameMap` for each of ``frames`` (any order in, reference first, then outward).

    ``read(frame)`` returns the display-referred ``[H, W, 3]`` frame; every frame between ``at`` and the
    farthest of ``frames`` is read once (the correspondence walks there). ``pair`` computes the flows of
    one pair of images (:func:`daflow_vfx.vfx.propagation.engine_pair`). ``focus`` [H, W] bool, in the
    reference frame: where the paint is, so the extra reference match of step 3 runs only when it helps.
    """
    settings = check_track_settings(settings or TrackSettings())
    wanted = set(frames)
    reference = read(at)
    h, w = reference.shape[:2]
    if at in wanted:
        yield FrameMap(frame=at, where=identity_map(h, w), alpha=np.ones((h, w), np.float32), anchor=at,
                       confidence=1.0)
    for side in (1, -1):
        reach = [f for f in wanted if (f - at) * side > 0]
        if not reach:
            continue
        far = max(reach) if side > 0 else min(reach)
        walk = list(range(at + side, far + side, side))
        if settings.method == "chain":
            maps = _chained(read, at, walk, reference, pair, settings)
        else:
            maps = _anchored(read, at, walk, reference, pair, settings, focus)
        for item in maps:
            if item.frame in wanted:
                yield item
