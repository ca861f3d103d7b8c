"""OpenColorIO through OpenImageIO's bundled OCIO: which config, which colour space names, and the pixel
conversions. Only :mod:`daflow_vfx.color` calls this module (the colour boundary stays in one place).

The config is ``--ocio-config`` (``ocio_config=``) when given, else ``$OCIO`` (the studio's own config),
else OCIO's built-in ``ocio://studio-config-latest`` (ACES, ARRI LogC3/LogC4, S-Log3, V-Log, Log3G10,
Apple Log, Canon Log, sRGB and Rec.709 encodings, ...).
"""

from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from daflow_vfx.errors import ConfigError, UsageError

__all__ = ["DEFAULT_CONFIG", "Config", "config_source", "load_config"]

DEFAULT_CONFIG = "ocio://studio-config-latest"

# The two spaces the boundary works in, by the names configs commonly give them (first found wins):
# scene-linear Rec.709 primaries, and the sRGB-encoded Rec.709 values estimators are trained on.
_LINEAR_NAMES = ("lin_rec709", "Linear Rec.709 (sRGB)", "Utility - Linear - sRGB", "lin_srgb", "linear")
_SRGB_NAMES = ("srgb_tx", "sRGB Encoded Rec.709 (sRGB)", "Utility - sRGB - Texture", "srgb_texture", "sRGB",
               "srgb")


def _oiio() -> Any:
    # Imported here so `import daflow_vfx` stays light.
    import OpenImageIO

    return OpenImageIO


def config_source(ocio_config: str | None = None) -> tuple[str, str]:
    """(config path or URI, why that one): ``ocio_config``, else ``$OCIO``, else the built-in config."""
    if ocio_config and str(ocio_config).strip():
        return str(ocio_config).strip(), "--ocio-config"
    env = os.environ.get("OCIO", "").strip()
    if env:
        return env, "$OCIO"
    return DEFAULT_CONFIG, "OCIO's built-in studio config"


@dataclass(frozen=True)
class Config:
    """One loaded OCIO config and the names the boundary needs from it."""

    uri: str          # what OpenImageIO is given on every conversion
    handle: Any       # OpenImageIO.ColorConfig
    linear: str       # its scene-linear Rec.709 space
    srgb: str         # its sRGB-encoded Rec.709 space

    def lookup(self, name: str) -> str | None:
        """The config's own name for ``name`` (a colour space, alias or role; any case), or None."""
        resolved = str(self.handle.resolve(str(name)))
        return resolved if self.handle.getColorSpaceIndex(resolved) >= 0 else None

    def names(self) -> list[str]:
        return [str(n) for n in self.handle.getColorSpaceNames()]

    def displays(self) -> list[str]:
        return [str(n) for n in self.handle.getDisplayNames()]

    def close_matches(self, name: str, extra: tuple[str, ...] = ()) -> list[str]:
        """Up to six names of this config (or ``extra`` short names) that look like ``name``."""
        canonical = self.names()
        spellings: dict[str, str] = {n.lower(): n for n in canonical}
        for n in canonical:
            for alias in self.handle.getAliases(n):
                spellings.setdefault(str(alias).lower(), n)
        for short in extra:
            spellings.setdefault(short.lower(), short)
        key = str(name).strip().lower()
        found = difflib.get_close_matches(key, list(spellings), n=12, cutoff=0.5)
        # substring hits first ("logc" -> every LogC space), then difflib's near spellings
        inside = [s for s in spellings if key and key in s]
        picked = list(dict.fromkeys(spellings[s] for s in [*inside, *found]))
        return picked[:6]

    def convert(self, img: np.ndarray, src: str, dst: str) -> np.ndarray:
        """float32 ``[H, W, 3]`` from colour space ``src`` to ``dst`` through OCIO (a new array)."""
        data = np.ascontiguousarray(img, dtype=np.float32)   # [H, W, 3]
        if src == dst:
            return data.copy()
        if data.size // 3 > _TABLE_PIXELS:
            return self._ocio_convert(data, src, dst)
        if (src, dst) not in self._tables:
            self._tables[(src, dst)] = _Table.sample(self, src, dst)
        table = self._tables[(src, dst)]
        fast = table.apply(data) if table is not None else None
        return fast if fast is not None else self._ocio_convert(data, src, dst)

    @functools.cached_property
    def _tables(self) -> dict[tuple[str, str], _Table | None]:
        return {}

    def _ocio_convert(self, data: np.ndarray, src: str, dst: str) -> np.ndarray:
        oiio = _oiio()
        # unpremult=False: plates reach the boundary as RGB without alpha.
        out = oiio.ImageBufAlgo.colorconvert(oiio.ImageBuf(data), src, dst, False, "", "", self.uri)
        if out.has_error:
            raise ConfigError(f"OCIO cannot convert {src!r} to {dst!r} with {self.uri} "
                              f"({' '.join(out.geterror().split())})")
        return np.asarray(out.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(data.shape)

    def display(self, img: np.ndarray, src: str, display: str) -> np.ndarray:
        """float32 ``[H, W, 3]`` from ``src`` through ``display`` with its default view."""
        oiio = _oiio()
        data = np.ascontiguousarray(img, dtype=np.float32)   # [H, W, 3]
        view = str(self.handle.getDefaultViewName(display))
        out = oiio.ImageBufAlgo.ociodisplay(oiio.ImageBuf(data), display, view, src, "", False, False, "", "",
                                            self.uri)
        if out.has_error:
            raise ConfigError(f"OCIO cannot show {src!r} on display {display!r} ({view}) with {self.uri} "
                              f"({' '.join(out.geterror().split())})")
        return np.asarray(out.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(data.shape)

    @functools.cached_property
    def _kinds(self) -> dict[str, str]:
        return {}

    def kind(self, space: str) -> str:
        """``"linear"``, ``"log"`` or ``"display"``: how the code values of ``space`` relate to light.

        Asked of OCIO itself, so it holds for any studio config: code values 0.5 and 1.0 are converted
        to scene-linear. Proportional (0.5 -> 0.5) is scene-linear; 1.0 far above 1.0 is a log or HDR
        encoding (scene-referred, needs a highlight roll-off); anything else is a display encoding whose
        [0, 1] range is the picture (sRGB, Rec.709, gamma textures).
        """
        if space not in self._kinds:
            probe = np.array([[[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]], np.float32)   # [1, 2, 3]
            lin = self.convert(probe, space, self.linear)[0, :, 1]
            half, one = float(lin[0]), float(lin[1])
            if not (np.isfinite(half) and np.isfinite(one)) or one > 1.5:
                found = "log"
            elif abs(one - 1.0) < 0.05 and abs(half - 0.5) < 0.05:
                found = "linear"
            else:
                found = "display"
            self._kinds[space] = found
        return self._kinds[space]


@functools.lru_cache(maxsize=8)
def load_config(uri: str) -> Config:
    """The OCIO config at ``uri`` (path or ``ocio://`` URI), loaded once per process. ConfigError when it
    cannot be read or lacks a linear or sRGB Rec.709 space."""
    oiio = _oiio()
    if not uri.startswith("ocio://") and not os.path.isfile(uri):
        raise ConfigError(f"OCIO config {uri!r} does not exist; give a config.ocio file or an ocio:// URI "
                          "in `ocio_config` or $OCIO", param="ocio_config")
    handle = oiio.ColorConfig(uri)
    error = " ".join(str(handle.geterror()).split())
    if error:
        # OpenImageIO falls back to its built-in config on a bad one; refuse instead of guessing.
        raise ConfigError(f"OCIO config {uri!r} cannot be read ({error}); fix `ocio_config` or $OCIO",
                          param="ocio_config")
    partial = Config(uri=uri, handle=handle, linear="", srgb="")
    linear = next((n for n in map(partial.lookup, _LINEAR_NAMES) if n), None)
    srgb = next((n for n in map(partial.lookup, _SRGB_NAMES) if n), None)
    if linear is None or srgb is None:
        missing = "a linear Rec.709" if linear is None else "an sRGB-encoded Rec.709"
        raise ConfigError(f"OCIO config {uri!r} has no {missing} colour space (looked for "
                          f"{', '.join(_LINEAR_NAMES if linear is None else _SRGB_NAMES)}); add one or alias "
                          "it", param="ocio_config")
    return Config(uri=uri, handle=handle, linear=linear, srgb=srgb)


def require_known(config: Config, name: str, *, param: str, extra: tuple[str, ...] = ()) -> str:
    """The config's name for ``name``; UsageError naming ``param`` with close matches when unknown."""
    found = config.lookup(name)
    if found is not None:
        return found
    matches = config.close_matches(name, extra)
    if matches:
        hint = f"close matches: {', '.join(repr(m) for m in matches)}"
    else:
        hint = f"it has {', '.join(repr(n) for n in config.names()[:8])}, ... ({len(config.names())} in all)"
    raise UsageError(f"unknown `{param}` {name!r} in OCIO config {config.uri}; {hint}", param=param)


# Code values a sampled table covers; images reaching outside it go through OCIO itself.
_TABLE_RANGE = (-0.125, 1.125)
_TABLE_SIZE = 16385
# Above this many pixels OCIO's own per-pixel work beats the table's interpolation (its fixed cost is
# spread over the frame), so large frames always go through OCIO.
_TABLE_PIXELS = 256 * 1024


@dataclass(frozen=True)
class _Table:
    """An OCIO conversion sampled once, because OpenImageIO rebuilds the config on every call (about
    80 ms for the studio config, whatever the image size).

    Holds only for conversions that are a per-channel curve followed by a 3x3 matrix (decode curve then
    gamut: what colour-space conversions are), ``out = base + T_r(r) + T_g(g) + T_b(b)``; :meth:`sample`
    checks that against OCIO on random colours and returns None for anything else. A table whose curves
    are straight lines is a matrix and holds for any value; otherwise only within ``_TABLE_RANGE``.
    """

    grid: np.ndarray          # [N] sample positions
    curves: np.ndarray        # [3, N, 3]: input channel c at grid value -> its share of the output RGB
    base: np.ndarray          # [3] output of the anchor colour
    matrix: np.ndarray | None  # [3, 3] when the conversion is linear: out = base + matrix @ (in - anchor)

    @staticmethod
    def sample(config: Config, src: str, dst: str) -> _Table | None:
        anchor = 0.18
        grid = np.linspace(*_TABLE_RANGE, _TABLE_SIZE, dtype=np.float32)   # [N]
        probe = np.full((4, _TABLE_SIZE, 3), anchor, np.float32)             # [4, N, 3]
        for c in range(3):
            probe[c, :, c] = grid
        rng = np.random.default_rng(0)
        check = rng.uniform(*_TABLE_RANGE, (1, _TABLE_SIZE, 3)).astype(np.float32)   # [1, N, 3]
        out = config._ocio_convert(np.concatenate([probe, check]), src, dst)      # [5, N, 3]
        if not np.isfinite(out).all():
            return None
        base = out[3, 0].astype(np.float64)
        curves = out[:3].astype(np.float64) - base                             # [3, N, 3]
        matrix = None
        slopes = (curves[:, -1] - curves[:, 0]) / (grid[-1] - grid[0])          # [3, 3]
        straight = curves - (grid[None, :, None] - anchor) * slopes[:, None, :]
        if np.abs(straight).max() < 1e-5 * max(1.0, float(np.abs(curves).max())):
            matrix = slopes.T.copy()   # out_j = sum_c slopes[c, j] * (in_c - anchor)
        table = _Table(grid=grid.astype(np.float64), curves=curves, base=base, matrix=matrix)
        want = out[4:]                                                         # [1, N, 3]
        got = table.apply(check)
        if got is None or np.abs(got - want).max() > 1e-4 * max(1.0, float(np.abs(want).max())):
            return None
        return table

    def apply(self, data: np.ndarray) -> np.ndarray | None:
        """``data`` [H, W, 3] converted, or None when it reaches outside the sampled range."""
        if self.matrix is not None:
            flat = data.reshape(-1, 3).astype(np.float64) - 0.18
            return (flat @ self.matrix.T + self.base).astype(np.float32).reshape(data.shape)
        if data.size and (float(data.min()) < self.grid[0] or float(data.max()) > self.grid[-1]):
            return None
        out = np.empty(data.shape, np.float64)   # [H, W, 3]
        out[...] = self.base
        for c in range(3):
            for j in range(3):
                if np.any(self.curves[c, :, j]):   # a channel that does not feed another costs nothing
                    out[..., j] += np.interp(data[..., c], self.grid, self.curves[c, :, j])
        return out.astype(np.float32)
