"""Real-world degradations of whole batches of windows as torch ops on any device.

The same second-order model as :mod:`daflow_vfx.degrade` (which stays the reference), run on a
batch at once: motion blur along the true flow, round 1 (blur, resize, noise, JPEG), round 2 with
the preset's probability (blur, resize, noise), the final resize back with an optional sinc filter
and the last JPEG in either order, then a video codec over the window. Every sample draws its own
parameters with the reference's own :func:`daflow_vfx.degrade.sample_params`, so the parameter
table (and any later change to it) is shared; only the operations are re-implemented:

- blur kernels (isotropic and anisotropic Gaussian, generalized, plateau, sinc, plus linear
  motion-blur kernels for a share of round-1 blurs: camera shake the reference lacks) are built per
  frame on the device and applied to all B x F x 3 channels at once, in the Fourier domain;
- resizing is separable, one small resampling matrix per frame and axis (batched matrix products),
  reproducing OpenCV's area, bilinear and bicubic (a = -0.75) resampling exactly. Frames shrunk or
  grown by different factors share one canvas:
  each keeps its pixels in the top-left corner and the canvas beyond them mirrors them (OpenCV's
  BORDER_REFLECT_101), so filters see the borders the reference sees;
- Gaussian and Poisson noise, colour or grey, from the caller's torch.Generator;
- JPEG and the video codec come from :mod:`daflow_vfx.train.codec_torch`. The reference's PyAV
  codecs map onto the codec model's QP by measurement (``_codec_qp``).

Only per-sample scalars are drawn on the host (a numpy generator seeded from the torch generator's
state, which never waits for the device); every pixel-sized random field comes from the device
generator.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from daflow_vfx.degrade import BLUR_KINDS, INTERPOLATIONS, PRESETS, DegradeParams, sample_params
from daflow_vfx.degrade import _scaled as scaled_size  # one rule for the reference's minimum side
from daflow_vfx.errors import UsageError
from daflow_vfx.train.codec_torch import compress_windows, jpeg_round_trip
from daflow_vfx.train.transfer import upload

CLEAN = "clean"
_CONCRETE = ("mild", "severe", "extreme")  # "random" picks one of these per sample
_SINC, _LINE, _NO_BLUR = len(BLUR_KINDS), len(BLUR_KINDS) + 1, -1  # kernel codes beyond BLUR_KINDS
LINE_BLUR_PROB = 0.1  # share of round-1 Gaussian-family blurs replaced by a linear motion-blur kernel
# A line of length L has the variance of a Gaussian of sigma L / sqrt(12) along it.
_LINE_PER_SIGMA = math.sqrt(12.0)
_POISSON_PEAK = 256.0  # Real-ESRGAN's Poisson noise counts 2**ceil(log2(256 levels)) photons at white
_GREY = (0.299, 0.587, 0.114)  # OpenCV's RGB2GRAY weights
_MAX_TAPS = 16  # motion-blur taps, as the reference's MotionBlurParams.max_samples
_STILL_STREAK = 0.25  # px; shorter streaks leave the frame as it is (the reference's threshold)
_CANVAS = 16  # canvases are whole macroblocks, so JPEG's 4:2:0 MCUs never need padding
_CUBIC_A = -0.75  # OpenCV's (and torch's) bicubic coefficient
# Codec model QP per reference codec, measured on 96 x 128 windows (each codec alone, 40 windows,
# median PSNR): x264 at CRF 18 / 26 / 35 / 45 gives 34.5 / 31.2 / 27.8 / 23.6 dB, the model 34.6 / 31.2 /
# 27.6 / 23.9 at QP = CRF + 6; VP9 (CRF 26 / 30 / 35: 33.8 / 32.7 / 31.2 dB) needs QP = 0.68 CRF + 8.1.
# mpeg4 and mpeg2video hold 35.5 / 35.8 dB whatever the bits per pixel (over a 3-frame window
# libavcodec's rate control never leaves its starting quantiser), so each gets one QP.
_X264_QP_OFFSET = 6.0
_VP9_QP = (0.68, 8.1)
_FIXED_QP = {"mpeg4": 21.0, "mpeg2video": 20.2}
_DEBLOCKING_CODECS = ("libx264", "libvpx-vp9")  # in-loop filters; x264's ultrafast preset turns its off


# --------------------------------------------------------------------------------------------- helpers
def host_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator seeded from ``generator``'s state (host-side, so no device sync)."""
    digest = hashlib.blake2b(generator.get_state().numpy().tobytes(), digest_size=16).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))


def _lerp_rows(pairs: np.ndarray, frames: int) -> np.ndarray:
    # pairs: [B, 2] (first frame, last frame) -> [B * F] per-frame values, linear in between
    a = np.arange(frames, dtype=np.float64) / max(frames - 1, 1)
    return (pairs[:, :1] + (pairs[:, 1:] - pairs[:, :1]) * a[None]).reshape(-1)


def _subset(x: Tensor, rows: np.ndarray, fn) -> Tensor:
    """Apply ``fn`` to the rows of x picked by the host mask ``rows`` [N]; the others pass through.

    ``fn`` gets (selected rows, their indices as a host array) and must keep the selection's shape.
    """
    idx = np.flatnonzero(rows)
    if idx.size == 0:
        return x
    if idx.size == rows.size:
        return fn(x, idx)
    sel = upload(idx, x.device, torch.int64)
    return x.index_copy(0, sel, fn(x.index_select(0, sel), idx))


# --------------------------------------------------------------------------------------------- kernels
def blur_kernels(kind: Tensor, size: Tensor, sigma_x: Tensor, sigma_y: Tensor, angle: Tensor, beta: Tensor,
                 omega: Tensor, side: int) -> Tensor:
    """[N, side, side] normalised kernels, one per row (all arguments [N]; side odd >= every size).

    kind: an index into BLUR_KINDS, or _SINC (cut-off omega rad/px), or _LINE (length
    sqrt(12) * sigma_x along angle). Same formulas as :func:`daflow_vfx.degrade.gaussian_family_kernel`
    and :func:`daflow_vfx.degrade.sinc_kernel`; a row of size s is zero beyond its s x s centre.
    """
    r = torch.arange(side, device=kind.device, dtype=torch.float32) - (side - 1) / 2.0
    yy, xx = torch.meshgrid(r, r, indexing="ij")  # [side, side]
    xx, yy = xx[None], yy[None]

    def col(t: Tensor) -> Tensor:
        return t.view(-1, 1, 1).float()

    iso = (kind == 0) | (kind == 2) | (kind == 4)
    sy = torch.where(iso, sigma_x, sigma_y)
    th = torch.where(iso, torch.zeros_like(angle), angle)
    c, s = col(torch.cos(th)), col(torch.sin(th))
    u, v = c * xx + s * yy, -s * xx + c * yy  # offsets along the kernel's own axes
    q = (u / col(sigma_x)) ** 2 + (v / col(sy)) ** 2
    k = kind.view(-1, 1, 1)
    b = col(beta)
    gauss = torch.where((k == 2) | (k == 3), torch.exp(-0.5 * torch.pow(q, b)), torch.exp(-0.5 * q))
    gauss = torch.where((k == 4) | (k == 5), 1.0 / (torch.pow(q, b) + 1.0), gauss)
    rad = torch.sqrt(xx * xx + yy * yy)
    w = col(omega)
    sinc = torch.where(rad > 0, w * torch.special.bessel_j1(w * rad) / (2.0 * math.pi * rad.clamp_min(1e-6)),
                       w * w / (4.0 * math.pi))
    length = col(sigma_x) * _LINE_PER_SIGMA
    cl, sl = col(torch.cos(angle)), col(torch.sin(angle))
    along, across = cl * xx + sl * yy, -sl * xx + cl * yy
    # An anti-aliased segment: box along it (soft ends), one-pixel tent across it.
    line = torch.clamp(length / 2.0 + 0.5 - along.abs(), 0.0, 1.0) * torch.clamp(1.0 - across.abs(), 0.0, 1.0)
    out = torch.where(k == _SINC, sinc, torch.where(k == _LINE, line, gauss))
    half = col((size - 1) / 2.0)
    out = out * ((xx.abs() <= half) & (yy.abs() <= half))
    return out / out.sum(dim=(1, 2), keepdim=True)


def _convolve(x: Tensor, kernels: Tensor) -> Tensor:
    """Every channel of row n of x [N, 3, H, W] filtered by kernels[n] ([N, K, K]), mirrored borders.

    Done in the Fourier domain: kernels reach 21 x 21, where that is several times cheaper than a
    direct grouped convolution. The mirrored margin is as wide as the kernel's radius, so the
    transform's wrap-around only touches the margin that is cropped away. All kernels here are
    point-symmetric, so this convolution is also OpenCV's correlation.
    """
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    hp, wp = xp.shape[-2:]
    # Kernel centre moved to the origin, so the product's output is not shifted.
    centred = torch.roll(F.pad(kernels, (0, wp - k, 0, hp - k)), shifts=(-pad, -pad), dims=(-2, -1))
    spectrum = torch.fft.rfft2(xp) * torch.fft.rfft2(centred)[:, None]
    return torch.fft.irfft2(spectrum, s=(hp, wp))[..., pad:pad + h, pad:pad + w]


# --------------------------------------------------------------------------------------------- resize
def _reflect(j: Tensor, n: Tensor) -> Tensor:
    # index j mirrored into [0, n) without repeating the edge (BORDER_REFLECT_101), any distance out
    period = (2 * (n - 1)).clamp_min(1)
    m = torch.remainder(j, period)
    return torch.where(m < n, m, period - m)


def _taps(n_in: Tensor, n_out: Tensor, mode: Tensor, length: int, num_taps: int) -> tuple[Tensor, Tensor]:
    """Source indices and weights [N, length, num_taps] of each output position, per row.

    mode: index into INTERPOLATIONS (area, linear, cubic); positions at or beyond n_out mirror back
    inside it, so the output canvas already holds the reflected border.
    """
    dev = n_in.device
    j = _reflect(torch.arange(length, device=dev)[None], n_out[:, None]).double()  # [N, L]
    scale = (n_in.double() / n_out.double())[:, None, None]  # source px per output px
    t = torch.arange(num_taps, device=dev, dtype=torch.float64)[None, None]
    jj = j[..., None]
    # Bilinear and bicubic: OpenCV's centre alignment, u = (j + 0.5) * scale - 0.5.
    u = (jj + 0.5) * scale - 0.5
    i0 = torch.floor(u)
    f = u - i0
    lin_idx = i0 + t
    lin_w = torch.where(t == 0, 1.0 - f, torch.where(t == 1, f, torch.zeros_like(f)))
    cub_idx = i0 - 1.0 + t
    d = (cub_idx - u).abs()
    a = _CUBIC_A
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0  # |d| <= 1
    far = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a  # 1 < |d| < 2
    cub_w = torch.where(d <= 1.0, near, torch.where(d < 2.0, far, torch.zeros_like(d)))
    cub_w = torch.where(t < 4, cub_w, torch.zeros_like(cub_w))
    # Area: the output pixel's footprint [j, j + 1] * scale, weighted by overlap with each source pixel.
    lo, hi = jj * scale, (jj + 1.0) * scale
    area_idx = torch.floor(lo) + t
    area_w = torch.clamp(torch.minimum(area_idx + 1.0, hi) - torch.maximum(area_idx, lo), min=0.0) / scale
    m = mode.view(-1, 1, 1)
    idx = torch.where(m == 0, area_idx, torch.where(m == 1, lin_idx, cub_idx))
    wts = torch.where(m == 0, area_w, torch.where(m == 1, lin_w, cub_w))
    idx = torch.minimum(idx.clamp_min(0.0), (n_in[:, None, None] - 1).double())  # replicated edges
    return idx.long(), wts.float()


def _resize_matrix(n_in: Tensor, n_out: Tensor, mode: Tensor, length: int, width_in: int, num_taps: int
                   ) -> Tensor:
    # [N, length, width_in]: row n's output position l as weights over its input positions
    idx, wts = _taps(n_in, n_out, mode, length, num_taps)  # [N, L, T]
    columns = torch.arange(width_in, device=idx.device)
    # A sum of one-hot rows rather than scatter_add, whose atomics would make CUDA results vary in the
    # last bit; clamped edge taps add up on the edge pixel either way.
    mat = None
    for t in range(num_taps):
        term = (idx[..., t, None] == columns) * wts[..., t, None]
        mat = term if mat is None else mat + term
    return mat


def resize_rows(x: Tensor, size_in: np.ndarray, size_out: np.ndarray, modes: np.ndarray,
                canvas: tuple[int, int]) -> Tensor:
    """Resize each row of x [N, C, Hc, Wc] from its size_in [N, 2] (h, w; top-left of the canvas) to
    size_out [N, 2] with its mode [N] (index into INTERPOLATIONS), onto a canvas of ``canvas``."""
    dev = x.device
    ratio = np.max(size_in / np.maximum(size_out, 1))
    taps = max(4, int(math.ceil(ratio)) + 2)  # an area footprint of r pixels touches ceil(r) + 1
    m = upload(modes, dev, torch.long)
    hin, win = upload(size_in[:, 0], dev, torch.long), upload(size_in[:, 1], dev, torch.long)
    hout, wout = upload(size_out[:, 0], dev, torch.long), upload(size_out[:, 1], dev, torch.long)
    if np.array_equal(size_in, size_out) and tuple(x.shape[-2:]) == tuple(canvas):
        return x  # nothing changes size (OpenCV returns such frames untouched too)
    mat_w = _resize_matrix(win, wout, m, canvas[1], x.shape[3], taps)  # [N, Wc', Wc]
    mat_h = _resize_matrix(hin, hout, m, canvas[0], x.shape[2], taps)  # [N, Hc', Hc]
    # Separable: columns then rows, each a batched matrix product per row of the batch.
    x = torch.einsum("nchw,nlw->nchl", x, mat_w)
    return torch.einsum("nchw,nlh->nclw", x, mat_h)


def _canvas(sizes: np.ndarray) -> tuple[int, int]:
    top = sizes.max(axis=0)
    return (int(-(-top[0] // _CANVAS) * _CANVAS), int(-(-top[1] // _CANVAS) * _CANVAS))


# --------------------------------------------------------------------------------------------- noise
def _noise(x: Tensor, kinds: np.ndarray, grey: np.ndarray, level: np.ndarray, generator: torch.Generator
           ) -> Tensor:
    """Add each row's noise: kinds [N] (0 none, 1 Gaussian, 2 Poisson), grey [N] bool, level [N]."""
    dev = x.device
    weights = upload(_GREY, dev).view(1, 3, 1, 1)

    def gaussian(rows: Tensor, idx: np.ndarray) -> Tensor:
        n = torch.randn(rows.shape, generator=generator, device=dev, dtype=rows.dtype)
        g = upload(grey[idx], dev, torch.bool).view(-1, 1, 1, 1)
        n = torch.where(g, n[:, :1].expand_as(n), n)
        return rows + n * upload(level[idx], dev).view(-1, 1, 1, 1)

    def poisson(rows: Tensor, idx: np.ndarray) -> Tensor:
        # A non-finite pixel would stop torch.poisson with a device-side assert (a dead run on CUDA);
        # the window generator drops such windows from the loss instead.
        base = torch.nan_to_num(rows, nan=0.0).clamp(0.0, 1.0)
        g = upload(grey[idx], dev, torch.bool).view(-1, 1, 1, 1)
        base = torch.where(g, (base * weights).sum(1, keepdim=True).expand_as(base), base)
        counts = torch.poisson(base * _POISSON_PEAK, generator=generator)
        n = counts / _POISSON_PEAK - base
        n = torch.where(g, n[:, :1].expand_as(n), n)
        return rows + n * upload(level[idx], dev).view(-1, 1, 1, 1)

    x = _subset(x, kinds == 1, gaussian)
    return _subset(x, kinds == 2, poisson)


# --------------------------------------------------------------------------------------------- motion blur
def motion_blur_rows(frames: Tensor, flows: Tensor, shutter: Tensor) -> Tensor:
    """The reference's :func:`daflow_vfx.degrade.motion_blur`, batched.

    frames: [N, 3, H, W]; flows: [N, 2, H, W] the motion of each frame (px per frame); shutter: [N]
    fraction of a frame. Each frame averages n = clip(ceil(streak) + 1, 2, 16) copies of itself
    sampled at x - t v for t evenly over the shutter; streaks under a quarter pixel leave it as is.
    """
    n, _, h, w = frames.shape
    dev, dt = frames.device, frames.dtype
    s = shutter.view(-1, 1, 1, 1).to(dt)
    speed = flows.square().sum(1).sqrt().amax(dim=(1, 2)).view(-1, 1, 1, 1)
    streak = s * speed
    taps = torch.clamp(torch.ceil(streak) + 1.0, 2.0, float(_MAX_TAPS))
    ys = torch.arange(h, device=dev, dtype=dt).view(1, h, 1)
    xs = torch.arange(w, device=dev, dtype=dt).view(1, 1, w)
    acc = torch.zeros_like(frames)
    for k in range(_MAX_TAPS):
        t = (-s / 2.0 + s * k / (taps - 1.0))[:, 0]  # [N, 1, 1]
        gx = (xs - t * flows[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
        gy = (ys - t * flows[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
        sample = F.grid_sample(frames, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border",
                               align_corners=True)
        acc = acc + sample * (k < taps).to(dt)
    return torch.where(streak < _STILL_STREAK, frames, acc / taps)


# --------------------------------------------------------------------------------------------- stages
def _blur_rows(blurs: Sequence, frames: int, line_angle: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Host arrays [B * F] describing each row's kernel; kind _NO_BLUR where the sample has none."""
    cols: dict[str, list] = {k: [] for k in ("kind", "size", "sx", "sy", "angle", "beta", "omega")}
    for i, bp in enumerate(blurs):
        if bp is None:
            values = (_NO_BLUR, 1, (1.0, 1.0), (1.0, 1.0), 0.0, 1.0, (math.pi, math.pi))
        else:
            kind = _SINC if bp.kind == "sinc" else BLUR_KINDS.index(bp.kind)
            angle = bp.angle
            if line_angle is not None and not np.isnan(line_angle[i]) and kind != _SINC:
                kind, angle = _LINE, float(line_angle[i])
            values = (kind, bp.size, bp.sigma_x, bp.sigma_y, angle, bp.beta, bp.omega_c)
        for key, val in zip(cols, values, strict=True):
            cols[key].append(val)
    out = {k: np.repeat(np.asarray(cols[k], np.float64), frames) for k in ("kind", "size", "angle", "beta")}
    for key in ("sx", "sy", "omega"):
        out[key] = _lerp_rows(np.asarray(cols[key], np.float64), frames)
    return out


def _apply_blur(x: Tensor, rows: dict[str, np.ndarray]) -> Tensor:
    def run(sel: Tensor, idx: np.ndarray) -> Tensor:
        dev = sel.device
        side = int(rows["size"][idx].max()) | 1
        k = blur_kernels(upload(rows["kind"][idx], dev, torch.long), upload(rows["size"][idx], dev),
                         upload(rows["sx"][idx], dev), upload(rows["sy"][idx], dev),
                         upload(rows["angle"][idx], dev), upload(rows["beta"][idx], dev),
                         upload(rows["omega"][idx], dev), side)
        return _convolve(sel, k)

    return _subset(x, rows["kind"] != _NO_BLUR, run)


def _noise_rows(noises: Sequence, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kinds = np.repeat([0 if nz is None else (1 if nz.kind == "gaussian" else 2) for nz in noises], frames)
    grey = np.repeat([bool(nz is not None and nz.gray) for nz in noises], frames)
    level = _lerp_rows(np.asarray([(0.0, 0.0) if nz is None else nz.level for nz in noises]), frames)
    return kinds, grey, level


def _jpeg_rows(x: Tensor, qualities: np.ndarray) -> Tensor:
    return jpeg_round_trip(x, upload(qualities, x.device))


def _codec_qp(params: DegradeParams) -> tuple[float, bool]:
    """(QP of the codec model, deblocking on) standing in for the reference's PyAV codec settings."""
    v = params.video
    if v.codec == "libx264":
        return v.crf + _X264_QP_OFFSET, v.speed_preset != "ultrafast"
    if v.codec == "libvpx-vp9":
        return _VP9_QP[0] * v.crf + _VP9_QP[1], True
    return _FIXED_QP[v.codec], v.codec in _DEBLOCKING_CODECS


# --------------------------------------------------------------------------------------------- pipeline
def _degrade_concrete(x: Tensor, params: list[DegradeParams], line: np.ndarray, generator: torch.Generator,
                      flows: Tensor | None) -> Tensor:
    # x: [B, F, 3, H, W] in [0, 1], every sample with its parameters; line: [B] angle of the line kernel
    # replacing the round-1 blur, NaN where there is none
    b, f, _, h, w = x.shape
    dev = x.device
    hw = np.array([h, w])
    rows = x.reshape(b * f, 3, h, w).clamp(0.0, 1.0)
    per_row = np.repeat(np.arange(b), f)  # sample index of each row

    blurred = np.array([p.motion_blur is not None for p in params])
    if flows is not None and f >= 2 and blurred.any():
        shutter = _lerp_rows(np.asarray([p.motion_blur.shutter if p.motion_blur else (0.0, 0.0)
                                         for p in params]), f)
        # the last frame reuses the previous flow (constant velocity), as the reference does
        motion = torch.cat([flows, flows[:, -1:]], 1).reshape(b * f, 2, h, w)

        def mblur(sel: Tensor, idx: np.ndarray) -> Tensor:
            pick = upload(idx, dev, torch.int64)
            return motion_blur_rows(sel, motion.index_select(0, pick), upload(shutter[idx], dev))

        rows = _subset(rows, blurred[per_row], mblur)

    # Round 1 (its blur may be a line kernel instead).
    first = [p.first for p in params]
    rows = _apply_blur(rows, _blur_rows([s.blur for s in first], f, line))
    size1 = np.stack([scaled_size((h, w), s.scale) for s in first])
    modes1 = np.array([INTERPOLATIONS.index(s.interpolation) for s in first])
    rows = resize_rows(rows, np.repeat(hw[None], b * f, 0), np.repeat(size1, f, 0), np.repeat(modes1, f),
                       _canvas(size1))
    rows = _noise(rows, *_noise_rows([s.noise for s in first], f), generator)
    rows = _jpeg_rows(rows, _lerp_rows(np.asarray([s.jpeg_quality for s in first]), f))

    # Round 2 where drawn: its scale is relative to the original size, like round 1's.
    size = size1
    second = [p.second for p in params]
    has2 = np.array([s is not None for s in second])
    if has2.any():
        rows = _apply_blur(rows, _blur_rows([s.blur if s is not None else None for s in second], f))
        size2 = np.stack([scaled_size((h, w), s.scale) if s is not None else size1[i]
                          for i, s in enumerate(second)])
        modes2 = np.array([INTERPOLATIONS.index(s.interpolation) if s is not None else 1 for s in second])
        rows = resize_rows(rows, np.repeat(size1, f, 0), np.repeat(size2, f, 0), np.repeat(modes2, f),
                           _canvas(np.concatenate([size1, size2])))
        rows = _noise(rows, *_noise_rows([s.noise if s is not None else None for s in second], f), generator)
        size = size2

    # Final: back to (H, W) with the optional sinc filter, and the last JPEG before or after it.
    fin = [p.final for p in params]
    sinc = _blur_rows([fp.sinc for fp in fin], f)
    quality = _lerp_rows(np.asarray([fp.jpeg_quality for fp in fin]), f)
    modes = np.repeat([INTERPOLATIONS.index(fp.interpolation) for fp in fin], f)
    jpeg_first = np.repeat([fp.jpeg_first for fp in fin], f)
    size_rows = np.repeat(size, f, 0)

    def back(sel: Tensor, idx: np.ndarray) -> Tensor:
        out = resize_rows(sel, size_rows[idx], np.repeat(hw[None], idx.size, 0), modes[idx], (h, w))
        return _apply_blur(out, {k: v[idx] for k, v in sinc.items()})

    def final(sel: Tensor, idx: np.ndarray) -> Tensor:
        if jpeg_first[idx[0]]:
            return back(_jpeg_rows(sel, quality[idx]), idx)
        return _jpeg_rows(back(sel, idx), quality[idx])

    out = rows.new_empty(b * f, 3, h, w)
    for idx in (np.flatnonzero(jpeg_first), np.flatnonzero(~jpeg_first)):  # the two orders, each batched
        if idx.size:
            pick = upload(idx, dev, torch.int64)
            out.index_copy_(0, pick, final(rows.index_select(0, pick), idx))
    out = out.clamp(0.0, 1.0).view(b, f, 3, h, w)

    coded = np.array([p.video is not None for p in params])
    if coded.any():
        qp_deblock = [_codec_qp(p) if p.video is not None else (0.0, False) for p in params]
        qp = np.array([q for q, _ in qp_deblock])
        deblock = np.array([d for _, d in qp_deblock])

        def codec(sel: Tensor, idx: np.ndarray) -> Tensor:
            fl = None if flows is None or f < 2 else flows.index_select(0, upload(idx, dev, torch.int64))
            return compress_windows(sel, qp=upload(qp[idx], dev),
                                    deblock=upload(deblock[idx], dev, torch.bool), flows_forward=fl)

        out = _subset(out, coded, codec)
    return out


def _check(clean: Tensor, count: int, what: str, generator: torch.Generator, flows_forward: Tensor | None
           ) -> None:
    if clean.ndim != 5 or clean.shape[2] != 3:
        raise UsageError(f"clean must be shaped [B, F, 3, H, W]; got {list(clean.shape)}")
    b, f, _, h, w = clean.shape
    if count != b:
        raise UsageError(f"{what}: give one per window ({b}); got {count}")
    if flows_forward is not None and tuple(flows_forward.shape) != (b, f - 1, 2, h, w):
        raise UsageError(f"flows_forward must be shaped {[b, f - 1, 2, h, w]} for these windows; "
                         f"got {list(flows_forward.shape)}")
    if generator.device.type != clean.device.type:
        raise UsageError(f"generator is on {generator.device}, the windows on {clean.device}; use one device")


def apply_degradations(clean: Tensor, *, params: Sequence[DegradeParams | None], generator: torch.Generator,
                       flows_forward: Tensor | None = None, line_angles: Sequence[float] | None = None
                       ) -> Tensor:
    """Degrade windows with given parameters, one :class:`daflow_vfx.degrade.DegradeParams` (as
    :func:`daflow_vfx.degrade.sample_params` draws them) or None (left clean) per window.

    What :func:`daflow_vfx.degrade.degrade_clip` does with the same parameters, up to the noise
    drawn and the codec model. line_angles: per window, the angle (radians) of a linear motion-blur
    kernel replacing a Gaussian-family round-1 blur of the same sigma, or NaN for none (default).
    clean, generator, flows_forward and the result as in :func:`degrade_windows`.
    """
    _check(clean, len(params), "params", generator, flows_forward)
    b = clean.shape[0]
    todo = np.array([p is not None for p in params])
    lines = np.full(b, np.nan) if line_angles is None else np.asarray(line_angles, np.float64)
    if lines.shape != (b,):
        raise UsageError(f"line_angles: give one per window ({b}); got {lines.size}")
    flows = flows_forward.float() if flows_forward is not None else None

    def run(sel: Tensor, idx: np.ndarray) -> Tensor:
        fl = None
        if flows is not None:
            fl = flows if idx.size == b else flows.index_select(0, upload(idx, sel.device, torch.int64))
        return _degrade_concrete(sel, [params[i] for i in idx], lines[idx], generator, fl)

    out = _subset(clean.float(), todo, run)
    return out.clone() if out is clean else out  # never hand back the caller's own tensor


def degrade_windows(clean: Tensor, *, presets: Sequence[str], generator: torch.Generator,
                    flows_forward: Tensor | None = None) -> Tensor:
    """Degrade a batch of windows, each with its own preset.

    clean: [B, F, 3, H, W] float in [0, 1] on any device; presets: B names, each "clean" (left as
    is), "mild", "severe", "extreme" or "random" (one of the three, drawn per sample); generator: a
    torch.Generator on clean's device, the only source of randomness (same generator state, same
    output on a given device type). flows_forward: [B, F-1, 2, H, W] true flow i -> i+1 (px), which
    enables motion blur and drives the codec's motion vectors. Returns [B, F, 3, H, W] in [0, 1].
    Parameters are drawn per window as the reference draws them, and :data:`LINE_BLUR_PROB` of the
    round-1 blurs become linear motion-blur kernels.
    """
    names = list(presets)
    _check(clean, len(names), "presets", generator, flows_forward)
    unknown = sorted(set(names) - {CLEAN, *PRESETS})
    if unknown:
        raise UsageError(f"presets: use {CLEAN}, {', '.join(PRESETS)}; got {', '.join(map(repr, unknown))}")
    rng = host_rng(generator)
    chosen = [p if p != "random" else _CONCRETE[int(rng.integers(len(_CONCRETE)))] for p in names]
    params = [None if p == CLEAN else sample_params(p, rng) for p in chosen]
    n = len(names)
    lines = np.where(rng.random(n) < LINE_BLUR_PROB, rng.uniform(-math.pi, math.pi, n), np.nan)
    return apply_degradations(clean, params=params, generator=generator, flows_forward=flows_forward,
                              line_angles=lines)
