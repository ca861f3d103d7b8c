"""The colour boundary: plate pixels in their own colour space -> the display-referred [0, 1] RGB that
flow estimators expect (sRGB-encoded Rec.709, what they are trained on). This is the only module that
makes that conversion; it runs through OpenColorIO (OpenImageIO's bundled OCIO, :mod:`daflow_vfx.ocio`).

``--input-colorspace`` takes any colour space, alias or role of the active OCIO config (``--ocio-config``,
else ``$OCIO``, else OCIO's built-in ``ocio://studio-config-latest``), and these short names:

- ``linear``: scene-linear Rec.709 (OCIO ``lin_rec709``);
- ``srgb``: sRGB-encoded Rec.709 (OCIO ``srgb_tx``), already what the estimators see;
- ``rec709``: Rec.709 video as a Rec.1886 display shows it (OCIO ``rec709_display``, gamma 2.4);
- ``log``: Cineon printing density (black 95, white 685, 0.002 density per code value, gamma 0.6);
- ``auto``: the file's own colour space when it names one (an EXR ``colorspace`` attribute, an
  ``oiio:ColorSpace`` that differs from the reader's default, a video's transfer characteristics), else
  the reader's guess: ``log`` for printing-density DPX/Cineon, ``linear`` for EXR and float files,
  ``srgb`` for everything else.

How a colour space reaches the display (OCIO tells which kind it is, :meth:`daflow_vfx.ocio.Config.kind`):

- display encodings (sRGB, Rec.709, gamma textures): OCIO straight to sRGB Rec.709, clipped to [0, 1];
- scene-linear and log spaces (ACEScg, LogC3, S-Log3, ...): OCIO to linear Rec.709, then the
  filmic shoulder below, then OCIO's sRGB encoding::

      shoulder(x) = x                                   for x <= K        (K = 0.5)
                  = K + (1 - K) * t / (1 + t)           for x > K,  t = (x - K) / (1 - K)

  Below the knee this is plain sRGB, so it is exposure neutral (mid grey 0.18 -> 0.461); above it the
  highlights roll off towards 1.0 instead of clipping (1.0 -> 0.88 display, 4.0 -> 0.97), so motion in
  bright areas stays visible to the estimator.

Two transforms stay hand-written, because OCIO's configs have no equivalent: the shoulder (OCIO's
display views are looks, e.g. ACES 1.0 SDR moves mid grey to about 0.39 and adds contrast; the shoulder
keeps the estimator's input statistics those of the sRGB images it was trained on) and the Cineon
decode (the built-in configs have no Cineon space; ADX10 is a different density encoding; a studio
config's own Cineon space can be named instead of ``log``).

:func:`from_display` inverts :func:`to_display` for writing results back in the plate's space.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from daflow_vfx.errors import UsageError
from daflow_vfx.ocio import config_source, load_config, require_known

if TYPE_CHECKING:
    from daflow_vfx.io.plate import PlateInfo
    from daflow_vfx.ocio import Config

__all__ = [
    "COLORSPACES",
    "ColorSpace",
    "Sanitized",
    "resolve_colorspace",
    "check_colorspace",
    "check_output_colorspace",
    "sanitize",
    "to_display",
    "from_display",
    "to_output",
    "output_transfer",
    "convert_colorspace",
    "is_scene_linear",
    "tone_shoulder",
    "inverse_tone_shoulder",
    "cineon_to_linear",
    "linear_to_cineon",
]

log = logging.getLogger(__name__)

# The short names (menus of the plugins); any name of the OCIO config works too.
COLORSPACES: tuple[str, ...] = ("auto", "linear", "srgb", "rec709", "log")

# Short name -> names OCIO configs commonly give that space (first one the config knows wins).
ALIASES: dict[str, tuple[str, ...]] = {
    "linear": ("lin_rec709", "Linear Rec.709 (sRGB)", "Utility - Linear - sRGB", "lin_srgb", "linear"),
    "srgb": ("srgb_tx", "sRGB Encoded Rec.709 (sRGB)", "Utility - sRGB - Texture", "srgb_texture", "sRGB"),
    "rec709": ("rec709_display", "Gamma 2.4 Encoded Rec.709", "Utility - Rec.709 - Display", "rec709"),
}
_CINEON = "log"   # decoded by hand (see the module docstring)

KNEE = 0.5   # linear value where the highlight shoulder starts

# Cineon constants: code values are 10-bit (0..1023), stored normalised to [0, 1] by the readers.
_CINEON_BLACK = 95.0
_CINEON_WHITE = 685.0
_CINEON_DENSITY_PER_CODE = 0.002
_CINEON_GAMMA = 0.6
_CINEON_OFFSET = 10.0 ** ((_CINEON_BLACK - _CINEON_WHITE) * _CINEON_DENSITY_PER_CODE / _CINEON_GAMMA)


class ColorSpace(str):
    """A resolved colour space. It is the name as given (or as ``auto`` found it), so it prints, compares
    and serialises as that name, and carries what the conversions need."""

    ocio: str     # the config's name for it; "" for the hand-decoded Cineon ``log``
    config: str   # the OCIO config (path or URI)
    kind: str     # "linear" | "log" | "display" (see daflow_vfx.ocio.Config.kind)
    reason: str   # why this space: "--input-colorspace", "the file's colorspace attribute", ...

    def __new__(cls, name: str, *, ocio: str, config: str, kind: str, reason: str) -> ColorSpace:
        self = super().__new__(cls, name)
        self.ocio, self.config, self.kind, self.reason = ocio, config, kind, reason
        return self

    def __reduce__(self) -> tuple:
        # pickling (worker processes) keeps the attributes
        return (_rebuild, (str(self), self.ocio, self.config, self.kind, self.reason))


def _rebuild(name: str, ocio: str, config: str, kind: str, reason: str) -> ColorSpace:
    return ColorSpace(name, ocio=ocio, config=config, kind=kind, reason=reason)


def _config(ocio_config: str | None) -> Config:
    uri, _ = config_source(ocio_config)
    return load_config(uri)


def _named(name: str, config: Config, *, reason: str, param: str = "input_colorspace") -> ColorSpace:
    """``name`` (a short name or any name of ``config``) as a ColorSpace; UsageError when unknown."""
    text = str(name).strip()
    key = text.lower()
    if key == _CINEON:
        return ColorSpace(key, ocio="", config=config.uri, kind="log", reason=reason)
    if key in ALIASES:
        found = next((n for n in map(config.lookup, ALIASES[key]) if n), None)
        if found is None:
            raise UsageError(f"`{param}` {text!r}: OCIO config {config.uri} has none of "
                             f"{', '.join(ALIASES[key])}; name one of its own colour spaces", param=param)
        return ColorSpace(key, ocio=found, config=config.uri, kind=config.kind(found), reason=reason)
    found = require_known(config, text, param=param, extra=COLORSPACES)
    return ColorSpace(text, ocio=found, config=config.uri, kind=config.kind(found), reason=reason)


def check_colorspace(name: str, ocio_config: str | None = None, *, param: str = "input_colorspace") -> str:
    """``name`` when it is ``auto``, a short name or a name of the OCIO config; else a UsageError naming
    ``param`` that lists close matches. Loads the config, so a bad ``ocio_config`` is refused here too."""
    config = _config(ocio_config)
    if str(name).strip().lower() != "auto":
        _named(name, config, reason="", param=param)
    return name


def _guess_reason(info: PlateInfo) -> str:
    if info.kind == "video":
        return "video is display-referred"
    if info.colorspace_guess == _CINEON:
        return f"{info.file_format} in printing density"
    if info.colorspace_guess == "linear":
        return f"{info.file_format} ({info.pixel_type}) is scene-linear"
    return f"{info.file_format} ({info.pixel_type}) is display-referred"


def resolve_colorspace(name: str, info: PlateInfo | None = None, *,
                       ocio_config: str | None = None) -> ColorSpace:
    """The colour space ``name`` means for the plate ``info`` (``auto``: see the module docstring).

    UsageError listing close matches when the name is unknown; ConfigError when the config cannot be read.
    """
    config = _config(ocio_config)
    text = str(name).strip()
    if text.lower() != "auto":
        return _named(text, config, reason="--input-colorspace")
    if info is None:
        raise UsageError("colour space 'auto' needs the plate it is for; name a colour space",
                         param="input_colorspace")
    guess = _named(info.colorspace_guess, config, reason=f"auto: {_guess_reason(info)}")
    tag, source = getattr(info, "colorspace_tag", ""), getattr(info, "colorspace_tag_source", "")
    if not tag:
        return guess
    try:
        tagged = _named(tag, config, reason=f"auto: the file's {source} says {tag!r}")
    except UsageError:
        log.warning("%s: the file's %s says %r, which OCIO config %s does not know; reading it as %s (%s)",
                    info.path, source, tag, config.uri, guess, guess.reason)
        return guess
    same = tagged.ocio == guess.ocio if not (tagged.ocio and guess.ocio) else \
        bool(config.handle.equivalent(tagged.ocio, guess.ocio))
    if same and source.startswith("oiio:"):
        return guess   # OpenImageIO's reader default (lin_rec709 for EXR, sRGB for PNG) says nothing new
    if same:
        return ColorSpace(str(guess), ocio=guess.ocio, config=config.uri, kind=guess.kind,
                          reason=f"{guess.reason}; the file's {source} agrees")
    # The file overrides what auto picked before it read colour tags: say so where it is seen.
    log.warning("%s: reading the plate as %r, not %r: the file's %s names it", info.path,
                tagged.ocio or str(tagged), str(guess), source)
    return tagged


def is_scene_linear(space: ColorSpace) -> bool:
    """Whether integer files and video need the display transform to hold this plate's values."""
    return space.kind == "linear"


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
        c = np.asarray(code, np.float32) * 1023.0   # the code value itself, not a pixel-depth scale
        lin = (np.power(10.0, (c - _CINEON_WHITE) * gain) - _CINEON_OFFSET) / (1.0 - _CINEON_OFFSET)
    return lin.astype(np.float32)


def linear_to_cineon(lin: np.ndarray) -> np.ndarray:
    """Scene-linear -> Cineon code values normalised to [0, 1] (inverse of :func:`cineon_to_linear`)."""
    x = np.asarray(lin, np.float32) * (1.0 - _CINEON_OFFSET) + _CINEON_OFFSET
    gain = _CINEON_DENSITY_PER_CODE / _CINEON_GAMMA
    code = _CINEON_WHITE + np.log10(np.maximum(x, 1e-10)) / gain
    return (code / 1023.0).astype(np.float32)


def _space(colorspace: str, ocio_config: str | None) -> ColorSpace:
    if isinstance(colorspace, ColorSpace):
        return colorspace
    if str(colorspace).strip().lower() == "auto":
        raise UsageError("colour space 'auto' must be resolved against the plate first (resolve_colorspace)")
    return resolve_colorspace(colorspace, ocio_config=ocio_config)


def _to_linear(data: np.ndarray, space: ColorSpace, config: Config) -> np.ndarray:
    """Plate values -> scene-linear Rec.709 ``[H, W, 3]``."""
    if not space.ocio:
        return cineon_to_linear(data)
    return config.convert(data, space.ocio, config.linear)


def _checked(img: np.ndarray, what: str) -> np.ndarray:
    top = np.float32(np.finfo(np.float32).max)
    data = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=top, neginf=0.0)
    if data.ndim != 3 or data.shape[-1] != 3:
        raise ValueError(f"{what} expects [H, W, 3], got {data.shape}")
    return data


def to_display(img: np.ndarray, colorspace: str, *, ocio_config: str | None = None) -> np.ndarray:
    """Plate pixels in ``colorspace`` -> float32 ``[H, W, 3]`` display-referred values in [0, 1].

    ``colorspace``: a :class:`ColorSpace` from :func:`resolve_colorspace`, or a name resolved here
    against ``ocio_config``. NaN becomes 0 and +Inf the top of the range; call :func:`sanitize` first to
    count such pixels.
    """
    space = _space(colorspace, ocio_config)
    config = load_config(space.config)
    data = _checked(img, "to_display")   # [H, W, 3]
    if space.kind == "display":
        shown = config.convert(data, space.ocio, config.srgb)
    else:
        shown = config.convert(tone_shoulder(_to_linear(data, space, config)), config.linear, config.srgb)
    return np.clip(shown, 0.0, 1.0).astype(np.float32, copy=False)


def from_display(img: np.ndarray, colorspace: str, *, ocio_config: str | None = None) -> np.ndarray:
    """Inverse of :func:`to_display`: display [0, 1] -> values in ``colorspace`` (float32, same shape)."""
    space = _space(colorspace, ocio_config)
    config = load_config(space.config)
    data = np.clip(_checked(img, "from_display"), 0.0, 1.0)   # [H, W, 3]
    if space.kind == "display":
        return config.convert(data, config.srgb, space.ocio)
    lin = inverse_tone_shoulder(config.convert(data, config.srgb, config.linear))
    if not space.ocio:
        return linear_to_cineon(lin)
    return config.convert(lin, config.linear, space.ocio)


# ------------------------------------------------------------------------------------------ outputs


def check_output_colorspace(name: str | None, ocio_config: str | None = None) -> str | None:
    """``name`` when it is None, a colour space or a display of the OCIO config (UsageError otherwise)."""
    if name is None or not str(name).strip():
        return None
    config = _config(ocio_config)
    if str(name).strip() in config.displays() and config.lookup(name) is None:
        return name
    _named(name, config, reason="", param="output_colorspace")
    return name


def to_output(img: np.ndarray, space: ColorSpace, output: str | None) -> np.ndarray:
    """Plate values -> float32 ``[H, W, 3]`` for a video file, clipped to [0, 1].

    ``output`` None: the estimators' display (sRGB Rec.709). Else an OCIO colour space or display: a
    display-encoded target from a scene-referred plate goes through the shoulder first (a review copy,
    highlights rolled off rather than clipped); a display that is not a colour space uses its default view.
    """
    if output is None or not str(output).strip():
        return to_display(img, space)
    config = load_config(space.config)
    data = _checked(img, "to_output")   # [H, W, 3]
    target = str(output).strip()
    if target in config.displays() and config.lookup(target) is None:
        lin = _to_linear(data, space, config) if not space.ocio else data
        shown = config.display(lin, space.ocio or config.linear, target)
        return np.clip(shown, 0.0, 1.0).astype(np.float32, copy=False)
    out = _named(target, config, reason="--output-colorspace", param="output_colorspace")
    if out.kind == "display" and space.kind != "display":
        lin = tone_shoulder(_to_linear(data, space, config))
        values = config.convert(lin, config.linear, out.ocio) if out.ocio else linear_to_cineon(lin)
    elif not space.ocio or not out.ocio:
        lin = _to_linear(data, space, config)
        values = linear_to_cineon(lin) if not out.ocio else config.convert(lin, config.linear, out.ocio)
    else:
        values = config.convert(data, space.ocio, out.ocio)
    return np.clip(values, 0.0, 1.0).astype(np.float32, copy=False)


def convert_colorspace(img: np.ndarray, src: str, dst: str, *, ocio_config: str | None = None) -> np.ndarray:
    """Values ``[H, W, 3]`` from colour space ``src`` to ``dst`` (names as ``--input-colorspace`` takes
    them), unclipped: OCIO's colorimetric conversion, the Cineon ``log`` decoded or encoded by hand."""
    config = _config(ocio_config)
    source = _named(src, config, reason="", param="src")
    target = _named(dst, config, reason="", param="dst")
    data = _checked(img, "convert_colorspace")   # [H, W, 3]
    if source.ocio and target.ocio:
        return config.convert(data, source.ocio, target.ocio)
    lin = _to_linear(data, source, config)
    return linear_to_cineon(lin) if not target.ocio else config.convert(lin, config.linear, target.ocio)


# H.273 transfer characteristics a video's header can carry.
_TRC_BT709, _TRC_UNSPECIFIED, _TRC_LINEAR, _TRC_SRGB = 1, 2, 8, 13


def output_transfer(space: ColorSpace, output: str | None) -> int:
    """The H.273 transfer characteristic to tag a video written by :func:`to_output` with."""
    config = load_config(space.config)
    target = "srgb" if output is None or not str(output).strip() else str(output).strip()
    try:
        found = _named(target, config, reason="", param="output_colorspace").ocio
    except UsageError:
        return _TRC_UNSPECIFIED   # a display that is not a colour space
    tagged = ((_TRC_SRGB, (*ALIASES["srgb"], "srgb_display", "sRGB - Display")),
              (_TRC_BT709, (*ALIASES["rec709"], "rec1886_rec709_display", "Rec.1886 Rec.709 - Display")),
              (_TRC_LINEAR, ALIASES["linear"]))
    for trc, names in tagged:
        for known in filter(None, map(config.lookup, names)):
            if found and config.handle.equivalent(found, known):
                return trc
    return _TRC_UNSPECIFIED
