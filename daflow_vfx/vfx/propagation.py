"""Paint once, follow the surface: the array API of `daflow-vfx propagate`.

:func:`propagate` takes a clip, an RGBA paint made on one of its frames and returns, for every frame,
the paint moved with the surface it was painted on (alpha 0 where that surface is hidden) and the Nuke
STMap that does the same move. How each frame finds its way back to the reference frame is
:mod:`.correspondence`; sampling, STMaps and the comp are :mod:`.paint_maps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from daflow_vfx.errors import UsageError
from daflow_vfx.vfx.correspondence import FrameMap, PairFlow, TrackSettings, track
from daflow_vfx.vfx.paint_maps import map_to_stmap, sample

if TYPE_CHECKING:
    from daflow_vfx.engine import FlowEngine

__all__ = ["PropagateResult", "carry_paint", "check_paint", "engine_pair", "propagate"]


@dataclass(kw_only=True)
class PropagateResult:
    rgba: np.ndarray  # [N, H, W, 4] float32 premultiplied paint on every frame
    stmaps: np.ndarray  # [N, H, W, 4] float32 STMap frame k -> reference (R=s, G=t, B=0, A=visibility)
    maps: np.ndarray  # [N, H, W, 2] float32 reference-frame pixel position of every pixel
    alpha: np.ndarray  # [N, H, W] float32 visibility of the reference surface
    anchors: list[int] = field(default_factory=list)  # per frame, the frame it was matched to directly


def engine_pair(engine: FlowEngine) -> PairFlow:
    """The :data:`~.correspondence.PairFlow` of ``engine``: forward and backward flow of two images."""

    def pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flows = engine.estimate_window(np.stack([a, b]).astype(np.float32, copy=False))  # [2, H, W, 3] in
        if flows.backward is None:  # an estimator with forward flow only: ask again the other way round
            back = engine.estimate_window(np.stack([b, a]).astype(np.float32, copy=False)).forward[0]
        else:
            back = flows.backward[0]
        return flows.forward[0], back  # [H, W, 2] each

    return pair


def check_paint(paint: np.ndarray, size: tuple[int, int], *, name: str = "paint") -> np.ndarray:
    """``paint`` as float32 ``[H, W, 4]`` premultiplied RGBA of ``size`` (h, w), or a UsageError naming it."""
    array = np.asarray(paint)
    if array.ndim != 3 or array.shape[-1] != 4:
        raise UsageError(f"`{name}` must be RGBA [H, W, 4] (premultiplied), got shape {array.shape}; paint "
                         "needs an alpha channel to say where it is", param=name)
    if array.shape[:2] != tuple(size):
        raise UsageError(f"`{name}` is {array.shape[1]}x{array.shape[0]} but the plate is {size[1]}x{size[0]}"
                         "; paint on a frame of the plate at its own size", param=name)
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
    return np.nan_to_num(array.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)


def carry_paint(paint: np.ndarray, frame_map: FrameMap) -> np.ndarray:
    """``paint`` [h, w, 4] (premultiplied) seen through ``frame_map`` -> [H, W, 4], hidden parts cleared."""
    moved = sample(paint, frame_map.where, border="zero")  # [H, W, 4]
    return (moved * frame_map.alpha[..., None]).astype(np.float32)


def focus_of(paint: np.ndarray) -> np.ndarray:
    """[H, W] bool: where the paint is, grown a little so a hole at its very edge still counts."""
    import cv2

    mask = (paint[..., 3] > 1e-3).astype(np.uint8)
    return cv2.dilate(mask, np.ones((5, 5), np.uint8)).astype(bool)


def propagate(frames: np.ndarray | Sequence[np.ndarray], paint: np.ndarray, at: int, *, first: int = 0,
              model: str | None = None, device: str | None = None, engine: FlowEngine | None = None,
              settings: TrackSettings | None = None) -> PropagateResult:
    """Carry ``paint``, made on frame ``at``, along the surface through every frame of ``frames``.

    ``frames``: ``[N, H, W, 3]`` float32 display-referred [0, 1] (what the flow models see; convert
    linear plates with :func:`daflow_vfx.color.to_display`), numbered ``first .. first + N - 1``.
    ``paint``: ``[H, W, 4]`` premultiplied RGBA; ``at``: the frame number it was painted on.
    ``engine`` (or ``model``/``device`` to build one) computes the flows; ``settings`` tune the path
    (:class:`~.correspondence.TrackSettings`; ``method="chain"`` is the naive baseline).

    Returns a :class:`PropagateResult`: the paint on every frame (alpha 0 where its surface is hidden),
    the STMaps from each frame to the reference frame (Nuke conventions: s, t normalised, origin
    bottom-left, pixel centres), the maps in pixels and the visibility.
    """
    clip = [np.asarray(f, dtype=np.float32) for f in frames]
    if not clip or any(f.ndim != 3 or f.shape[-1] != 3 for f in clip):
        raise UsageError("`frames` must be RGB frames [N, H, W, 3]", param="frames")
    h, w = clip[0].shape[:2]
    if any(f.shape[:2] != (h, w) for f in clip):
        raise UsageError("`frames` differ in size; give frames of one size", param="frames")
    last = first + len(clip) - 1
    if not first <= at <= last:
        raise UsageError(f"`at` {at} is outside the frames {first}-{last}", param="at")
    paint = check_paint(paint, (h, w))
    if engine is None:
        from daflow_vfx.devices import device_for_model
        from daflow_vfx.engine import FlowEngine
        from daflow_vfx.estimators import DEFAULT_MODEL

        name = model or DEFAULT_MODEL
        engine = FlowEngine(name, device=device_for_model(name, device))
    numbers = list(range(first, last + 1))
    maps = {m.frame: m for m in track(lambda f: clip[f - first], at, numbers, engine_pair(engine),
                                      settings=settings, focus=focus_of(paint))}
    ordered = [maps[f] for f in numbers]
    return PropagateResult(
        rgba=np.stack([carry_paint(paint, m) for m in ordered]),
        stmaps=np.stack([map_to_stmap(m.where, m.alpha, (h, w)) for m in ordered]),
        maps=np.stack([m.where for m in ordered]),
        alpha=np.stack([m.alpha for m in ordered]),
        anchors=[m.anchor for m in ordered],
    )
