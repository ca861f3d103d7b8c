"""The textures of the synthetic training scenes (:mod:`daflow_vfx.train.data`), on the CPU.

Procedural (fractal value noise through random colour ramps, stripes and checkers, gradients, random
anti-aliased shapes) or crops of the photographs bundled inside scikit-image's package folder, read
straight from disk (no network, no dataset download); and the anti-aliased alpha of a foreground
shape. :mod:`daflow_vfx.train.textures_torch` draws the same kinds batched on the training device.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# Photographs shipped inside scikit-image's package folder (skimage/data); used only as textures.
SKIMAGE_TEXTURES: tuple[str, ...] = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "coins.png", "ihc.png",
    "hubble_deep_field.jpg", "retina.jpg", "moon.png", "text.png", "grass.png", "gravel.png",
    "brick.png", "color.png", "motorcycle_left.png", "motorcycle_right.png", "microaneurysms.png", "cell.png",
    "chessboard_RGB.png",
)
TEXTURE_KINDS: tuple[str, ...] = ("photo", "noise", "stripes", "gradient", "shapes")
_MAX_PHOTO_SIDE = 512  # photos are downscaled once on load; crops never need more
_TEXTURE_BLUR = 0.5  # px; band-limits textures the way a lens does, so resampling stays faithful

@functools.lru_cache(maxsize=1)
def _photo_paths() -> tuple[str, ...]:
    """Paths of the bundled scikit-image photographs present in this install (may be empty)."""
    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        return ()
    if spec is None or not spec.submodule_search_locations:
        return ()
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    return tuple(str(root / name) for name in SKIMAGE_TEXTURES if (root / name).is_file())


@functools.cache
def _load_photo(path: str) -> np.ndarray | None:
    """[h, w, 3] float32 [0, 1] (grey photos keep one channel: [h, w, 1]), or None when unreadable."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)  # None, never an exception, on a bad file
    if img is None or img.dtype.kind not in "ui":
        logger.warning("%s: cannot read this bundled texture; skipping it", path)
        return None
    scale = np.float32(np.iinfo(img.dtype).max)
    if img.ndim == 2:
        img = img[..., None]
    elif img.shape[2] == 4:
        img = img[..., :3]
    if img.shape[2] == 3:
        img = img[..., ::-1]  # OpenCV's BGR -> RGB
    side = max(img.shape[:2])
    if side > _MAX_PHOTO_SIDE:
        f = _MAX_PHOTO_SIDE / side
        img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)),
                         interpolation=cv2.INTER_AREA)
        img = img.reshape(img.shape[:2] + (-1,))
    return np.ascontiguousarray(img.astype(np.float32) / scale)


def _colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 3] random colours, drawn in HSV so saturated and dull colours both occur."""
    hsv = np.stack([rng.uniform(0, 360, n), rng.uniform(0, 1, n), rng.uniform(0.1, 1, n)], -1)
    return cv2.cvtColor(hsv.astype(np.float32)[None], cv2.COLOR_HSV2RGB)[0]


def _colormap(rng: np.random.Generator, scalar: np.ndarray) -> np.ndarray:
    """[h, w] in [0, 1] -> [h, w, 3] through a random ramp of 2 - 5 colours."""
    n = int(rng.integers(2, 6))
    stops = np.sort(np.concatenate([[0.0, 1.0], rng.random(n - 2)]))
    cols = _colors(rng, n)
    return np.stack([np.interp(scalar, stops, cols[:, c]) for c in range(3)], -1).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / max(hi - lo, 1e-6)


def fractal_noise(rng: np.random.Generator, h: int, w: int, channels: int = 1) -> np.ndarray:
    """[h, w, channels] float32 fractal value noise in [0, 1]: bicubic-upsampled random grids, 2-5 octaves."""
    period = float(rng.uniform(6.0, max(8.0, max(h, w) / 2.0)))  # coarsest feature, px
    octaves = int(rng.integers(2, 6))
    persistence = float(rng.uniform(0.35, 0.7))
    out = np.zeros((h, w, channels), np.float32)
    amp = 1.0
    for _ in range(octaves):
        if period < 2.0:
            break
        grid = rng.random((int(h / period) + 2, int(w / period) + 2, channels), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
        amp *= persistence
        period /= 2.0
    return _normalise(out)


def _noise_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    if rng.random() < 0.5:
        return _colormap(rng, fractal_noise(rng, h, w)[..., 0])
    return fractal_noise(rng, h, w, 3)


def _stripes_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    period = rng.uniform(6.0, 40.0)  # px; shorter periods sit too close to Nyquist to resample faithfully
    wave = np.sin(2 * math.pi * u / period + rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.5:  # checkers
        wave = wave * np.sin(2 * math.pi * v / (period * rng.uniform(0.5, 2.0)) + rng.uniform(0, 2 * math.pi))
    s = np.clip(wave * rng.uniform(1.0, 8.0), -1.0, 1.0) * 0.5 + 0.5  # hardness: sine .. near-square
    c = _colors(rng, 2)
    tex = c[0] + (c[1] - c[0]) * s[..., None]
    return tex * (0.75 + 0.25 * fractal_noise(rng, h, w))


def _gradient_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        theta = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(theta) + yy * math.sin(theta)
    else:
        t = np.hypot(xx - rng.uniform(0, w), yy - rng.uniform(0, h))
    t = _normalise(t) + 0.35 * fractal_noise(rng, h, w)[..., 0]  # gradients alone carry no texture
    return _colormap(rng, _normalise(t))


def _shapes_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cols = (_colors(rng, 40) * np.iinfo(np.uint8).max).astype(np.uint8)
    canvas = np.empty((h, w, 3), np.uint8)
    canvas[:] = cols[0]
    size = max(h, w)
    for k in range(1, int(rng.integers(8, 40))):
        colour = tuple(int(c) for c in cols[k % len(cols)])
        kind = int(rng.integers(4))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.uniform(0.02, 0.25) * size) + 1
        if kind == 0:
            cv2.circle(canvas, (cx, cy), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            axes = (r, int(r * rng.uniform(0.2, 1.0)) + 1)
            cv2.ellipse(canvas, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            pts = (np.array([cx, cy]) + rng.normal(0, r, (int(rng.integers(3, 7)), 2))).astype(np.int32)
            cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA)
        else:
            end = (cx + int(rng.normal(0, 2 * r)), cy + int(rng.normal(0, 2 * r)))
            cv2.line(canvas, (cx, cy), end, colour, int(rng.integers(1, 6)), cv2.LINE_AA)
    tex = canvas.astype(np.float32) / np.float32(np.iinfo(np.uint8).max)
    return tex * (0.8 + 0.2 * fractal_noise(rng, h, w))


def _photo_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray | None:
    paths = _photo_paths()
    if not paths:
        return None
    photo = _load_photo(paths[int(rng.integers(len(paths)))])
    if photo is None:
        return None
    ph, pw = photo.shape[:2]
    zoom = float(np.exp(rng.uniform(math.log(0.5), math.log(1.6))))  # photo px per texture px
    ch, cw = min(ph, max(2, round(h * zoom))), min(pw, max(2, round(w * zoom)))
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_AREA if ch > h else cv2.INTER_LINEAR
    tex = cv2.resize(crop, (w, h), interpolation=interp).reshape(h, w, -1)
    if tex.shape[2] == 1:  # grey photo: tint it, or run it through a colour ramp
        tex = (_colormap(rng, tex[..., 0]) if rng.random() < 0.5
               else tex * _colors(rng, 1)[0] * 0.6 + tex * 0.4)
    else:
        tex = tex * rng.uniform(0.7, 1.2, 3).astype(np.float32)  # white balance jitter
    if rng.random() < 0.5:
        tex = tex[:, ::-1]
    return np.clip(tex, 0.0, 1.0)


def random_texture(rng: np.random.Generator, h: int, w: int, *, photo_fraction: float = 0.4) -> np.ndarray:
    """[h, w, 3] float32 texture in [0, 1]: a bundled photo (probability ``photo_fraction``) or procedural."""
    tex = None
    if rng.random() < photo_fraction:
        tex = _photo_texture(rng, h, w)
    if tex is None:
        kind = TEXTURE_KINDS[1 + int(rng.choice(4, p=[0.45, 0.2, 0.15, 0.2]))]
        tex = {"noise": _noise_texture, "stripes": _stripes_texture, "gradient": _gradient_texture,
               "shapes": _shapes_texture}[kind](rng, h, w)
    if rng.random() < 0.3:  # extra fine detail, so few regions are flat
        tex = tex * (0.85 + 0.3 * fractal_noise(rng, h, w) - 0.15)
    tex = cv2.GaussianBlur(np.ascontiguousarray(tex, np.float32), (0, 0), _TEXTURE_BLUR)
    return np.clip(tex, 0.0, 1.0)


def shape_alpha(rng: np.random.Generator, side: int, margin: int = 2) -> np.ndarray:
    """[side, side] float32 anti-aliased coverage of a random ellipse, polygon or blob, zero at the border."""
    radius = side / 2.0 - margin
    n = 64
    theta = np.linspace(0, 2 * math.pi, n, endpoint=False)
    kind = int(rng.integers(3))
    if kind == 0:  # ellipse
        a, b = radius, radius * rng.uniform(0.3, 1.0)
        phi = rng.uniform(0, math.pi)
        r = a * b / np.sqrt((b * np.cos(theta - phi)) ** 2 + (a * np.sin(theta - phi)) ** 2)
    elif kind == 1:  # polygon with 3 - 8 corners
        theta = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(3, 9))))
        r = radius * rng.uniform(0.5, 1.0, theta.size)
    else:  # blob: a few low harmonics of the radius
        r = np.ones(n)
        for k in range(1, 5):
            r += rng.uniform(0, 0.35 / k) * np.sin(k * theta + rng.uniform(0, 2 * math.pi))
        r = radius * r / r.max()
    c = side / 2.0
    pts = np.stack([c + r * np.cos(theta), c + r * np.sin(theta)], -1)
    sub = 16  # cv2 subpixel vertices: shift=4
    canvas = np.zeros((side, side), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts * sub).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / np.float32(np.iinfo(np.uint8).max)
