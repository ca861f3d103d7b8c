"""Layer textures and shape coverage for batched scenes, made on the device.

The torch counterpart of :mod:`daflow_vfx.train.textures`, drawing from the same
distribution: fractal value noise (random lattices upsampled bicubically, 2 - 5 octaves) through
random colour ramps, stripes and checkers, gradients, scattered anti-aliased shapes, and crops of
the photographs bundled with scikit-image (:class:`PhotoBank`, loaded onto the device once). Each
texture is band-limited by a 0.5 px Gaussian so that resampling it stays faithful.

A batch of textures shares one tensor [n, 3, h, w]; sample i's texture is meaningful in its
``extent[i]`` (h_i, w_i) top-left corner, which is where its layer's homography maps from (foreground
layers of different sizes share a tensor as big as the largest). Per-texture scalars (kinds, periods,
colours) come from a host numpy generator; every pixel-sized random field from the device generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from daflow_vfx.train.textures import _load_photo, _photo_paths  # the reference's photo list and loader
from daflow_vfx.train.transfer import upload

PROCEDURAL_KINDS: tuple[str, ...] = ("noise", "stripes", "gradient", "shapes")
_PROCEDURAL_PROBS = (0.45, 0.2, 0.15, 0.2)  # as textures.random_texture
TEXTURE_BLUR = 0.5  # px, textures._TEXTURE_BLUR: a lens-like band limit so resampling stays faithful
_PHOTO_PREFILTER = 0.6  # px; Gaussian before a crop is shrunk (up to 1.6x), in place of OpenCV's INTER_AREA
_DETAIL_PROB = 0.3  # extra fine noise on top, so few regions are flat
_MAX_OCTAVES = 5
_MAX_STOPS = 5  # colour ramps have 2 - 5 stops
_SHAPES = (8, 40)  # scattered shapes per "shapes" texture, as textures._shapes_texture
_SHAPE_CHUNK = 8  # shapes evaluated together: fewer, larger ops, bounded memory
_ALPHA_MARGIN = 2.0  # px of zero coverage around a foreground shape, as textures.shape_alpha
_EPS = 1e-6


@dataclass(frozen=True)
class PhotoBank:
    """The bundled photographs on one device.

    photos: [2P, 3, S, S], the P photos in the top-left corner, edge-replicated beyond (``sharp``),
    then the same pre-filtered for crops that get shrunk (``soft``), so a batch's crops take one
    gather; sizes: host [P, 2] (h, w); grey: host [P] bool.
    """

    photos: Tensor
    sizes: np.ndarray
    grey: np.ndarray

    @classmethod
    def load(cls, device: torch.device) -> PhotoBank | None:
        """The photos scikit-image ships (None when it is not installed or none can be read)."""
        photos = [p for p in (_load_photo(path) for path in _photo_paths()) if p is not None]
        if not photos:
            return None
        side = max(max(p.shape[:2]) for p in photos)
        sharp, soft, sizes, grey = [], [], [], []
        for p in photos:
            h, w = p.shape[:2]
            # Built once on the host with OpenCV (fast there), then moved to the device in one copy.
            rgb = np.ascontiguousarray(np.broadcast_to(p, (h, w, 3)))
            full = cv2.copyMakeBorder(rgb, 0, side - h, 0, side - w, cv2.BORDER_REPLICATE)
            sharp.append(full)
            soft.append(cv2.GaussianBlur(full, (0, 0), _PHOTO_PREFILTER, borderType=cv2.BORDER_REFLECT_101))
            sizes.append((h, w))
            grey.append(p.shape[2] == 1)

        def stack(images: list[np.ndarray]) -> Tensor:
            return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(device)

        return cls(photos=stack(sharp + soft), sizes=np.array(sizes), grey=np.array(grey))

    @property
    def sharp(self) -> Tensor:
        return self.photos[:len(self.sizes)]

    @property
    def soft(self) -> Tensor:
        return self.photos[len(self.sizes):]


# --------------------------------------------------------------------------------------------- helpers
def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of x [N, C, H, W], mirrored borders."""
    radius = max(1, math.ceil(3.0 * sigma))
    r = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    k = k / k.sum()
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return y.view(n, c, h, w)


def hsv_colours(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """[*shape, 3] random RGB colours drawn in HSV (as textures._colors), so dull and saturated both occur."""
    h = rng.uniform(0, 6, shape)
    s, v = rng.uniform(0, 1, shape), rng.uniform(0.1, 1, shape)
    k = (np.arange(3)[::-1] * 2 + 1)  # R, G, B phase offsets 5, 3, 1
    kk = np.mod(k + h[..., None], 6)
    chroma = v[..., None] * s[..., None] * np.clip(np.minimum(kk, 4 - kk), 0, 1)
    return (v[..., None] - chroma).astype(np.float32)


def _grid(h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    return ys, xs


def _inside(extent: Tensor, h: int, w: int) -> Tensor:
    # [n, h, w] bool: the pixels of each texture that its layer uses
    ys, xs = _grid(h, w, extent.device)
    return (ys < extent[:, 0].view(-1, 1, 1)) & (xs < extent[:, 1].view(-1, 1, 1))


def _normalise(x: Tensor, inside: Tensor) -> Tensor:
    # x: [n, C, h, w] -> [0, 1] per texture, over the part of it that is used
    m = inside[:, None]
    lo = torch.where(m, x, torch.inf).amin(dim=(1, 2, 3), keepdim=True)
    hi = torch.where(m, x, -torch.inf).amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(_EPS)


# --------------------------------------------------------------------------------------------- procedural
def fractal_noise(rng: np.random.Generator, generator: torch.Generator, extent: np.ndarray, h: int, w: int,
                  channels: int) -> Tensor:
    """[n, channels, h, w] fractal value noise in [0, 1] (textures.fractal_noise, batched).

    Each texture's coarsest period is drawn from 6 px to half its own extent; octaves halve it
    until 2 px. Lattices are random grids sampled bicubically at texture px / period.
    """
    n = extent.shape[0]
    dev = generator.device
    period = rng.uniform(6.0, np.maximum(8.0, extent.max(axis=1) / 2.0))  # [n]
    octaves = rng.integers(2, _MAX_OCTAVES + 1, n)
    persistence = rng.uniform(0.35, 0.7, n)
    ys, xs = _grid(h, w, dev)
    out = torch.zeros(n, channels, h, w, device=dev)
    for k in range(_MAX_OCTAVES):
        p = period / 2.0**k
        amp = np.where((k < octaves) & (p >= 2.0), persistence**k, 0.0)
        if not amp.any():
            break
        live = p[amp > 0].min()
        gh, gw = int(math.ceil((h - 1) / live)) + 2, int(math.ceil((w - 1) / live)) + 2
        lattice = torch.rand(n, channels, gh, gw, generator=generator, device=dev)
        scale = upload(1.0 / p, dev).view(-1, 1, 1)
        gx = (xs * scale) * (2.0 / (gw - 1)) - 1.0
        gy = (ys * scale) * (2.0 / (gh - 1)) - 1.0
        grid = torch.stack(torch.broadcast_tensors(gx, gy), -1)  # [n, h, w, 2]
        sample = F.grid_sample(lattice, grid, mode="bicubic", padding_mode="border", align_corners=True)
        out = out + sample * upload(amp, dev).view(-1, 1, 1, 1)
    return _normalise(out, _inside(upload(extent, dev), h, w))


def colour_ramp(rng: np.random.Generator, scalar: Tensor) -> Tensor:
    """[n, 1, h, w] in [0, 1] -> [n, 3, h, w] through a random ramp of 2 - 5 colours (textures._colormap)."""
    n = scalar.shape[0]
    stops = rng.integers(2, _MAX_STOPS + 1, n)
    pos = np.sort(rng.random((n, _MAX_STOPS)), axis=1)
    pos[:, 0] = 0.0
    cols = hsv_colours(rng, (n, _MAX_STOPS))
    # Unused stops sit at 1.0 with the last colour, so their segments have no length and no effect.
    k = np.arange(_MAX_STOPS)[None]
    last = stops[:, None] - 1
    pos = np.where(k >= last, 1.0, pos)
    cols = np.where((k > last)[..., None], np.take_along_axis(cols, last[..., None].repeat(3, -1), 1), cols)
    dev = scalar.device
    p, c = upload(pos, dev), upload(cols, dev)  # [n, S], [n, S, 3]
    out = c[:, 0].view(n, 3, 1, 1).expand(n, 3, *scalar.shape[-2:])
    for s in range(_MAX_STOPS - 1):
        span = (p[:, s + 1] - p[:, s]).view(n, 1, 1, 1)
        t = torch.clamp((scalar - p[:, s].view(n, 1, 1, 1)) / span.clamp_min(_EPS), 0.0, 1.0)
        out = out + (c[:, s + 1] - c[:, s]).view(n, 3, 1, 1) * t * (span > 0)
    return out


def _noise_texture(rng: np.random.Generator, gen: torch.Generator, extent: np.ndarray, h: int, w: int
                   ) -> Tensor:
    ramp = rng.random(extent.shape[0]) < 0.5
    grey = colour_ramp(rng, fractal_noise(rng, gen, extent, h, w, 1))
    colour = fractal_noise(rng, gen, extent, h, w, 3)
    return torch.where(upload(ramp, grey.device).view(-1, 1, 1, 1) > 0, grey, colour)


def _stripes_texture(rng: np.random.Generator, gen: torch.Generator, extent: np.ndarray, h: int, w: int
                     ) -> Tensor:
    n = extent.shape[0]
    dev = gen.device

    def col(a: np.ndarray) -> Tensor:
        return upload(a, dev).view(-1, 1, 1)

    theta = rng.uniform(0, math.pi, n)
    period = rng.uniform(6.0, 40.0, n)  # px; shorter periods sit too close to Nyquist to resample faithfully
    phase, phase2 = rng.uniform(0, 2 * math.pi, n), rng.uniform(0, 2 * math.pi, n)
    checker = rng.random(n) < 0.5
    ratio = rng.uniform(0.5, 2.0, n)
    hardness = rng.uniform(1.0, 8.0, n)
    colours = hsv_colours(rng, (n, 2))
    ys, xs = _grid(h, w, dev)
    c, s = col(np.cos(theta)), col(np.sin(theta))
    u, v = xs * c + ys * s, -xs * s + ys * c
    wave = torch.sin(2 * math.pi * u / col(period) + col(phase))
    cross = torch.sin(2 * math.pi * v / col(period * ratio) + col(phase2))
    wave = torch.where(col(checker.astype(np.float32)) > 0, wave * cross, wave)
    mix = (torch.clamp(wave * col(hardness), -1.0, 1.0) * 0.5 + 0.5)[:, None]  # sine .. near-square
    cc = upload(colours, dev)
    tex = cc[:, 0].view(n, 3, 1, 1) + (cc[:, 1] - cc[:, 0]).view(n, 3, 1, 1) * mix
    return tex * (0.75 + 0.25 * fractal_noise(rng, gen, extent, h, w, 1))


def _gradient_texture(rng: np.random.Generator, gen: torch.Generator, extent: np.ndarray, h: int, w: int
                      ) -> Tensor:
    n = extent.shape[0]
    dev = gen.device
    linear = rng.random(n) < 0.5
    theta = rng.uniform(0, 2 * math.pi, n)
    cx, cy = rng.uniform(0, 1, n) * extent[:, 1], rng.uniform(0, 1, n) * extent[:, 0]
    ys, xs = _grid(h, w, dev)

    def col(a: np.ndarray) -> Tensor:
        return upload(a, dev).view(-1, 1, 1)

    along = xs * col(np.cos(theta)) + ys * col(np.sin(theta))
    radial = torch.sqrt((xs - col(cx)) ** 2 + (ys - col(cy)) ** 2)
    t = torch.where(col(linear.astype(np.float32)) > 0, along, radial)[:, None]
    inside = _inside(upload(extent, dev), h, w)
    # gradients alone carry no texture
    t = _normalise(t, inside) + 0.35 * fractal_noise(rng, gen, extent, h, w, 1)
    return colour_ramp(rng, _normalise(t, inside))


def _shapes_texture(rng: np.random.Generator, gen: torch.Generator, extent: np.ndarray, h: int, w: int
                    ) -> Tensor:
    """Scattered anti-aliased discs, ellipses, boxes and strokes over a flat colour
    (textures._shapes_texture)."""
    n = extent.shape[0]
    dev = gen.device
    count = rng.integers(*_SHAPES, n)
    m = _SHAPES[1] - 1
    colours = hsv_colours(rng, (n, m + 1))
    kind = rng.integers(0, 4, (n, m))
    cx, cy = rng.random((n, m)) * extent[:, 1:2], rng.random((n, m)) * extent[:, :1]
    r = rng.uniform(0.02, 0.25, (n, m)) * extent.max(axis=1, keepdims=True) + 1.0
    aspect = np.where(kind == 0, 1.0, rng.uniform(0.2, 1.0, (n, m)))
    angle = rng.uniform(0, math.pi, (n, m))
    stroke = rng.uniform(0.5, 3.0, (n, m))  # half width of a line, px
    length = np.abs(rng.normal(0, 2, (n, m))) * r
    ys, xs = _grid(h, w, dev)
    ys, xs = ys[:, None], xs[:, None]  # [1, 1, h, 1], [1, 1, 1, w]
    cc = upload(colours, dev)  # [n, m + 1, 3]
    canvas = cc[:, 0].view(n, 3, 1, 1).expand(n, 3, h, w)
    # Shapes are drawn a chunk at a time ([n, chunk, h, w] per step instead of one small op per shape);
    # within a chunk, painting in order equals canvas * prod(1 - c) + sum_j colour_j c_j prod_{i>j}(1 - c_i).
    for lo in range(0, m, _SHAPE_CHUNK):
        hi = min(m, lo + _SHAPE_CHUNK)

        def col(a: np.ndarray, lo: int = lo, hi: int = hi) -> Tensor:
            return upload(a[:, lo:hi], dev)[..., None, None]  # [n, chunk, 1, 1]

        c, s = col(np.cos(angle)), col(np.sin(angle))
        dx, dy = xs - col(cx), ys - col(cy)
        u, v = dx * c + dy * s, -dx * s + dy * c
        ra, rb = col(r), col(r * aspect)
        g = torch.sqrt((u / ra) ** 2 + (v / rb) ** 2)
        ellipse = (g - 1.0) * g / torch.sqrt((u / ra**2) ** 2 + (v / rb**2) ** 2).clamp_min(_EPS)
        qx, qy = u.abs() - ra, v.abs() - rb
        box = (torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2)
               + torch.minimum(torch.maximum(qx, qy), torch.zeros_like(qx)))
        # a stroke from the centre along the shape's angle
        line = torch.sqrt((u - torch.clamp(u, torch.zeros_like(u), col(length))) ** 2 + v**2) - col(stroke)
        kk = col(kind.astype(np.float32))
        sd = torch.where(kk < 2, ellipse, torch.where(kk < 3, box, line))
        drawn = col((np.arange(m)[None] + 1 < count[:, None]).astype(np.float32))
        cover = torch.clamp(0.5 - sd, 0.0, 1.0) * drawn  # [n, chunk, h, w]
        after = torch.flip(torch.cumprod(torch.flip(1.0 - cover, [1]), 1), [1])  # prod over i >= j
        later = torch.cat([after[:, 1:], torch.ones_like(after[:, :1])], 1)  # prod over i > j
        canvas = canvas * after[:, :1] + torch.einsum("nkc,nkhw->nchw", cc[:, lo + 1:hi + 1], cover * later)
    return canvas * (0.8 + 0.2 * fractal_noise(rng, gen, extent, h, w, 1))


def _photo_texture(rng: np.random.Generator, gen: torch.Generator, extent: np.ndarray, h: int, w: int,
                   bank: PhotoBank) -> Tensor:
    """Random crops of the bundled photos (textures._photo_texture): zoom 0.5 - 1.6 photo px per texture px,
    flips, white-balance jitter; grey photos tinted or run through a colour ramp."""
    n = extent.shape[0]
    dev = gen.device
    pick = rng.integers(0, len(bank.sizes), n)
    ph, pw = bank.sizes[pick, 0], bank.sizes[pick, 1]
    zoom = np.exp(rng.uniform(math.log(0.5), math.log(1.6), n))
    ch = np.minimum(ph, np.maximum(2, np.round(extent[:, 0] * zoom)))
    cw = np.minimum(pw, np.maximum(2, np.round(extent[:, 1] * zoom)))
    y0, x0 = np.floor(rng.random(n) * (ph - ch + 1)), np.floor(rng.random(n) * (pw - cw + 1))
    flip = rng.random(n) < 0.5
    shrink = ch > extent[:, 0]
    ys, xs = _grid(h, w, dev)

    def col(a: np.ndarray) -> Tensor:
        return upload(a, dev).view(-1, 1, 1)

    xs = torch.where(col(flip.astype(np.float32)) > 0, col(extent[:, 1] - 1.0) - xs, xs)
    px = col(x0) + (xs + 0.5) * col(cw / extent[:, 1]) - 0.5  # pixel-area alignment, as cv2.resize
    py = col(y0) + (ys + 0.5) * col(ch / extent[:, 0]) - 0.5
    side = bank.sharp.shape[-1]
    norm = 2.0 / (side - 1)
    grid = torch.stack(torch.broadcast_tensors(px * norm - 1.0, py * norm - 1.0), -1)
    photos = bank.photos.index_select(0, upload(pick + len(bank.sizes) * shrink, dev, torch.int64))
    tex = F.grid_sample(photos, grid, mode="bilinear", padding_mode="border", align_corners=True)
    grey = bank.grey[pick]
    ramp = rng.random(n) < 0.5
    tint = hsv_colours(rng, (n,))
    balance = rng.uniform(0.7, 1.2, (n, 3))
    ramped = colour_ramp(rng, tex[:, :1])
    tinted = tex * (upload(tint, dev).view(n, 3, 1, 1) * 0.6 + 0.4)
    balanced = tex * upload(balance, dev).view(n, 3, 1, 1)
    grey_out = torch.where(upload(ramp.astype(np.float32), dev).view(-1, 1, 1, 1) > 0, ramped, tinted)
    return torch.where(upload(grey.astype(np.float32), dev).view(-1, 1, 1, 1) > 0, grey_out, balanced)


def random_textures(rng: np.random.Generator, generator: torch.Generator, extent: np.ndarray, h: int, w: int,
                    *, photo_fraction: float, bank: PhotoBank | None) -> Tensor:
    """[n, 3, h, w] textures in [0, 1], texture i meaningful in its extent[i] = (h_i, w_i) corner.

    A photo with probability ``photo_fraction`` (when the bank has any), else procedural; 30 % get
    extra fine detail; all are band-limited by :data:`TEXTURE_BLUR` (textures.random_texture, batched).
    """
    n = extent.shape[0]
    dev = generator.device
    photo = (rng.random(n) < photo_fraction) & (bank is not None)
    kind = rng.choice(len(PROCEDURAL_KINDS), size=n, p=_PROCEDURAL_PROBS)
    makers = {"noise": _noise_texture, "stripes": _stripes_texture, "gradient": _gradient_texture,
              "shapes": _shapes_texture}
    out = torch.empty(n, 3, h, w, device=dev)
    groups = [(np.flatnonzero(photo), None)] + [(np.flatnonzero(~photo & (kind == k)), name)
                                                for k, name in enumerate(PROCEDURAL_KINDS)]
    for idx, name in groups:
        if idx.size == 0:
            continue
        if name is None:
            tex = _photo_texture(rng, generator, extent[idx], h, w, bank)
        else:
            tex = makers[name](rng, generator, extent[idx], h, w)
        out.index_copy_(0, upload(idx, dev, torch.int64), tex)
    detail = rng.random(n) < _DETAIL_PROB
    if detail.any():
        idx = np.flatnonzero(detail)
        sel = upload(idx, dev, torch.int64)
        fine = fractal_noise(rng, generator, extent[idx], h, w, 1)
        out.index_copy_(0, sel, out.index_select(0, sel) * (0.7 + 0.3 * fine))
    return gaussian_blur(out, TEXTURE_BLUR).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------- shapes
def shape_alpha(rng: np.random.Generator, sides: np.ndarray, size: int, device: torch.device) -> Tensor:
    """[n, size, size] anti-aliased coverage of a random ellipse, polygon or blob (data.shape_alpha).

    Shape i fills a ``sides[i]`` square in the top-left corner with a 2 px empty margin; coverage is
    0.5 - (signed distance to the outline), clipped to [0, 1], so edges are about a pixel soft.
    """
    n = sides.shape[0]
    radius = sides / 2.0 - _ALPHA_MARGIN
    centre = sides / 2.0
    kind = rng.integers(0, 3, n)
    # Ellipse.
    b_ratio = rng.uniform(0.3, 1.0, n)
    phi = rng.uniform(0, math.pi, n)
    # Star-shaped polygon with 3 - 8 corners (sorted angles, radii 0.5 - 1); unused corners repeat the last.
    corners = rng.integers(3, 9, n)
    ang = np.sort(rng.uniform(0, 2 * math.pi, (n, 8)), axis=1)
    rad = rng.uniform(0.5, 1.0, (n, 8))
    k = np.arange(8)[None]
    last = corners[:, None] - 1
    ang = np.where(k > last, np.take_along_axis(ang, last, 1), ang)
    rad = np.where(k > last, np.take_along_axis(rad, last, 1), rad) * radius[:, None]
    # Blob: low harmonics of the radius, normalised by their maximum (sampled as textures.shape_alpha does).
    amp = rng.uniform(0, 1, (n, 4)) * (0.35 / np.arange(1, 5))[None]
    pha = rng.uniform(0, 2 * math.pi, (n, 4))
    theta64 = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    waves = np.sin(np.arange(1, 5)[None, :, None] * theta64 + pha[:, :, None])  # [n, 4, 64]
    harmonics = 1.0 + (amp[:, :, None] * waves).sum(1)
    blob_norm = radius / harmonics.max(axis=1)

    def col(a: np.ndarray) -> Tensor:
        return upload(a, device).view(-1, 1, 1)

    ys, xs = _grid(size, size, device)
    dx, dy = xs - col(centre), ys - col(centre)
    rho = torch.sqrt(dx * dx + dy * dy)
    theta = torch.atan2(dy, dx)
    # Ellipse: first-order signed distance f / |grad f| of the implicit g - 1.
    c, s = col(np.cos(phi)), col(np.sin(phi))
    u, v = dx * c + dy * s, -dx * s + dy * c
    a_, b_ = col(radius), col(radius * b_ratio)
    g = torch.sqrt((u / a_) ** 2 + (v / b_) ** 2)
    ellipse = (g - 1.0) * g / torch.sqrt((u / a_**2) ** 2 + (v / b_**2) ** 2).clamp_min(_EPS)
    # Polygon: distance to the nearest edge, negative inside (odd number of edge crossings to the left).
    px, py = rad * np.cos(ang), rad * np.sin(ang)  # [n, 8] corners around the centre
    qx, qy = np.roll(px, 1, 1), np.roll(py, 1, 1)  # the previous corner of each
    dist2 = torch.full_like(rho, torch.inf)
    odd = torch.zeros_like(rho, dtype=torch.bool)
    for e in range(8):
        vx, vy = col(px[:, e]), col(py[:, e])
        ex, ey = col(qx[:, e] - px[:, e]), col(qy[:, e] - py[:, e])
        wx, wy = dx - vx, dy - vy
        t = torch.clamp((wx * ex + wy * ey) / (ex * ex + ey * ey).clamp_min(_EPS), 0.0, 1.0)
        dist2 = torch.minimum(dist2, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        c1, c2, c3 = dy >= vy, dy < vy + ey, ex * wy > ey * wx
        odd = odd ^ ((c1 & c2 & c3) | (~c1 & ~c2 & ~c3))
    polygon = torch.sqrt(dist2) * torch.where(odd, -1.0, 1.0)
    # Blob: radial distance, corrected by the outline's slope.
    r_t = torch.ones_like(rho)
    dr_t = torch.zeros_like(rho)
    for h_ in range(4):
        arg = (h_ + 1) * theta + col(pha[:, h_])
        r_t = r_t + col(amp[:, h_]) * torch.sin(arg)
        dr_t = dr_t + col(amp[:, h_] * (h_ + 1)) * torch.cos(arg)
    r_t, dr_t = r_t * col(blob_norm), dr_t * col(blob_norm)
    blob = (rho - r_t) / torch.sqrt(1.0 + (dr_t / rho.clamp_min(_EPS)) ** 2)
    kk = col(kind.astype(np.float32))
    sd = torch.where(kk < 1, ellipse, torch.where(kk < 2, polygon, blob))
    inside = _inside(upload(np.stack([sides, sides], 1), device), size, size)
    return torch.clamp(0.5 - sd, 0.0, 1.0) * inside
