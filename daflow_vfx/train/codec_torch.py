"""Batched torch models of JPEG and of a block-based video codec, for degradations made on the device.

Both work on 8-bit code values (floats holding integers, 0 - 255) in blocks of 8 x 8 pixels with an
orthonormal DCT done as two small matrix products, so whole batches run as a handful of einsums.

- :func:`jpeg_round_trip` follows baseline libjpeg as OpenCV calls it: JFIF YCbCr with 4:2:0 chroma
  (2 x 2 averages), the Annex K luminance and chrominance tables scaled by the IJG quality formula,
  rounding quantiser, and the decoder's "fancy" (triangle) chroma upsampling.
- :func:`compress_windows` is a small H.264-like coder over a window: BT.601 limited-range YUV 4:2:0,
  frame 0 intra-coded, every later frame predicted from the previous *decoded* frame by 16 x 16
  macroblock motion compensation at half-pixel precision (vectors from the true flow when it is
  given, else from a small search), the residual DCT-quantised with H.264's step size
  ``0.625 * 2 ** (qp / 6)`` and its dead-zone rounding, and an optional in-loop deblocking filter.
  Blocking that moves with the blocks, smeared texture and drift across frames are therefore real.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from daflow_vfx.train.transfer import upload

U8_MAX = 255.0  # 8-bit code values: what JPEG and video codecs store
_BLOCK = 8  # transform block side, px
_MB = 16  # macroblock side (luma px); also the padding unit, so 4:2:0 chroma stays whole blocks

# ITU-T T.81 Annex K.1 / K.2, natural order (row = vertical frequency), the tables libjpeg scales.
_JPEG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_JPEG_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32
# JFIF full-range RGB -> YCbCr (what libjpeg encodes) and back.
_JFIF_FWD = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
_JFIF_INV = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))
# BT.601 limited range (swscale's default for rgb24 -> yuv420p), per unit RGB, and its inverse.
_BT601_FWD = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))
_BT601_INV = ((1.164383, 0.0, 1.596027), (1.164383, -0.391762, -0.812968), (1.164383, 2.017232, 0.0))
_LUMA_BLACK, _CHROMA_ZERO = 16.0, 128.0
# H.264 Table 8-15: chroma QP for luma QP 30 .. 51 (below 30 they are equal).
_CHROMA_QP = (29, 30, 31, 32, 32, 33, 34, 34, 35, 35, 36, 36, 37, 37, 37, 38, 38, 38, 39, 39, 39, 39)
_QP_MAX = 51.0
# H.264 reference-encoder dead zones: intra levels round at 1/3, inter at 1/6 (fewer small residuals kept).
_DEADZONE_INTRA, _DEADZONE_INTER = 1.0 / 3.0, 1.0 / 6.0
_IP_RATIO = 1.4  # x264's default: an I frame's quantiser step is the P frames' / 1.4
_HALF_PEL = 2.0  # motion vectors are rounded to 1 / _HALF_PEL px
_MV_BITS_WEIGHT = 2.0  # SAD units per bit of vector, per unit of quantiser step (rate-distortion lambda)


# --------------------------------------------------------------------------------------------- blocks
def dct_matrix(device: torch.device | str, dtype: torch.dtype = torch.float32) -> Tensor:
    """[8, 8] orthonormal DCT-II basis, row k = frequency k (JPEG's FDCT is exactly this in 2-D)."""
    n = torch.arange(_BLOCK, device=device, dtype=torch.float64)
    basis = torch.cos(math.pi * (2.0 * n[None, :] + 1.0) * n[:, None] / (2.0 * _BLOCK))
    basis[0] *= math.sqrt(0.5)
    return (basis * math.sqrt(2.0 / _BLOCK)).to(dtype)


def block_dct(x: Tensor) -> Tensor:
    """[N, C, H, W] (H, W multiples of 8) -> coefficients [N, C, H/8, W/8, 8, 8] (vertical, horizontal)."""
    n, c, h, w = x.shape
    d = dct_matrix(x.device, x.dtype)
    blocks = x.reshape(n, c, h // _BLOCK, _BLOCK, w // _BLOCK, _BLOCK).transpose(3, 4)
    return d @ blocks @ d.T


def block_idct(coef: Tensor) -> Tensor:
    """Inverse of :func:`block_dct`: [N, C, H/8, W/8, 8, 8] -> [N, C, H, W]."""
    n, c, hb, wb, _, _ = coef.shape
    d = dct_matrix(coef.device, coef.dtype)
    return (d.T @ coef @ d).transpose(3, 4).reshape(n, c, hb * _BLOCK, wb * _BLOCK)


def _pad_to(x: Tensor, multiple: int) -> Tensor:
    # Edge replication up to whole macroblocks, as encoders extend partial blocks.
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def _colour(x: Tensor, matrix: tuple[tuple[float, ...], ...], offset: tuple[float, float, float]) -> Tensor:
    # x: [N, 3, H, W]; a 3 x 3 colour matrix plus offset, per pixel
    m = upload(matrix, x.device, x.dtype)
    off = upload(offset, x.device, x.dtype).view(1, 3, 1, 1)
    return torch.einsum("oc,nchw->nohw", m, x) + off


def to_code_values(x: Tensor) -> Tensor:
    """[0, 1] floats -> 8-bit code values (rounded, clipped), still float: what an 8-bit file stores."""
    return torch.clamp(torch.floor(x * U8_MAX + 0.5), 0.0, U8_MAX)


# --------------------------------------------------------------------------------------------- JPEG
def jpeg_tables(quality: Tensor) -> tuple[Tensor, Tensor]:
    """Luma and chroma quantisation tables [N, 8, 8] for qualities [N] (IJG scaling, baseline-clamped)."""
    q = torch.clamp(torch.round(quality), 1.0, 100.0)[:, None]
    scale = torch.where(q < 50.0, torch.floor(5000.0 / q), 200.0 - 2.0 * q)  # percent
    out = []
    for base in (_JPEG_LUMA, _JPEG_CHROMA):
        b = upload(base, quality.device, quality.dtype)[None]
        out.append(torch.clamp(torch.floor((b * scale + 50.0) / 100.0), 1.0, U8_MAX).view(-1, 8, 8))
    return out[0], out[1]


def _quantise_blocks(plane: Tensor, table: Tensor) -> Tensor:
    # plane: [N, C, H, W] level-shifted code values; table: [N, 8, 8]; JPEG rounds to the nearest level
    coef = block_dct(plane)
    t = table[:, None, None, None]
    return block_idct(torch.round(coef / t) * t)


def jpeg_round_trip(x: Tensor, quality: Tensor) -> Tensor:
    """Baseline JPEG encode + decode of x [N, 3, H, W] in [0, 1] at qualities [N] (1 - 100)."""
    n, _, h, w = x.shape
    rgb = _pad_to(to_code_values(x), _MB)
    ycc = torch.round(_colour(rgb, _JFIF_FWD, (0.0, _CHROMA_ZERO, _CHROMA_ZERO)))
    luma_t, chroma_t = jpeg_tables(quality.to(x.dtype))
    y = _quantise_blocks(ycc[:, :1] - _CHROMA_ZERO, luma_t)
    c = torch.round(F.avg_pool2d(ycc[:, 1:], 2))  # 4:2:0, libjpeg's h2v2 box average
    c = _quantise_blocks(c - _CHROMA_ZERO, chroma_t)
    y = torch.clamp(torch.round(y + _CHROMA_ZERO), 0.0, U8_MAX)
    c = torch.clamp(torch.round(c + _CHROMA_ZERO), 0.0, U8_MAX)
    c = F.interpolate(c, scale_factor=2, mode="bilinear", align_corners=False)  # "fancy" upsampling
    rgb = _colour(torch.cat([y, c - _CHROMA_ZERO], 1), _JFIF_INV, (0.0, 0.0, 0.0))
    return (torch.clamp(torch.round(rgb), 0.0, U8_MAX) / U8_MAX)[..., :h, :w]


# --------------------------------------------------------------------------------------------- video
def qp_step(qp: Tensor) -> Tensor:
    """H.264's quantiser step (8-bit code values, on orthonormal transform coefficients) for a QP."""
    return 0.625 * torch.pow(2.0, qp / 6.0)


def chroma_qp(qp: Tensor) -> Tensor:
    """H.264's chroma QP for luma QP (Table 8-15, linear between entries; fractional QPs allowed)."""
    table = upload(_CHROMA_QP, qp.device, qp.dtype)
    start = _QP_MAX + 1 - len(_CHROMA_QP)
    pos = torch.clamp(qp - start, 0.0, len(_CHROMA_QP) - 1.0)
    lo = torch.floor(pos).long()
    hi = torch.clamp(lo + 1, max=len(_CHROMA_QP) - 1)
    frac = pos - lo.to(qp.dtype)
    mapped = table[lo] + (table[hi] - table[lo]) * frac
    return torch.where(qp < start, qp, mapped)


def _to_yuv420(frames: Tensor) -> tuple[Tensor, Tensor]:
    """[N, 3, H, W] in [0, 1] -> (Y [N, 1, H', W'], CbCr [N, 2, H'/2, W'/2]) code values, padded to 16.

    Truncating fixed-point conversion and 2 x 2 chroma averages: measured against PyAV's lossless
    x264 round trip this lands within 0.2 dB of the colour loss swscale causes.
    """
    rgb = _pad_to(to_code_values(frames), _MB) / U8_MAX
    yuv = _colour(rgb, _BT601_FWD, (_LUMA_BLACK, _CHROMA_ZERO, _CHROMA_ZERO))
    return torch.floor(yuv[:, :1]), torch.floor(F.avg_pool2d(yuv[:, 1:], 2))


def _from_yuv420(y: Tensor, c: Tensor, size: tuple[int, int]) -> Tensor:
    c = F.interpolate(c, scale_factor=2, mode="nearest") - _CHROMA_ZERO  # swscale's unscaled path
    rgb = _colour(torch.cat([y - _LUMA_BLACK, c], 1), _BT601_INV, (0.0, 0.0, 0.0))
    return (torch.clamp(torch.round(rgb), 0.0, U8_MAX) / U8_MAX)[..., :size[0], :size[1]]


def _code_residual(residual: Tensor, step: Tensor, deadzone: float) -> tuple[Tensor, Tensor]:
    """Dead-zone quantised residual [B, C, H, W] (code values; step [B]) and which 8 x 8 blocks kept any
    coefficient, [B, C, H/8, W/8] bool (an all-zero block is what an encoder skips)."""
    coef = block_dct(residual)
    s = step.view(-1, 1, 1, 1, 1, 1)
    level = torch.sign(coef) * torch.floor(coef.abs() / s + deadzone)
    return block_idct(level * s), (level != 0).flatten(-2).any(-1)


def _edges(coded: Tensor, mv: Tensor) -> tuple[Tensor, Tensor]:
    """Which block edges the deblocking filter touches, H.264's bS > 0 rule: either block has
    coefficients, or their vectors differ by a pixel or more. coded: [B, 1, Hb, Wb] bool; mv: [B, 2, Hb, Wb].
    Returns (vertical edges [B, 1, Hb, Wb-1], horizontal edges [B, 1, Hb-1, Wb])."""
    vertical = (coded[..., :-1] | coded[..., 1:]
                | ((mv[..., :-1] - mv[..., 1:]).abs().amax(1, keepdim=True) >= 1))
    horizontal = (coded[..., :-1, :] | coded[..., 1:, :]
                  | ((mv[..., :-1, :] - mv[..., 1:, :]).abs().amax(1, keepdim=True) >= 1))
    return vertical, horizontal


def _deblock_axis(x: Tensor, qp: Tensor, luma: bool, edges: Tensor | None) -> Tensor:
    """H.264's normal (bS < 4) edge filter across the vertical block edges of x [B, C, H, W].

    alpha, beta and tc0 follow smooth fits of the standard's tables (alpha ~ 0.8 (2^(qp/6) - 1),
    beta ~ qp / 2 - 7, tc0 ~ 1.1^(qp - 22)), so a low QP leaves edges alone and a high one smooths them.
    edges: [B, 1, H/8, W/8 - 1] bool, the edges to filter (None: all, as in an intra frame).
    """
    q = qp.view(-1, 1, 1, 1)
    alpha = 0.8 * (torch.pow(2.0, q / 6.0) - 1.0)
    beta = torch.clamp(0.5 * q - 7.0, min=0.0)
    tc0 = torch.floor(torch.pow(1.1, q - 22.0))
    xb = x.unflatten(-1, (-1, _BLOCK))  # [B, C, H, W/8, 8]
    p2, p1, p0 = xb[..., :-1, 5], xb[..., :-1, 6], xb[..., :-1, 7]
    q0, q1, q2 = xb[..., 1:, 0], xb[..., 1:, 1], xb[..., 1:, 2]
    on = ((p0 - q0).abs() < alpha) & ((p1 - p0).abs() < beta) & ((q1 - q0).abs() < beta)
    if edges is not None:
        on = on & edges.repeat_interleave(_BLOCK, dim=2)
    ap, aq = (p2 - p0).abs() < beta, (q2 - q0).abs() < beta
    tc = tc0 + (ap.to(x.dtype) + aq.to(x.dtype) if luma else 1.0)
    delta = torch.clamp(torch.floor(((q0 - p0) * 4.0 + (p1 - q1) + 4.0) / 8.0), -tc, tc) * on
    out = xb.clone()
    out[..., :-1, 7] = p0 + delta
    out[..., 1:, 0] = q0 - delta
    if luma:
        mid = torch.floor((p0 + q0 + 1.0) / 2.0)
        out[..., :-1, 6] = p1 + torch.clamp(torch.floor((p2 + mid - 2.0 * p1) / 2.0), -tc0, tc0) * (on & ap)
        out[..., 1:, 1] = q1 + torch.clamp(torch.floor((q2 + mid - 2.0 * q1) / 2.0), -tc0, tc0) * (on & aq)
    return torch.clamp(out.flatten(-2), 0.0, U8_MAX)


def _deblock(x: Tensor, qp: Tensor, luma: bool, edges: tuple[Tensor, Tensor] | None) -> Tensor:
    vertical, horizontal = edges if edges is not None else (None, None)
    x = _deblock_axis(x, qp, luma, vertical)  # vertical edges, then horizontal ones (the standard's order)
    t = None if horizontal is None else horizontal.transpose(-1, -2)
    return _deblock_axis(x.transpose(-1, -2), qp, luma, t).transpose(-1, -2)


def _shift(plane: Tensor, mv: Tensor, block: int) -> Tensor:
    """plane [B, C, H, W] sampled at x + mv of each block: mv [B, 2, H/block, W/block] px (x, y).

    Bilinear, so half-pel vectors average neighbours as MPEG's half-pel filter does; beyond the
    frame the edge repeats (unrestricted motion vectors).
    """
    b, _, h, w = plane.shape
    disp = mv.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)  # [B, 2, H, W]
    ys = torch.arange(h, device=plane.device, dtype=plane.dtype)
    xs = torch.arange(w, device=plane.device, dtype=plane.dtype)
    gx = (xs.view(1, 1, w) + disp[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys.view(1, h, 1) + disp[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return F.grid_sample(plane, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def _shifted(vectors: Tensor, dx: float, dy: float) -> Tensor:
    """Motion vectors [B, 2, h, w] plus (dx, dy), with scalar adds (no host-to-device copy)."""
    return torch.cat([vectors[:, :1] + dx, vectors[:, 1:] + dy], 1)


def _pick(cur: Tensor, ref: Tensor, candidates: list[Tensor], step: Tensor) -> Tensor:
    """The cheapest of K candidate vector fields [B, 2, Hm, Wm] per macroblock: SAD of the prediction
    plus a rate term for the vector's length. All candidates are tried in one batched warp."""
    k = len(candidates)
    stacked = torch.stack(candidates, 0)  # [K, B, 2, Hm, Wm]
    b = cur.shape[0]
    pred = _shift(ref.repeat(k, 1, 1, 1), stacked.flatten(0, 1), _MB).unflatten(0, (k, b))  # [K, B, 1, H, W]
    mean_abs = F.avg_pool2d((cur[None] - pred).abs().flatten(0, 1), _MB).unflatten(0, (k, b))[:, :, 0]
    sad = mean_abs * (_MB * _MB)  # [K, B, Hm, Wm]
    bits = 2.0 * torch.log2(1.0 + _HALF_PEL * stacked.abs()).sum(2)  # [K, B, Hm, Wm]
    cost = sad + _MV_BITS_WEIGHT * step.view(1, -1, 1, 1) * bits
    best = cost.argmin(0)  # [B, Hm, Wm]; ties go to the earlier candidate (zero first)
    return torch.gather(stacked, 0, best[None, :, None].expand(1, -1, 2, -1, -1))[0]


def _motion_vectors(cur: Tensor, ref: Tensor, flow: Tensor | None, step: Tensor) -> Tensor:
    """Per-macroblock vectors [B, 2, H/16, W/16] (half-pel) predicting cur [B, 1, H, W] from ref.

    flow: the true forward flow ref -> cur, [B, 2, H, W] padded like the planes, or None. A block of
    cur came from about ``-flow`` (the flow averaged over the block); that vector, its neighbours'
    and zero compete by cost, then the winner is refined by half a pixel, as an encoder's search
    around its predictors would. Without a flow, a +-2 px search replaces the flow's candidates.
    """
    b, _, h, w = cur.shape
    zero = cur.new_zeros(b, 2, h // _MB, w // _MB)
    if flow is not None:
        own = torch.round(-F.avg_pool2d(flow, _MB) * _HALF_PEL) / _HALF_PEL
        padded = F.pad(own, (1, 1, 1, 1), mode="replicate")
        hm, wm = own.shape[-2:]
        candidates = [zero, own] + [padded[..., 1 + dy:1 + dy + hm, 1 + dx:1 + dx + wm]
                                    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    else:
        candidates = [_shifted(zero, dx, dy) for dy in range(-2, 3) for dx in range(-2, 3)]
    best = _pick(cur, ref, candidates, step)
    half = 1.0 / _HALF_PEL
    refine = [_shifted(best, dx, dy) for dy in (-half, 0.0, half) for dx in (-half, 0.0, half)]
    return _pick(cur, ref, refine, step)


def compress_windows(frames: Tensor, *, qp: Tensor, deblock: Tensor,
                     flows_forward: Tensor | None = None) -> Tensor:
    """Encode and decode windows with the block-codec model of the module docstring.

    frames: [B, F, 3, H, W] in [0, 1]; qp: [B] P-frame QP on H.264's 0 - 51 scale; deblock: [B]
    bool, in-loop deblocking on (H.264, VP9) or off (MPEG-2/4); flows_forward: [B, F-1, 2, H, W]
    true flow i -> i+1 that drives the motion vectors, or None. Returns [B, F, 3, H, W] in [0, 1].
    """
    b, f, _, h, w = frames.shape
    y, c = _to_yuv420(frames.flatten(0, 1))
    y, c = y.unflatten(0, (b, f)), c.unflatten(0, (b, f))  # [B, F, 1, H', W'], [B, F, 2, H'/2, W'/2]
    qp = torch.clamp(qp.to(frames.dtype), 0.0, _QP_MAX)
    qpc = chroma_qp(qp)
    step_y, step_c = qp_step(qp), qp_step(qpc)
    on = deblock.view(-1, 1, 1, 1)

    def finish(y_rec: Tensor, c_rec: Tensor, coded_y: Tensor | None, coded_c: Tensor | None, mv: Tensor | None
               ) -> tuple[Tensor, Tensor]:
        y_rec = torch.clamp(torch.round(y_rec), 0.0, U8_MAX)
        c_rec = torch.clamp(torch.round(c_rec), 0.0, U8_MAX)
        edges_y = edges_c = None
        if mv is not None:  # inter frame: only edges with coefficients or a vector step (else all, intra)
            per_block = mv.repeat_interleave(_MB // _BLOCK, 2).repeat_interleave(_MB // _BLOCK, 3)
            edges_y = _edges(coded_y, per_block)
            coded_mb = F.max_pool2d(coded_y.float(), _MB // _BLOCK) > 0
            edges_c = _edges(coded_mb | coded_c.any(1, keepdim=True), mv)
        return (torch.where(on, _deblock(y_rec, qp, True, edges_y), y_rec),
                torch.where(on, _deblock(c_rec, qpc, False, edges_c), c_rec))

    # Frame 0: intra, at the finer I-frame step.
    res_y, _ = _code_residual(y[:, 0] - _CHROMA_ZERO, step_y / _IP_RATIO, _DEADZONE_INTRA)
    res_c, _ = _code_residual(c[:, 0] - _CHROMA_ZERO, step_c / _IP_RATIO, _DEADZONE_INTRA)
    ref_y, ref_c = finish(res_y + _CHROMA_ZERO, res_c + _CHROMA_ZERO, None, None, None)
    out = [_from_yuv420(ref_y, ref_c, (h, w))]
    for k in range(1, f):
        flow = None
        if flows_forward is not None:
            flow = _pad_to(flows_forward[:, k - 1], _MB)
        mv = _motion_vectors(y[:, k], ref_y, flow, step_y)
        pred_y = _shift(ref_y, mv, _MB)
        pred_c = _shift(ref_c, mv / 2.0, _MB // 2)  # chroma at half resolution: half the vector
        res_y, coded_y = _code_residual(y[:, k] - pred_y, step_y, _DEADZONE_INTER)
        res_c, coded_c = _code_residual(c[:, k] - pred_c, step_c, _DEADZONE_INTER)
        ref_y, ref_c = finish(pred_y + res_y, pred_c + res_c, coded_y, coded_c, mv)
        out.append(_from_yuv420(ref_y, ref_c, (h, w)))
    return torch.stack(out, 1)
