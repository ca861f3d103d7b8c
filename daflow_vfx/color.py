"""The colour boundary: plate pixels in their own colour space -> the display-referred [0, 1] RGB that
flow estimators expect. This is the only module that makes that conversion.

Colour spaces (``--input-colorspace``):

- ``linear`` (scene-linear, e.g. EXR): a filmic shoulder then the sRGB OETF::

      shoulder(x) = x                                   for x <= K        (K = 0.5)
                  = K + (1 - K) * t / (1 + t)           for x > K,  t = (x - K) / (1 - K)
      display     = srgb_oetf(shoulder(max(x, 0)))

  Below the knee the curve is plain sRGB, so it is exposure neutral: mid grey 0.18 -> 0.461, exactly as
  sRGB. Above it the ``t / (1 + t)`` shoulder (slope 1 at the knee, so no kink) rolls highlights off
  towards 1.0 instead of clipping them: linear 1.0 -> 0.75 -> 0.88 display, 4.0 -> 0.94 -> 0.97, so
  motion in bright areas stays visible to the estimator.
- ``srgb``: already display-referred; clipped to [0, 1].
- ``rec709``: BT.709-encoded video values, treated as display values; clipped to [0, 1].
- ``log``: Cineon printing density (reference black 95, reference white 685, 0.002 density per code
  value, negative gamma 0.6) decoded to scene-linear (code 685 -> 1.0, 95 -> 0.0), then as ``linear``.
- ``auto``: the plate's guess (:attr:`PlateInfo.colorspace_guess`): linear for float EXR, srgb otherwise.

:func:`from_display` inverts :func:`to_display` for writing results back in the plate's space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from daflow_vfx.errors import UsageError

if TYPE_CHECKING:
    from daflow_vfx.io.plate import PlateInfo

__all__ = [
    "COLORSPACES",
    "Sanitized",
    "resolve_colorspace",
    "sanitize",
    "to_display",
    "from_display",
    "srgb_oetf",
    "srgb_eotf",
    "tone_shoulder",
    "inverse_tone_shoulder",
    "cineon_to_linear",
    "linear_to_cineon",
]

COLORSPACES: tuple[str, ...] = ("auto", "linear", "srgb", "rec709", "log")

KNEE = 0.5   # linear value where the highlight shoulder starts

# Cineon constants: code values are 10-bit (0..1023), stored normalised to [0, 1] by the readers.
_CINEON_BLACK = 95.0
_CINEON_WHITE = 685.0
_CINEON_DENSITY_PER_CODE = 0.002
_CINEON_GAMMA = 0.6
_CINEON_OFFSET = 10.0 ** ((_CINEON_BLACK - _CINEON_WHITE) * _CINEON_DENSITY_PER_CODE / _CINEON_GAMMA)


def resolve_colorspace(name: str, info: PlateInfo) -> str:
    """The concrete colour space for ``name`` ("auto" -> the plate's guess). UsageError when unknown."""
    key = str(name).strip().lower()
    if key not in COLORSPACES:
        raise UsageError(f"unknown input colour space {name!r}; use one of {', '.join(COLORSPACES)}")
    if key == "auto":
        return info.colorspace_guess
    return key


@dataclass(frozen=True)
class Sanitized:
    """An image with NaN/Inf/negative values replaced, and how many pixels had any."""

    image: np.ndarray   # float32, same shape as the input
    bad_pixels: int     # pixels (not values) with at least one NaN, Inf or negative channel


def sanitize(img: np.ndarray) -> Sanitized:
    """Replace NaN -> 0, +Inf -> the largest finite value (0 if none), -Inf and negatives -> 0.

    For ``[H, W, C]`` a pixel is bad when any of its channels is; for ``[H, W]`` each value is a pixel.
    The input is never modified.
    """
    data = np.asarray(img, dtype=np.float32)
    finite = np.isfinite(data)
    all_finite = bool(finite.all())
    if all_finite and (data.size == 0 or float(data.min()) >= 0.0):
        return Sanitized(image=data.copy(), bad_pixels=0)
    bad = ~finite | (data < 0)
    if data.ndim == 3:
        bad = bad.any(axis=-1)
    bad_pixels = int(np.count_nonzero(bad))
    top = float(data[finite].max()) if not all_finite and finite.any() else 0.0
    clean = np.nan_to_num(data, nan=0.0, posinf=max(top, 0.0), neginf=0.0)
    np.maximum(clean, 0.0, out=clean)
    return Sanitized(image=clean.astype(np.float32, copy=False), bad_pixels=bad_pixels)


def srgb_oetf(x: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB-encoded [0, 1] (IEC 61966-2-1 piecewise curve)."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def srgb_eotf(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear [0, 1] (inverse of :func:`srgb_oetf`)."""
    v = np.clip(np.asarray(v, np.float32), 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4)).astype(np.float32)


def tone_shoulder(x: np.ndarray, knee: float = KNEE) -> np.ndarray:
    """Identity below ``knee``, then ``knee + (1 - knee) * t / (1 + t)``: maps [0, inf) onto [0, 1)."""
    x = np.maximum(np.asarray(x, np.float32), 0.0)
    with np.errstate(over="ignore"):
        t = np.maximum(x - knee, 0.0) / (1.0 - knee)
        # t / (1 + t) written as 1 - 1 / (1 + t) so t = inf gives 1, not inf / inf.
        rolled = knee + (1.0 - knee) * (1.0 - 1.0 / (1.0 + t))
    return np.where(x <= knee, x, rolled).astype(np.float32)


def inverse_tone_shoulder(y: np.ndarray, knee: float = KNEE) -> np.ndarray:
    """Inverse of :func:`tone_shoulder`; display 1.0 maps to a large finite value (not infinity)."""
    y = np.clip(np.asarray(y, np.float32), 0.0, 1.0)
    s = np.minimum(np.maximum(y - knee, 0.0) / (1.0 - knee), 1.0 - 1e-4)
    return np.where(y <= knee, y, knee + (1.0 - knee) * s / (1.0 - s)).astype(np.float32)


def cineon_to_linear(code: np.ndarray) -> np.ndarray:
    """Cineon code values normalised to [0, 1] (code / 1023) -> scene-linear (685 -> 1.0, 95 -> 0.0)."""
    gain = _CINEON_DENSITY_PER_CODE / _CINEON_GAMMA
    with np.errstate(over="ignore", invalid="ignore"):
        c = np.asarray(code, np.float32) * 1023.0
        lin = (np.power(10.0, (c - _CINEON_WHITE) * gain) - _CINEON_OFFSET) / (1.0 - _CINEON_OFFSET)
    return lin.astype(np.float32)


def linear_to_cineon(lin: np.ndarray) -> np.ndarray:
    """Scene-linear -> Cineon code values normalised to [0, 1] (inverse of :func:`cineon_to_linear`)."""
    x = np.asarray(lin, np.float32) * (1.0 - _CINEON_OFFSET) + _CINEON_OFFSET
    gain = _CINEON_DENSITY_PER_CODE / _CINEON_GAMMA
    code = _CINEON_WHITE + np.log10(np.maximum(x, 1e-10)) / gain
    return (code / 1023.0).astype(np.float32)


def _check_space(colorspace: str) -> str:
    key = str(colorspace).strip().lower()
    if key == "auto":
        raise UsageError("colour space 'auto' must be resolved against the plate first (resolve_colorspace)")
    if key not in COLORSPACES:
        raise UsageError(f"unknown colour space {colorspace!r}; use one of {', '.join(COLORSPACES[1:])}")
    return key


def to_display(img: np.ndarray, colorspace: str) -> np.ndarray:
    """Plate pixels in ``colorspace`` -> float32 ``[H, W, 3]`` display-referred values in [0, 1].

    - ``linear``: ``srgb_oetf(shoulder(max(x, 0)))`` where ``shoulder(x) = x`` up to the knee K = 0.5 and
      ``K + (1 - K) * t / (1 + t)``, ``t = (x - K) / (1 - K)`` above it: plain sRGB below the knee (mid
      grey 0.18 -> 0.461, exposure neutral), highlights rolled off smoothly towards 1.0 (1.0 -> 0.88,
      4.0 -> 0.97) instead of clipped.
    - ``srgb`` / ``rec709``: display values already; clipped to [0, 1].
    - ``log``: Cineon (black 95, white 685, 0.002 density/code, gamma 0.6) to linear, then as ``linear``.

    NaN becomes 0 and +Inf the top of the range; call :func:`sanitize` first to count such pixels.
    """
    key = _check_space(colorspace)
    top = np.float32(np.finfo(np.float32).max)
    data = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=top, neginf=0.0)
    if data.ndim != 3 or data.shape[-1] != 3:
        raise ValueError(f"to_display expects [H, W, 3], got {data.shape}")
    if key == "log":
        data = cineon_to_linear(data)
        key = "linear"
    if key == "linear":
        return srgb_oetf(tone_shoulder(data))
    # srgb and rec709 are display values already.
    return np.clip(data, 0.0, 1.0).astype(np.float32, copy=False)


def from_display(img: np.ndarray, colorspace: str) -> np.ndarray:
    """Inverse of :func:`to_display`: display [0, 1] -> values in ``colorspace`` (float32, same shape)."""
    key = _check_space(colorspace)
    data = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    if key in ("srgb", "rec709"):
        return data.astype(np.float32, copy=True)
    lin = inverse_tone_shoulder(srgb_eotf(data))
    if key == "log":
        return linear_to_cineon(lin)
    return lin
