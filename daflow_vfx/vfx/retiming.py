"""Retime frames: scene cuts, the shutter, and the loop that draws every output frame.

Which source time each output frame shows comes from :mod:`daflow_vfx.vfx.timing` (speed, fps or a
curve). This module draws them: a source time between frames n and n+1 is synthesised from the two
frames and their flows (:func:`~daflow_vfx.vfx.synthesis.interpolate_detailed`), a whole one is the
plate frame itself.

Scene cuts (:func:`detect_cut`): an interval whose colour histograms jump, or whose flow fails to
explain one frame from the other (large warped residual and few forward-backward consistent
pixels), is a cut; a time inside it takes the nearest frame instead of mixing two shots (and motion
blur samples stay on the centre's side of it).

Motion blur (``shutter``) averages ``shutter_samples`` synthesised sub-frames spread over the
shutter-open fraction of the output frame's own source-time step (S for speed, SRC/DST for fps, the
curve's local slope), so the blur matches the new speed.

One loop (:func:`render_frames`) serves :func:`retime` on frames in memory (arrays or tensors, flows
given or computed) and the `daflow-vfx retime` job (:mod:`daflow_vfx.jobs.retime`: plate in, files out).
It streams: :class:`FrameSources` reads frames and flows on demand, in frame order, and drops each after
the last output frame that needs it, so memory stays a few frames deep for speed and fps maps (a curve
that jumps back keeps what it will need again).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from daflow_vfx.errors import InputError, SequenceTooShortError, UsageError, check_choice
from daflow_vfx.vfx.timing import FrameMap

if TYPE_CHECKING:  # the engine is only called, never imported, unless flows must be computed
    from daflow_vfx.engine import FlowEngine

log = logging.getLogger(__name__)

__all__ = [
    "CutCheck",
    "FlowQuad",
    "FrameSources",
    "RetimeFrame",
    "RetimePlan",
    "Retimed",
    "check_retime_options",
    "detect_cut",
    "make_plan",
    "render_frames",
    "retime",
    "shutter_spans",
]

_EPS = 1e-9


# --------------------------------------------------------------------------------------------------
# scene cuts


@dataclass(frozen=True, kw_only=True)
class CutCheck:
    """Why an interval was (or was not) called a cut."""

    cut: bool
    histogram: float  # total-variation distance of the colour histograms, 0 (same) .. 1 (disjoint)
    residual: float | None = None  # mean |I0 - I1(x + F01)| on display values, None without flow
    consistent: float | None = None  # share of forward-backward consistent pixels, None without flow


def _histogram_distance(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    dist = 0.0
    for c in range(a.shape[2]):
        ha = np.bincount(np.clip((a[..., c] * bins).astype(np.int64), 0, bins - 1).ravel(), minlength=bins)
        hb = np.bincount(np.clip((b[..., c] * bins).astype(np.int64), 0, bins - 1).ravel(), minlength=bins)
        dist += 0.5 * float(np.abs(ha / ha.sum() - hb / hb.sum()).sum())
    return dist / a.shape[2]


def detect_cut(display0: np.ndarray, display1: np.ndarray, flow01: np.ndarray | None = None,
               flow10: np.ndarray | None = None, *, histogram_threshold: float = 0.4,
               residual_threshold: float = 0.1, consistency_threshold: float = 0.5) -> CutCheck:
    """Is there a cut between two consecutive display-referred frames [H, W, 3]?

    A cut when the colour histograms differ by ``histogram_threshold`` or more (total variation), or,
    with flows, when the flow cannot explain frame 0 from frame 1: mean warped residual at least
    ``residual_threshold`` *and* fewer than ``consistency_threshold`` of the pixels forward-backward
    consistent. A fast pan moves pixels but keeps both small; two shots fail both.
    """
    from daflow_vfx.vfx.synthesis import backward_warp, forward_backward_error

    hist = _histogram_distance(display0, display1)
    if flow01 is None or flow10 is None:
        return CutCheck(cut=hist >= histogram_threshold, histogram=hist)
    err, inside = forward_backward_error(flow01, flow10)
    magnitude = np.linalg.norm(flow01, axis=-1)
    consistent_mask = inside & (err < 1.0 + 0.05 * magnitude)
    consistent = float(consistent_mask.mean())
    diff = np.abs(display0 - backward_warp(display1, flow01)).mean(axis=-1)  # [H, W]
    residual = float(diff[inside].mean()) if inside.any() else float(diff.mean())
    unexplained = residual >= residual_threshold and consistent < consistency_threshold
    cut = hist >= histogram_threshold or unexplained
    return CutCheck(cut=cut, histogram=hist, residual=residual, consistent=consistent)


# --------------------------------------------------------------------------------------------------
# the frame loop


@dataclass(kw_only=True)
class RetimeFrame:
    """One output frame of the map, as the JSON sidecar records it."""

    frame: int
    source: float
    method: str = ""  # source | motion | blend | nearest | blend-fallback | cut-nearest
    cut: bool = False  # the interval around the source time is a scene cut
    sources: tuple[int, ...] = ()  # plate frames it was made from
    samples: int = 1  # sub-frame samples averaged (motion blur)


def _frame_step(frame_map: FrameMap, index: int) -> float:
    """Source time covered by one output frame around ``index`` (for the shutter)."""
    if len(frame_map) < 2:
        return 1.0
    lo, hi = max(index - 1, 0), min(index + 1, len(frame_map) - 1)
    return abs(frame_map[hi][1] - frame_map[lo][1]) / (hi - lo)


def _sample_times(center: float, span: float, samples: int, first: int, last: int) -> list[float]:
    """Shutter sample times: ``samples`` evenly inside ``center +- span/2``, held on the plate."""
    if span <= 0 or samples <= 1:
        return [center]
    offsets = [((i + 0.5) / samples - 0.5) * span for i in range(samples)]
    return [min(max(center + o, float(first)), float(last)) for o in offsets]


def _split(time_: float) -> tuple[int, float]:
    """Source time -> (frame n, t in [0, 1)) with times within 1e-6 of a frame snapped onto it."""
    n = math.floor(time_ + 1e-6)
    t = time_ - n
    return n, (0.0 if abs(t) < 1e-6 else t)


FlowQuad = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]  # f01, f10, conf0, conf1


class FrameSources:
    """Plate frames (raw and display), flows and cut checks, loaded on demand and dropped after last use.

    ``read(frame)`` gives the raw frame [H, W, C]. Flows come from one of: ``flow_stream`` (the engine's
    ascending :class:`~daflow_vfx.engine.FrameFlows`) or ``flow_lookup`` (the flows of interval n: arrays
    in memory, or rendered vectors the job reads). The engine's prefetch thread and the main thread share
    one plate reader (a video decoder is not thread-safe), so reads go through a lock, and frames the
    engine reads that retime needs later are kept rather than read twice.
    """

    def __init__(self, *, read: Callable[[int], np.ndarray], colorspace: str, last_use: dict[int, int],
                 interval_use: dict[int, int]) -> None:
        self.read, self.colorspace = read, colorspace
        self.last_use, self.interval_use = last_use, interval_use
        self.index = 0
        self._lock = threading.Lock()
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # frame -> (raw, display)
        self._flows: dict[int, FlowQuad] = {}
        self.cut_checks: dict[int, CutCheck] = {}
        self.bad_pixels = 0
        self.flow_stream: Iterator[Any] | None = None  # FrameFlows from the engine, ascending frames
        self.flow_lookup: Callable[[int], FlowQuad] | None = None  # flows of interval n, any order
        # engine flows pulled ahead of their use: frame -> (flow, confidence)
        self._fwd: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._bwd: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    # frames
    def _load(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        from daflow_vfx.color import sanitize, to_display

        with self._lock:
            cached = self._frames.get(frame)
            if cached is not None:
                return cached
            clean = sanitize(self.read(frame))
            if clean.bad_pixels:
                log.info("frame %d: sanitised %d NaN/Inf/negative pixel(s)", frame, clean.bad_pixels)
                self.bad_pixels += clean.bad_pixels
            image = clean.image
            if image.ndim == 3 and image.shape[2] == 3:
                display = to_display(image, self.colorspace)
            else:  # not RGB: the guide is the clipped values, for the brightness-constancy term only
                display = np.clip(image, 0.0, 1.0)
            pair = (image, display)
            if self.last_use.get(frame, -1) >= self.index:
                self._frames[frame] = pair
            return pair

    def raw(self, frame: int) -> np.ndarray:
        return self._load(frame)[0]  # [H, W, 3] plate's own colour space

    def display(self, frame: int) -> np.ndarray:
        return self._load(frame)[1]  # [H, W, 3] display [0, 1]

    # flows of interval n (n -> n + 1)
    def flows(self, n: int) -> FlowQuad:
        if n not in self._flows:
            if self.flow_lookup is not None:
                # kept until release(): a lookup may read files, and an interval is asked for repeatedly
                self._flows[n] = self.flow_lookup(n)
            else:
                self._pull_engine(n)
        return self._flows[n]

    def _pull_engine(self, n: int) -> None:
        assert self.flow_stream is not None
        forward, backward = self._fwd, self._bwd
        while n not in forward or n + 1 not in backward:
            ff = next(self.flow_stream, None)
            if ff is None:
                raise InputError(f"no flow came back for frames {n}-{n + 1}; this is a bug, please report it")
            if ff.forward is not None and self.interval_use.get(ff.frame, -1) >= self.index:
                forward[ff.frame] = (ff.forward, ff.confidence_forward)
            if ff.backward is not None and self.interval_use.get(ff.frame - 1, -1) >= self.index:
                backward[ff.frame] = (ff.backward, ff.confidence_backward)
        (f01, c0), (f10, c1) = forward.pop(n), backward.pop(n + 1)
        self._flows[n] = (f01, f10, c0, c1)

    def release(self, index: int) -> None:
        """Forget what no output at or after ``index`` needs."""
        self.index = index
        with self._lock:
            for frame in [f for f in self._frames if self.last_use.get(f, -1) < index]:
                del self._frames[frame]
        for n in [n for n in self._flows if self.interval_use.get(n, -1) < index]:
            del self._flows[n]


@dataclass(frozen=True)
class RetimePlan:
    """Sample times of every output frame, and the last output index that needs each frame / interval."""

    samples: list[list[tuple[int, float]]]  # per output frame: (plate frame n, t in [0, 1)) per sample
    last_use: dict[int, int]  # plate frame -> last output index reading it
    interval_use: dict[int, int]  # n (interval n -> n + 1) -> last output index interpolating in it


def make_plan(frame_map: FrameMap, spans: Sequence[float], shutter_samples: int, first: int,
              last: int) -> RetimePlan:
    """Where every output frame samples the plate, from the map and the shutter ``spans``."""
    samples: list[list[tuple[int, float]]] = []
    last_use: dict[int, int] = {}
    interval_use: dict[int, int] = {}
    for i, ((_, source), span) in enumerate(zip(frame_map, spans, strict=True)):
        split = [_split(s) for s in _sample_times(source, span, shutter_samples, first, last)]
        samples.append(split)
        for n, t in split:
            last_use[n] = i
            if t > 0.0:
                last_use[n + 1] = i
                interval_use[n] = i
    return RetimePlan(samples=samples, last_use=last_use, interval_use=interval_use)


def shutter_spans(frame_map: FrameMap, shutter: float) -> list[float]:
    """Source time the shutter stays open for each output frame: ``shutter`` x the local frame step."""
    return [shutter * _frame_step(frame_map, i) for i in range(len(frame_map))]


def check_retime_options(method: str, splat: str, shutter: float, shutter_samples: int) -> None:
    """A :class:`UsageError` naming the parameter for any of these that cannot be used."""
    from daflow_vfx.vfx.synthesis import METHODS, SPLATS

    check_choice(method, METHODS, "method")
    check_choice(splat, SPLATS, "splat")
    if not 0.0 <= shutter <= 1.0:
        raise UsageError(f"`shutter` must be between 0 and 1 (fraction of the output frame), got {shutter}",
                         param="shutter")
    if shutter_samples < 1:
        raise UsageError(f"`shutter_samples` must be at least 1, got {shutter_samples}",
                         param="shutter_samples")


@dataclass(kw_only=True)
class Retimed:
    """What :func:`retime` returns."""

    images: list[np.ndarray]  # [H, W, C] float32 per output frame, in ``frame_map`` order
    frames: list[RetimeFrame]  # how each was made
    cuts: list[int]  # n: a scene cut between frames n and n + 1


def retime(frames: Any, frame_map: FrameMap, *, first: int = 0, forward: Any = None, backward: Any = None,
           confidence_forward: Any = None, confidence_backward: Any = None, method: str = "motion",
           splat: str = "softmax", shutter: float = 0.0, shutter_samples: int = 8,
           cuts: str | Sequence[int] = "auto", colorspace: str = "srgb", model: str = "dis",
           device: str = "cpu", engine: FlowEngine | None = None) -> Retimed:
    """Retime frames held in memory: the array form of `daflow-vfx retime`.

    ``frames``: [N, H, W, C] (array, list of arrays or torch tensor), plate frames ``first .. first+N-1``
    in their own colour space (``colorspace``: how to show them to the flow estimator and the
    brightness-constancy term; pixels are blended as given). ``frame_map``: from :func:`speed_map`,
    :func:`fps_map` or :func:`curve_map` over ``first .. first+N-1``.
    ``forward``/``backward``: [N-1, H, W, 2] flows i -> i+1 and i+1 -> i (``.flo`` convention), optional
    confidences [N-1, H, W]; without them, and with ``method="motion"``, flows are computed by
    ``engine``: build one with :func:`daflow_vfx.jobs.options.build_engine` for a dtype, tiles, a memory
    budget or threads; ``model`` and ``device`` alone stand for ``FlowEngine(model, device=device)``.
    Mistakes raise the same errors as :func:`~daflow_vfx.vfx.stabilization.stabilize`: a
    :class:`~daflow_vfx.errors.UsageError` naming the parameter, or
    :class:`~daflow_vfx.errors.SequenceTooShortError` for fewer than two frames. ``cuts``: ``"auto"``
    (detect), ``"none"``, or the n of each cut between n and n + 1. ``shutter``: motion blur, open
    fraction of the output frame interval.

    NumPy on the CPU (tensors are converted); returns :class:`Retimed`.
    """
    check_retime_options(method, splat, shutter, shutter_samples)
    if _is_tensor(frames):
        frames = frames.detach().float().cpu().numpy()
    stack = [np.asarray(f, dtype=np.float32) for f in frames]  # N x [H, W, C]
    if len(stack) < 2:
        raise SequenceTooShortError(f"retime needs at least two frames, got {len(stack)}")
    last = first + len(stack) - 1
    outside = [s for _, s in frame_map if not first - _EPS <= s <= last + _EPS]
    if outside:
        raise UsageError(f"`frame_map` reaches source time {outside[0]:g}, outside frames {first}-{last}",
                         param="frame_map")
    if isinstance(cuts, str):
        if cuts not in ("auto", "none"):
            raise UsageError(f"`cuts` must be 'auto', 'none' or frame numbers, got {cuts!r}", param="cuts")
        fixed_cuts = None if cuts == "auto" else set()
    else:
        fixed_cuts = {int(n) for n in cuts}
    plan = make_plan(frame_map, shutter_spans(frame_map, shutter), shutter_samples, first, last)
    h, w = stack[0].shape[:2]
    sources = FrameSources(read=lambda f: stack[f - first], colorspace=colorspace, last_use=plan.last_use,
                           interval_use=plan.interval_use)
    stream = None
    if method == "motion" and plan.interval_use:
        if forward is not None and backward is not None:
            fwd, bwd = _as_array(forward), _as_array(backward)
            cf, cb = _as_array(confidence_forward), _as_array(confidence_backward)
            if fwd.shape != (len(stack) - 1, h, w, 2) or bwd.shape != fwd.shape:
                raise UsageError(f"`forward`/`backward` must be [{len(stack) - 1}, {h}, {w}, 2], got "
                                 f"{fwd.shape} and {bwd.shape}", param=("forward", "backward"))

            def from_arrays(n: int) -> FlowQuad:
                i = n - first
                return (fwd[i], bwd[i], None if cf is None else cf[i], None if cb is None else cb[i])

            sources.flow_lookup = from_arrays
        else:
            if engine is None:
                from daflow_vfx.engine import FlowEngine

                engine = FlowEngine(model, device=device)
            wanted = sorted({f for n in plan.interval_use for f in (n, n + 1)})
            stream = engine.flows(sources.display, wanted, first=first, last=last)
            sources.flow_stream = stream
    records: list[RetimeFrame] = []
    try:
        images = [image for _, image in render_frames(
            frame_map, plan, sources, method=method, splat=splat, fixed_cuts=fixed_cuts, records=records,
            progress=None)]
    finally:
        if stream is not None:
            stream.close()
    found = sorted(fixed_cuts) if fixed_cuts is not None else sorted(
        n for n, c in sources.cut_checks.items() if c.cut)
    return Retimed(images=images, frames=records, cuts=found)


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _as_array(x: Any) -> Any:
    if x is None:
        return None
    if _is_tensor(x):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def render_frames(frame_map: FrameMap, plan: RetimePlan, sources: FrameSources, *, method: str, splat: str,
                  fixed_cuts: set[int] | None, records: list[RetimeFrame],
                  progress: Callable[[int, int], None] | None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (output frame, image in the plate's colour space) in output order; append to ``records``."""
    from daflow_vfx.vfx.synthesis import interpolate_detailed

    def is_cut(n: int) -> bool:
        if fixed_cuts is not None:
            return n in fixed_cuts
        if method == "nearest":
            return False  # nearest never mixes two frames: nothing to protect
        check = sources.cut_checks.get(n)
        if check is None:
            if method == "motion":
                f01, f10, _, _ = sources.flows(n)
                check = detect_cut(sources.display(n), sources.display(n + 1), f01, f10)
            else:
                check = detect_cut(sources.display(n), sources.display(n + 1))
            sources.cut_checks[n] = check
            if check.cut:
                log.info("scene cut between frames %d and %d (histogram %.2f, residual %s)", n, n + 1,
                         check.histogram, "-" if check.residual is None else f"{check.residual:.3f}")
        return check.cut

    total = len(frame_map)
    if progress is not None:
        progress(0, total)
    for i, ((frame, source), samples) in enumerate(zip(frame_map, plan.samples, strict=True)):
        sources.release(i)
        center = _split(source)
        side = center[0] + (1 if center[1] >= 0.5 else 0)  # the frame a cut interval snaps to
        acc: np.ndarray | None = None
        methods: list[str] = []
        used: set[int] = set()
        cut_seen = False
        for n, t in samples:
            if t == 0.0:
                image, used_method = sources.raw(n), "source"
                used.add(n)
            elif is_cut(n):
                cut_seen = True
                # snap to the centre's side of the cut, so shutter samples never mix two shots
                pick = side if n <= side <= n + 1 else (n if t < 0.5 else n + 1)
                image, used_method = sources.raw(pick), "cut-nearest"
                used.add(pick)
            else:
                f01 = f10 = c0 = c1 = None
                if method == "motion":
                    f01, f10, c0, c1 = sources.flows(n)
                result = interpolate_detailed(
                    sources.raw(n), sources.raw(n + 1), f01, f10, t, conf0=c0, conf1=c1, method=method,
                    splat=splat, guide0=sources.display(n), guide1=sources.display(n + 1))
                image, used_method = result.image, result.method
                if used_method == "nearest":
                    used.add(n if t < 0.5 else n + 1)
                else:
                    used.update((n, n + 1))
            methods.append(used_method)
            acc = image.astype(np.float32, copy=True) if acc is None else acc + image
        assert acc is not None
        image = acc / len(samples)
        # the method the frame is known by: the centre sample's (the middle one with a shutter)
        named = methods[len(methods) // 2] if len(methods) % 2 else _dominant(methods)
        records.append(RetimeFrame(frame=frame, source=source, method=named, cut=cut_seen,
                                   sources=tuple(sorted(used)), samples=len(samples)))
        yield frame, image
        if progress is not None:
            progress(i + 1, total)


def _dominant(methods: list[str]) -> str:
    """The synthesis method among the samples' methods (motion beats source when both appear)."""
    for name in ("motion", "blend-fallback", "blend", "cut-nearest", "nearest", "source"):
        if name in methods:
            return name
    return methods[0]
