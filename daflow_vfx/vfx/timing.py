"""Retime timing: which source time each output frame shows (speed, fps conversion, timing curves).

Timing maps output frames to fractional *source times* (plate frame numbers, 1001.25 is a quarter of
the way from 1001 to 1002). Three modes, as Kronos and Twixtor users know them:

``speed`` S (:func:`speed_map`)
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
``fps`` SRC:DST (:func:`fps_map`)
    Frame-rate conversion: output frame ``first + k`` shows source time ``first + k * SRC / DST`` (the
    first frames line up, as in an edit). Rates may be ``24``, ``23.976`` or ``24000/1001``.
``curve`` curve.yaml (:func:`load_curve`, :func:`curve_map`)
    Nuke's "Frame" timing mode: keys map output frames to source frames, joined linearly or smoothly
    (monotone cubic, Fritsch-Carlson, which never overshoots its keys, so a curve whose keys lie on the
    plate never leaves it). Output frames are the whole frames between the first and last key, numbered
    as keyed. A curve reaching outside the plate is a :class:`~daflow_vfx.errors.ConfigError`.

Speed and fps outputs are numbered from the plate's first frame. No mode ever extrapolates: the map
stops at the last source frame. What is drawn at each source time is :mod:`daflow_vfx.vfx.retiming`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from daflow_vfx.errors import ConfigError, UsageError

__all__ = [
    "FrameMap",
    "TimeCurve",
    "curve_map",
    "fps_map",
    "load_curve",
    "parse_rate",
    "speed_map",
    "speed_phase",
]

FrameMap = list[tuple[int, float]]  # (output frame number, source time)

_MAX_DENOMINATOR = 1000
_EPS = 1e-9
# At most this many output frames per plate frame from `speed` or `fps`: slower than 100x is a typo
# (0.0001 for 0.1) that would otherwise start writing tens of thousands of frames without a word.
MAX_SLOWDOWN = 100


def _exact(value: float | int | str | Fraction, param: str, what: str = "") -> Fraction:
    """A user number as an exact fraction (float noise removed: 0.1 -> 1/10); a UsageError names ``param``."""
    try:
        frac = Fraction(str(value).strip()) if isinstance(value, str) else Fraction(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise UsageError(f"`{param}`{what} {value!r} is not a number", param=param) from None
    return frac.limit_denominator(10**6)


def speed_phase(speed: float | Fraction) -> float:
    """The automatic phase of :func:`speed_map`: 0 for integer speeds, else ``1 / (2q)`` for S = p/q."""
    frac = _exact(speed, "speed").limit_denominator(_MAX_DENOMINATOR)
    q = frac.denominator
    return 0.0 if q == 1 else 1.0 / (2 * q)


def _check_slowdown(step: Fraction, first: int, last: int, param: str, value: object) -> None:
    if step >= Fraction(1, MAX_SLOWDOWN):
        return
    count = math.floor((last - first) / step) + 1
    raise UsageError(f"`{param}` {value} is {float(1 / step):g}x slow motion: about {count} output frames "
                     f"from {last - first + 1} plate frames; the limit is {MAX_SLOWDOWN}x (a speed of "
                     f"{1 / MAX_SLOWDOWN:g}), check the value", param=param)


def _uniform_map(first: int, last: int, start: Fraction, step: Fraction) -> FrameMap:
    if step <= 0:
        raise UsageError(f"the time step must be positive, got {float(step)}")
    span = Fraction(last - first) - start
    if span < 0:
        return []
    count = math.floor(span / step) + 1  # exact: no float drift at the last frame
    return [(first + k, float(first + start + k * step)) for k in range(count)]


def speed_map(first: int, last: int, speed: float | Fraction, *, phase: float | None = None) -> FrameMap:
    """``speed``: [(first + k, first + phase + k * speed)] up to source frame ``last``.

    ``phase`` None picks :func:`speed_phase`; see the module docstring for why.
    """
    step = _exact(speed, "speed")
    if step <= 0:
        raise UsageError(f"`speed` must be positive, got {speed}; use a curve for reverse playback",
                         param="speed")
    _check_slowdown(step, first, last, "speed", speed)
    start = _exact(speed_phase(step) if phase is None else phase, "phase")
    if not 0 <= start < 1:
        raise UsageError(f"`phase` must be in [0, 1), got {phase}", param="phase")
    return _uniform_map(first, last, start, step)


def parse_rate(text: str) -> tuple[Fraction, Fraction]:
    """``"24:60"`` -> (24, 60); each side may be ``23.976`` or ``24000/1001``. UsageError when odd."""
    parts = str(text).split(":")
    if len(parts) != 2:
        raise UsageError(f"`fps` {text!r} must be SOURCE:TARGET, e.g. 24:60 or 24000/1001:60", param="fps")
    src = _exact(parts[0], "fps", " source rate")
    dst = _exact(parts[1], "fps", " target rate")
    if src <= 0 or dst <= 0:
        raise UsageError(f"`fps` {text!r}: both rates must be positive", param="fps")
    return src, dst


def fps_map(first: int, last: int, rate: str | tuple[Any, Any]) -> FrameMap:
    """``fps`` SRC:DST: [(first + k, first + k * SRC / DST)] up to source frame ``last``."""
    if isinstance(rate, str):
        src, dst = parse_rate(rate)
    else:
        src, dst = _exact(rate[0], "rate"), _exact(rate[1], "rate")
    if src > 0 and dst > 0:
        _check_slowdown(src / dst, first, last, "fps", rate if isinstance(rate, str) else f"{src}:{dst}")
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
    from daflow_vfx.yaml_io import read_yaml

    text = os.fspath(path)
    data = read_yaml(text, "curve", param="curve")
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
    """``curve``: every whole output frame between the first and last key -> its source time.

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
