"""Retime and slow motion: timing modes, scene cuts, and the `daflow-vfx retime` job.

Timing maps output frames to fractional *source times* (plate frame numbers, 1001.25 is a quarter of
the way from 1001 to 1002). Three modes, as Kronos and Twixtor users know them:

``--speed S`` (:func:`speed_map`)
    Output frame ``first + k`` shows source time ``first + phase + k * S``; 0.25 is 4x slow motion, 2 is
    double speed. **Phase (no pulsing).** Write S as a fraction p/q in lowest terms. The outputs then
    cycle through the q fractional positions ``phase + j/q`` between source frames. With phase 0 one
    output in q lands exactly on a source frame: a pristine frame among synthesised ones, which shows
    as a rhythmic pulse in sharpness and grain (the classic half-speed pulse: 0, .5, 0, .5 ...). So for
    q > 1 the phase is half a lattice step, ``1 / (2q)``: the positions become ``(2j + 1) / (2q)``,
    symmetric about the midpoint, none on a source frame, each at the same distance pattern, so every
    output is synthesised alike (0.5 -> .25, .75, .25, ...; 0.25 -> .125, .375, .625, .875; 1.5 -> .25,
    .75). Integer speeds (q = 1) keep phase 0: every output *is* a source frame and nothing is
    synthesised. ``phase=`` overrides this. The fraction is found with denominators up to 1000, so
    type speeds exactly (1/3 as 0.3333333 lands on q = 3).
``--fps SRC:DST`` (:func:`fps_map`)
    Frame-rate conversion: output frame ``first + k`` shows source time ``first + k * SRC / DST`` (the
    first frames line up, as in an edit). Rates may be ``24``, ``23.976`` or ``24000/1001``.
``--curve curve.yaml`` (:func:`load_curve`, :func:`curve_map`)
    Nuke's "Frame" timing mode: keys map output frames to source frames, joined linearly or smoothly
    (monotone cubic, Fritsch-Carlson, which never overshoots its keys, so a curve whose keys lie on the
    plate never leaves it). Output frames are the whole frames between the first and last key, numbered
    as keyed. A curve reaching outside the plate is a :class:`~daflow_vfx.errors.ConfigError`.

Speed and fps outputs are numbered from the plate's first frame. No mode ever extrapolates: the map
stops at the last source frame.

Scene cuts (:func:`detect_cut`): an interval whose colour histograms jump, or whose flow fails to
explain one frame from the other (large warped residual and few forward-backward consistent
pixels), is a cut; a time inside it takes the nearest frame instead of mixing two shots (and motion
blur samples stay on the centre's side of it).

Two entry points share one frame loop: :func:`retime` on frames in memory (arrays or tensors, flows
given or computed) and :func:`run_retime` on a :class:`RetimeJob` (plate in, files out; the CLI).
The job streams: flows come from the engine (or rendered EXRs, ``--vectors``) in frame order and
every frame and flow is dropped after the last output frame that needs it, so memory stays a few
frames deep for speed and fps maps (a curve that jumps back keeps what it will need again).
Motion blur (``--shutter``) averages ``--shutter-samples`` synthesised sub-frames spread over the
shutter-open fraction of the output frame's own source-time step (S for speed, SRC/DST for fps, the
curve's local slope), so the blur matches the new speed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from daflow_vfx.errors import (
    ConfigError,
    InputError,
    MissingFramesError,
    MissingInputError,
    UsageError,
)

log = logging.getLogger(__name__)

__all__ = [
    "CutCheck",
    "RetimeFrame",
    "RetimeJob",
    "RetimeReport",
    "TimeCurve",
    "curve_map",
    "detect_cut",
    "fps_map",
    "load_curve",
    "parse_rate",
    "Retimed",
    "retime",
    "retime_frames",
    "run_retime",
    "sidecar_path",
    "speed_map",
    "speed_phase",
]

FrameMap = list[tuple[int, float]]  # (output frame number, source time)

_MAX_DENOMINATOR = 1000
_EPS = 1e-9
IMAGE_EXTENSIONS: tuple[str, ...] = (".exr", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".dpx")


# --------------------------------------------------------------------------------------------------
# timing


def _exact(value: float | int | str | Fraction, what: str) -> Fraction:
    """A user number as an exact fraction (float noise removed: 0.1 -> 1/10)."""
    try:
        frac = Fraction(str(value).strip()) if isinstance(value, str) else Fraction(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise UsageError(f"{what} {value!r} is not a number") from None
    return frac.limit_denominator(10**6)


def speed_phase(speed: float | Fraction) -> float:
    """The automatic phase of :func:`speed_map`: 0 for integer speeds, else ``1 / (2q)`` for S = p/q."""
    frac = _exact(speed, "--speed").limit_denominator(_MAX_DENOMINATOR)
    q = frac.denominator
    return 0.0 if q == 1 else 1.0 / (2 * q)


def _uniform_map(first: int, last: int, start: Fraction, step: Fraction) -> FrameMap:
    if step <= 0:
        raise UsageError(f"the time step must be positive, got {float(step)}")
    span = Fraction(last - first) - start
    if span < 0:
        return []
    count = math.floor(span / step) + 1  # exact: no float drift at the last frame
    return [(first + k, float(first + start + k * step)) for k in range(count)]


def speed_map(first: int, last: int, speed: float | Fraction, *, phase: float | None = None) -> FrameMap:
    """``--speed``: [(first + k, first + phase + k * speed)] up to source frame ``last``.

    ``phase`` None picks :func:`speed_phase`; see the module docstring for why.
    """
    step = _exact(speed, "--speed")
    if step <= 0:
        raise UsageError(f"--speed must be positive, got {speed}; use a curve for reverse playback")
    start = _exact(speed_phase(step) if phase is None else phase, "--phase")
    if not 0 <= start < 1:
        raise UsageError(f"--phase must be in [0, 1), got {phase}")
    return _uniform_map(first, last, start, step)


def parse_rate(text: str) -> tuple[Fraction, Fraction]:
    """``"24:60"`` -> (24, 60); each side may be ``23.976`` or ``24000/1001``. UsageError when odd."""
    parts = str(text).split(":")
    if len(parts) != 2:
        raise UsageError(f"--fps {text!r} must be SOURCE:TARGET, e.g. 24:60 or 24000/1001:60")
    src = _exact(parts[0], "--fps source rate")
    dst = _exact(parts[1], "--fps target rate")
    if src <= 0 or dst <= 0:
        raise UsageError(f"--fps {text!r}: both rates must be positive")
    return src, dst


def fps_map(first: int, last: int, rate: str | tuple[Any, Any]) -> FrameMap:
    """``--fps SRC:DST``: [(first + k, first + k * SRC / DST)] up to source frame ``last``."""
    if isinstance(rate, str):
        src, dst = parse_rate(rate)
    else:
        src, dst = _exact(rate[0], "rate"), _exact(rate[1], "rate")
    return _uniform_map(first, last, Fraction(0), src / dst)


@dataclass(frozen=True, kw_only=True)
class TimeCurve:
    """Output frame -> source frame keys and how to join them (``linear`` or ``smooth``)."""

    keys: tuple[tuple[float, float], ...]  # (output frame, source frame), sorted by output frame
    interpolation: str = "smooth"
    path: str = "<curve>"

    def __post_init__(self) -> None:
        if self.interpolation not in ("linear", "smooth"):
            raise ConfigError(f"{self.path}: interpolation {self.interpolation!r} is unknown; use linear "
                              "or smooth")
        if not self.keys:
            raise ConfigError(f"{self.path}: the curve has no keys; add output_frame: source_frame pairs")
        xs = [k[0] for k in self.keys]
        if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
            raise ConfigError(f"{self.path}: key output frames must be distinct and sorted")

    def slopes(self) -> np.ndarray:
        """Key tangents [K]: Fritsch-Carlson monotone cubic (PCHIP) for smooth, unused for linear."""
        x = np.array([k[0] for k in self.keys], np.float64)
        y = np.array([k[1] for k in self.keys], np.float64)
        n = len(x)
        if n < 2:
            return np.zeros(n)
        h = np.diff(x)
        delta = np.diff(y) / h
        d = np.zeros(n)
        if n == 2:
            d[:] = delta[0]
            return d
        for k in range(1, n - 1):  # over keys, not pixels: a handful of iterations
            if delta[k - 1] * delta[k] > 0:
                w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
                d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

        def end(h0: float, h1: float, d0: float, d1: float) -> float:
            slope = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
            if np.sign(slope) != np.sign(d0):
                return 0.0
            if np.sign(d0) != np.sign(d1) and abs(slope) > abs(3 * d0):
                return 3 * d0
            return float(slope)

        d[0] = end(h[0], h[1], delta[0], delta[1])
        d[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
        return d

    def __call__(self, frame: float) -> float:
        """The source frame at output frame ``frame`` (held at the end keys outside their range)."""
        xs = [k[0] for k in self.keys]
        if frame <= xs[0]:
            return float(self.keys[0][1])
        if frame >= xs[-1]:
            return float(self.keys[-1][1])
        i = int(np.searchsorted(xs, frame, side="right")) - 1
        (x0, y0), (x1, y1) = self.keys[i], self.keys[i + 1]
        h = x1 - x0
        s = (frame - x0) / h
        if self.interpolation == "linear":
            return float(y0 + s * (y1 - y0))
        d = self.slopes()
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        return float(h00 * y0 + h10 * h * d[i] + h01 * y1 + h11 * h * d[i + 1])


def _number(value: Any, path: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{path}: {what} {value!r} is not a finite number; fix the curve")
    return float(value)


def load_curve(path: str | os.PathLike) -> TimeCurve:
    """Read a retime curve::

        interpolation: smooth      # or linear (default smooth)
        keys:                      # output frame: source frame
          1001: 1001
          1024: 1006.5
          1048: 1012

    ``keys`` may also be a list of ``[output, source]`` pairs. ConfigError for anything else.
    """
    import yaml

    text = os.fspath(path)
    try:
        with open(text, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise MissingInputError(f"{text}: no such curve file; check the --curve path") from None
    except OSError as exc:
        raise ConfigError(f"{text}: cannot read the curve ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{text}: not valid YAML{line}; fix the curve") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{text}: a curve is a mapping with 'keys' (output frame: source frame) and an "
                          "optional 'interpolation'")
    unknown = sorted(str(k) for k in data if k not in ("keys", "interpolation"))
    if unknown:
        raise ConfigError(f"{text}: unknown key(s) {', '.join(unknown)}; a curve has keys and interpolation")
    raw = data.get("keys")
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in raw):
        pairs = [tuple(p) for p in raw]
    else:
        raise ConfigError(f"{text}: 'keys' must map output frames to source frames, e.g. {{1001: 1001, "
                          "1048: 1012}}")
    keys = sorted((_number(o, text, "output frame"), _number(s, text, "source frame")) for o, s in pairs)
    interpolation = str(data.get("interpolation", "smooth")).strip().lower()
    return TimeCurve(keys=tuple(keys), interpolation=interpolation, path=text)


def curve_map(curve: TimeCurve, first: int, last: int) -> FrameMap:
    """``--curve``: every whole output frame between the first and last key -> its source time.

    ConfigError (naming the curve file and frame) when a source time falls outside ``first..last``.
    """
    start = math.ceil(curve.keys[0][0] - _EPS)
    stop = math.floor(curve.keys[-1][0] + _EPS)
    if stop < start:
        raise ConfigError(f"{curve.path}: the keys span no whole output frame; key at least one integer "
                          "frame")
    out: FrameMap = []
    for frame in range(start, stop + 1):
        source = curve(frame)
        if source < first - _EPS or source > last + _EPS:
            raise ConfigError(f"{curve.path}: output frame {frame} maps to source frame {source:g}, outside "
                              f"the plate's frames {first}-{last}; keep the curve's source frames on the "
                              "plate")
        out.append((frame, min(max(source, float(first)), float(last))))
    return out


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
# the job


@dataclass(frozen=True, kw_only=True)
class RetimeJob:
    """Everything `daflow-vfx retime` needs; exactly one of ``speed``, ``fps``, ``curve``."""

    input: str
    output: str  # image pattern with a frame token (.exr/.png/.tif/...) or a video file (.mp4/.mov/...)
    speed: float | None = None
    fps: str | None = None  # "SRC:DST"
    curve: str | None = None  # YAML file, see load_curve
    phase: float | None = None  # speed mode only; None = automatic (speed_phase)
    method: str = "motion"  # motion | blend | nearest
    splat: str = "softmax"  # softmax | average
    shutter: float = 0.0  # motion blur: open fraction of the output frame interval (0.5 = 180 degrees)
    shutter_samples: int = 8
    cuts: str = "auto"  # auto | none | frame spec of the first frames of new shots
    vectors: str | None = None  # rendered motion-vector EXR pattern to reuse instead of computing flow
    model: str = "default"
    device: str = "auto"
    dtype: str = "float32"
    frames: str | None = None  # output frames to write (Deadline spec); None = all
    input_colorspace: str = "auto"
    layer: str | None = None
    start_frame: int = 1
    half: bool = True
    compression: str = "zip"
    tile: int | None = None
    tile_pad: int = 32
    weights: str | None = None
    iters: int | None = None


@dataclass(kw_only=True)
class RetimeFrame:
    """One output frame of the map, as the JSON sidecar records it."""

    frame: int
    source: float
    method: str = ""  # source | motion | blend | nearest | blend-fallback | cut-nearest
    cut: bool = False  # the interval around the source time is a scene cut
    sources: tuple[int, ...] = ()  # plate frames it was made from
    samples: int = 1  # sub-frame samples averaged (motion blur)


@dataclass(kw_only=True)
class RetimeReport:
    output: str
    sidecar: str
    mode: str  # speed | fps | curve
    frames: list[RetimeFrame] = field(default_factory=list)  # the frames written, in output order
    cuts: list[int] = field(default_factory=list)  # n: a cut between plate frames n and n + 1
    estimator: str = ""
    device: str = ""
    colorspace: str = ""
    seconds: float = 0.0


def sidecar_path(output: str) -> str:
    """``out/sh010.####.exr`` -> ``out/sh010.retime.json``; ``out/sh010.mp4`` -> ``out/sh010.retime.json``."""
    from daflow_vfx.frames import SequencePattern

    pattern = SequencePattern.parse(output)
    base = pattern.prefix if pattern is not None else os.path.splitext(output)[0]
    folder, name = os.path.split(base)
    name = name.rstrip("._- ")
    return os.path.join(folder, f"{name or 'retime'}.retime.json")


def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def retime_frames(job: RetimeJob, first: int, last: int) -> tuple[str, FrameMap]:
    """The timing mode and full frame map of ``job`` on a plate spanning ``first..last``."""
    given = [name for name in ("speed", "fps", "curve") if getattr(job, name) is not None]
    if len(given) != 1:
        if not given:
            raise UsageError("give one timing mode: --speed S, --fps SRC:DST or --curve curve.yaml")
        raise UsageError(f"give one timing mode, not {' and '.join('--' + g for g in given)}")
    mode = given[0]
    if job.phase is not None and mode != "speed":
        raise UsageError("--phase applies to --speed only")
    if mode == "speed":
        frame_map = speed_map(first, last, job.speed, phase=job.phase)  # type: ignore[arg-type]
    elif mode == "fps":
        frame_map = fps_map(first, last, str(job.fps))
    else:
        frame_map = curve_map(load_curve(str(job.curve)), first, last)
    if not frame_map:
        raise UsageError(f"{job.input}: the timing gives no output frame on frames {first}-{last}")
    return mode, frame_map


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


class _Sources:
    """Plate frames (raw and display), flows and cut checks, loaded on demand and dropped after last use.

    ``read(frame)`` gives the raw frame [H, W, C]. Flows come from one of: ``flow_stream`` (the engine's
    ascending :class:`FrameFlows`), ``vectors`` (a rendered EXR pattern) or ``flow_arrays`` (in memory).
    The engine's prefetch thread and the main thread share one plate reader (a video decoder is not
    thread-safe), so reads go through a lock, and frames the engine reads that retime needs later are
    kept rather than read twice.
    """

    def __init__(self, *, read: Callable[[int], np.ndarray], colorspace: str, last_use: dict[int, int],
                 interval_use: dict[int, int], size: tuple[int, int], label: str) -> None:
        self.read, self.colorspace = read, colorspace
        self.size, self.label = size, label  # (H, W) and the plate's name for messages
        self.last_use, self.interval_use = last_use, interval_use
        self.index = 0
        self._lock = threading.Lock()
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # frame -> (raw, display)
        self._flows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]] = {}
        self.cut_checks: dict[int, CutCheck] = {}
        self.bad_pixels = 0
        self.flow_stream: Iterator[Any] | None = None  # FrameFlows from the engine, ascending frames
        self.vectors: Any = None  # SequencePattern of rendered vectors
        self.flow_arrays: Callable[[int], FlowQuad] | None = None  # in-memory flows of interval n
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
        if n in self._flows:
            return self._flows[n]
        if self.flow_arrays is not None:
            return self.flow_arrays(n)
        if self.vectors is not None:
            self._read_vectors(n)
        else:
            self._pull_engine(n)
        return self._flows[n]

    def _read_vectors(self, n: int) -> None:
        from daflow_vfx.vfx.flows import read_vector_flows

        got = read_vector_flows(str(self.vectors), [n, n + 1], size=self.size)
        a, b = got[n], got[n + 1]
        for frame, flow, what in ((n, a.forward, "forward"), (n + 1, b.backward, "backward")):
            if flow is None:
                raise InputError(f"{self.vectors.path(frame)}: has no {what} vectors (its header marks it an "
                                 f"end frame of another plate); render vectors from {self.label}")
        assert a.forward is not None and b.backward is not None
        # a rendered pass holds the forward flow's confidence only
        self._flows[n] = (a.forward, b.backward, a.confidence_forward, None)

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


def _parse_cuts(spec: str, first: int, last: int) -> set[int] | None:
    """``auto`` -> None (detect); ``none`` -> empty; a frame spec of new-shot frames -> intervals n."""
    from daflow_vfx.frames import parse_frame_spec

    key = spec.strip().lower()
    if key == "auto":
        return None
    if key == "none":
        return set()
    starts = parse_frame_spec(spec)
    outside = [f for f in starts if not first < f <= last]
    if outside:
        raise UsageError(f"--cuts {spec!r}: frames {outside[:5]} are not inside the plate "
                         f"({first + 1}-{last}); name the first frame of each new shot")
    return {f - 1 for f in starts}


def _check_vectors(pattern: Any, frames: Sequence[int], info: Any) -> None:
    """Every needed vector file exists and matches the plate's size, before anything is computed."""
    from daflow_vfx.io.sequence import read_image_header

    missing = [f for f in frames if not os.path.isfile(pattern.path(f))]
    if missing:
        from daflow_vfx.frames import format_frame_spec

        raise MissingFramesError(f"{pattern}: vectors for frames {format_frame_spec(missing)} are missing; "
                                 "render them with `daflow-vfx render` over the same plate", missing=missing)
    for f in frames:
        header = read_image_header(pattern.path(f))
        if (header.width, header.height) != (info.width, info.height):
            raise InputError(f"{pattern.path(f)}: vectors are {header.width}x{header.height} but the plate "
                             f"is {info.width}x{info.height}; render vectors from this plate")


@dataclass(frozen=True)
class _Plan:
    """Sample times of every output frame, and the last output index that needs each frame / interval."""

    samples: list[list[tuple[int, float]]]  # per output frame: (plate frame n, t in [0, 1)) per sample
    last_use: dict[int, int]  # plate frame -> last output index reading it
    interval_use: dict[int, int]  # n (interval n -> n + 1) -> last output index interpolating in it


def _make_plan(frame_map: FrameMap, spans: Sequence[float], shutter_samples: int, first: int,
               last: int) -> _Plan:
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
    return _Plan(samples=samples, last_use=last_use, interval_use=interval_use)


def _shutter_spans(frame_map: FrameMap, shutter: float) -> list[float]:
    """Source time the shutter stays open for each output frame: ``shutter`` x the local frame step."""
    return [shutter * _frame_step(frame_map, i) for i in range(len(frame_map))]


def _check_options(method: str, splat: str, shutter: float, shutter_samples: int) -> None:
    from daflow_vfx.vfx.synthesis import METHODS, SPLATS

    _check_choice(method, METHODS, "method")
    _check_choice(splat, SPLATS, "splat")
    if not 0.0 <= shutter <= 1.0:
        raise UsageError(f"--shutter must be between 0 and 1 (fraction of the output frame), got {shutter}")
    if shutter_samples < 1:
        raise UsageError(f"--shutter-samples must be at least 1, got {shutter_samples}")


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
           device: str = "cpu") -> Retimed:
    """Retime frames held in memory: the array form of `daflow-vfx retime`.

    ``frames``: [N, H, W, C] (array, list of arrays or torch tensor), plate frames ``first .. first+N-1``
    in their own colour space (``colorspace``: how to show them to the flow estimator and the
    brightness-constancy term; pixels are blended as given). ``frame_map``: from :func:`speed_map`,
    :func:`fps_map` or :func:`curve_map` over ``first .. first+N-1``.
    ``forward``/``backward``: [N-1, H, W, 2] flows i -> i+1 and i+1 -> i (``.flo`` convention), optional
    confidences [N-1, H, W]; without them, and with ``method="motion"``, flows are computed with
    ``model`` on ``device``. ``cuts``: ``"auto"`` (detect), ``"none"``, or the n of each cut between n
    and n + 1. ``shutter``: motion blur, open fraction of the output frame interval.

    NumPy on the CPU (tensors are converted); returns :class:`Retimed`.
    """
    _check_options(method, splat, shutter, shutter_samples)
    if _is_tensor(frames):
        frames = frames.detach().float().cpu().numpy()
    stack = [np.asarray(f, dtype=np.float32) for f in frames]  # N x [H, W, C]
    if len(stack) < 2:
        raise ValueError(f"retime needs at least two frames, got {len(stack)}")
    last = first + len(stack) - 1
    outside = [s for _, s in frame_map if not first - _EPS <= s <= last + _EPS]
    if outside:
        raise ValueError(f"frame_map reaches source time {outside[0]:g}, outside frames {first}-{last}")
    if isinstance(cuts, str):
        if cuts not in ("auto", "none"):
            raise ValueError(f"cuts must be 'auto', 'none' or frame numbers, got {cuts!r}")
        fixed_cuts = None if cuts == "auto" else set()
    else:
        fixed_cuts = {int(n) for n in cuts}
    plan = _make_plan(frame_map, _shutter_spans(frame_map, shutter), shutter_samples, first, last)
    h, w = stack[0].shape[:2]
    sources = _Sources(read=lambda f: stack[f - first], colorspace=colorspace, last_use=plan.last_use,
                       interval_use=plan.interval_use, size=(h, w), label="the frames given")
    stream = None
    if method == "motion" and plan.interval_use:
        if forward is not None and backward is not None:
            fwd, bwd = _as_array(forward), _as_array(backward)
            cf, cb = _as_array(confidence_forward), _as_array(confidence_backward)
            if fwd.shape != (len(stack) - 1, h, w, 2) or bwd.shape != fwd.shape:
                raise ValueError(f"forward/backward must be [{len(stack) - 1}, {h}, {w}, 2], got "
                                 f"{fwd.shape} and {bwd.shape}")

            def from_arrays(n: int) -> FlowQuad:
                i = n - first
                return (fwd[i], bwd[i], None if cf is None else cf[i], None if cb is None else cb[i])

            sources.flow_arrays = from_arrays
        else:
            from daflow_vfx.engine import FlowEngine

            wanted = sorted({f for n in plan.interval_use for f in (n, n + 1)})
            stream = FlowEngine(model, device=device).flows(sources.display, wanted, first=first, last=last)
            sources.flow_stream = stream
    records: list[RetimeFrame] = []
    try:
        images = [image for _, image in _render_frames(
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


def run_retime(job: RetimeJob, *, progress: Callable[[int, int], None] | None = None) -> RetimeReport:
    """Retime a plate to files: the whole of `daflow-vfx retime`. See the module docstring for the timing.

    Everything that can be refused (options, plate, timing, curve range, vectors, output folder) is
    checked before any flow is computed or any frame written. Every file is written atomically; the
    JSON sidecar comes last, after every frame.
    """
    from daflow_vfx.color import COLORSPACES, resolve_colorspace
    from daflow_vfx.engine import check_dtype, device_for_model
    from daflow_vfx.frames import SequencePattern, format_frame_spec, parse_frame_spec
    from daflow_vfx.io import VIDEO_EXTENSIONS, open_plate, prepare_output_folder

    started = time.perf_counter()
    _check_options(job.method, job.splat, job.shutter, job.shutter_samples)
    _check_choice(job.input_colorspace, COLORSPACES, "input colour space")
    check_dtype(job.dtype)
    ext = os.path.splitext(job.output)[1].lower()
    is_video = ext in VIDEO_EXTENSIONS
    pattern = None if is_video else SequencePattern.parse(job.output)
    if not is_video:
        if pattern is None:
            raise UsageError(f"output {job.output!r} has no frame token; use a pattern such as "
                             "out/sh010.####.exr, or a video file name (.mp4, .mov)")
        if ext not in IMAGE_EXTENSIONS:
            raise UsageError(f"output {job.output!r}: unsupported extension {ext!r}; use .exr, .png, .tif, "
                             ".jpg, .dpx or a video (.mp4, .mov)")
    elif job.frames is not None:
        raise UsageError("--frames splits image-sequence outputs across a farm; a video is written whole")
    vectors = None
    if job.vectors is not None:
        vectors = SequencePattern.parse(job.vectors)
        if vectors is None:
            raise UsageError(f"--vectors {job.vectors!r} needs a frame pattern such as "
                             "vectors/sh010.####.exr")

    with open_plate(job.input, layer=job.layer, start_frame=job.start_frame) as plate:
        info = plate.info
        first, last = info.require_span(needs="retiming")
        mode, frame_map = retime_frames(job, first, last)
        spans = _shutter_spans(frame_map, job.shutter)  # from the whole map: a chunk blurs like the whole
        if job.frames is not None:
            wanted = set(parse_frame_spec(job.frames))
            known = {f for f, _ in frame_map}
            outside = sorted(wanted - known)
            if outside:
                raise UsageError(f"--frames {job.frames}: output frames {format_frame_spec(outside)} are not "
                                 f"in the retime's output range {format_frame_spec(sorted(known))}")
            keep = [i for i, (f, _) in enumerate(frame_map) if f in wanted]
            frame_map, spans = [frame_map[i] for i in keep], [spans[i] for i in keep]
        fixed_cuts = _parse_cuts(job.cuts, first, last)
        colorspace = resolve_colorspace(job.input_colorspace, info)
        plan = _make_plan(frame_map, spans, job.shutter_samples, first, last)
        needs_flow = job.method == "motion" and bool(plan.interval_use)
        flow_frames = sorted({f for n in plan.interval_use for f in (n, n + 1)}) if needs_flow else []
        if needs_flow and vectors is not None:
            _check_vectors(vectors, flow_frames, info)

        sidecar = sidecar_path(job.output)
        prepare_output_folder(os.path.dirname(job.output))
        prepare_output_folder(os.path.dirname(sidecar))

        report = RetimeReport(output=job.output, sidecar=sidecar, mode=mode, colorspace=colorspace)
        sources = _Sources(read=plate.read, colorspace=colorspace, last_use=plan.last_use,
                           interval_use=plan.interval_use, size=(info.height, info.width), label=job.input)
        stream = None
        if needs_flow and vectors is None:
            from daflow_vfx.engine import FlowEngine
            from daflow_vfx.estimators import load_estimator

            device = device_for_model(job.model, job.device)
            estimator = load_estimator(job.model, device=device, dtype=job.dtype, weights=job.weights,
                                       iters=job.iters)
            engine = FlowEngine(estimator, device=device, dtype=job.dtype, tile=job.tile,
                                tile_pad=job.tile_pad)
            report.estimator, report.device = f"{estimator.name} {estimator.version}", device
            stream = engine.flows(sources.display, flow_frames, first=first, last=last)
            sources.flow_stream = stream
        elif needs_flow:
            sources.vectors = vectors
            report.estimator = f"vectors {job.vectors}"

        try:
            frames_out = _render_frames(frame_map, plan, sources, method=job.method, splat=job.splat,
                                        fixed_cuts=fixed_cuts, records=report.frames, progress=progress)
            if is_video:
                from daflow_vfx.io import write_video

                fps = _video_fps(mode, job, info)
                write_video(job.output, (_to_video(img, colorspace) for img in frames_out), fps=fps)
            else:
                _write_sequence(job, pattern, frames_out, colorspace)
        finally:
            if stream is not None:
                stream.close()  # stops the engine's prefetch thread
        if sources.bad_pixels:
            log.warning("%s: sanitised %d NaN/Inf/negative pixel(s) in the frames read", job.input,
                        sources.bad_pixels)
        if fixed_cuts is None:
            report.cuts = sorted(n for n, c in sources.cut_checks.items() if c.cut)
        else:
            report.cuts = sorted(fixed_cuts)

    _write_sidecar(job, report, frame_map if job.frames is None else None, first, last, mode)
    report.seconds = time.perf_counter() - started
    return report


def _render_frames(frame_map: FrameMap, plan: _Plan, sources: _Sources, *, method: str, splat: str,
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


def _write_sequence(job: RetimeJob, pattern: Any, frames_out: Iterator[tuple[int, np.ndarray]],
                    colorspace: str) -> None:
    import functools

    from daflow_vfx.io import BackgroundWriter, write_image

    ext = os.path.splitext(job.output)[1].lower()
    writer = BackgroundWriter(depth=4)
    try:
        for frame, image in frames_out:
            data = image if ext == ".exr" else _to_integer_file(image, colorspace)
            writer.submit(functools.partial(write_image, pattern.path(frame), data, half=job.half,
                                            compression=job.compression))
    except BaseException:
        try:
            writer.close()
        except Exception as exc:  # the first error is the one to report
            log.debug("writer error after an earlier failure: %s", exc)
        raise
    writer.close()


def _to_integer_file(image: np.ndarray, colorspace: str) -> np.ndarray:
    """Integer files hold display or log code values: scene-linear goes through the display transform."""
    if colorspace == "linear":
        from daflow_vfx.color import to_display

        return to_display(image, colorspace)
    return image


def _to_video(item: tuple[int, np.ndarray], colorspace: str) -> np.ndarray:
    from daflow_vfx.color import to_display

    return to_display(item[1], colorspace)  # video is display-referred


def _video_fps(mode: str, job: RetimeJob, info: Any) -> float:
    if mode == "fps":
        _, dst = parse_rate(str(job.fps))
        return float(dst)
    return float(info.fps) if info.fps else 24.0


def _write_sidecar(job: RetimeJob, report: RetimeReport, full_map: FrameMap | None, first: int, last: int,
                   mode: str) -> None:
    from daflow_vfx.io._atomic import atomic_path

    payload: dict[str, Any] = {
        "version": 1,
        "input": os.path.abspath(job.input),
        "output": job.output,
        "plate": {"first": first, "last": last},
        "mode": mode,
        "speed": job.speed,
        "phase": (speed_phase(job.speed) if job.phase is None else job.phase) if mode == "speed" else None,
        "fps": job.fps,
        "curve": job.curve,
        "method": job.method,
        "splat": job.splat if job.method == "motion" else None,
        "shutter": job.shutter,
        "flows": report.estimator or None,
        "colorspace": report.colorspace,
        "cuts": [[n, n + 1] for n in report.cuts],
        "frames": [
            {"frame": f.frame, "source": round(f.source, 9), "method": f.method, "cut": f.cut,
             "sources": list(f.sources), **({"samples": f.samples} if f.samples > 1 else {})}
            for f in report.frames
        ],
    }
    if full_map is None:
        payload["note"] = "partial render (--frames): 'frames' lists this chunk only"
    frames = payload.pop("frames")
    # one line per output frame: readable in a text editor and diff-friendly for long shots
    body = json.dumps(payload, indent=1)[:-2]
    rows = ",\n  ".join(json.dumps(f) for f in frames)
    text = f'{body},\n "frames": [\n  {rows}\n ]\n}}\n' if frames else f'{body},\n "frames": []\n}}\n'
    with atomic_path(report.sidecar) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
