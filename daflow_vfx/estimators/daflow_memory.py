"""The memory model of a DA-Flow window: what the engine's ``max_memory`` budget relies on.

:func:`working_memory_bytes` counts, from the model's own channel counts, the conservative peak bytes of
one :meth:`~daflow_vfx.estimators.daflow.DAFlowEstimator.estimate` call; the estimator re-exports it.
"""

from __future__ import annotations

import math
from typing import Any

# --------------------------------------------------------------------------------------------------
# memory model

_F32 = 4  # bytes; activations are counted as float32 even under autocast (conservative)
_I64 = 8
MEMORY_SAFETY = 1.25  # allocator rounding and fragmentation, backend temporaries not modelled below
CUDA_WORKSPACE = 256 * 2**20  # cuDNN / cuBLAS workspaces on CUDA


def _conv_out(module: Any) -> int:
    return int(module.out_channels)


def _encoder_floats(encoder: Any, *, frames: int, pixels: int) -> int:
    """Peak floats of one ConvEncoder pass: a copy of the input plus its largest stage, where a residual
    block holds its input and up to four outputs of the stage's width (conv, norm, shortcut, sum);
    the stem and the first stage at 1/2 resolution are the largest for every variant."""
    stem = _conv_out(encoder.stem[0])
    c1 = _conv_out(encoder.layer1[0].conv1)
    c2 = _conv_out(encoder.layer2[0].conv1)
    c3 = _conv_out(encoder.layer3[0].conv1)
    half, quarter, eighth = pixels // 4, pixels // 16, pixels // 64
    stage = max(half * (stem + 4 * c1), half * c1 + quarter * 4 * c2, quarter * c2 + eighth * 4 * c3)
    return frames * (3 * pixels + stage)


def _backbone_floats(model: Any, *, frames: int, height: int, width: int) -> tuple[int, int]:
    """(peak floats of the backbone pass, floats of its taps at the full 1/16 grid).

    Tokens per frame are the 1/16 grid, capped at ``max_backbone_tokens`` (above it the backbone
    sees a downscaled window). Attention is counted as fused ``scaled_dot_product_attention``
    (flash / memory-efficient on CUDA, the blocked flash kernel on CPU): linear in tokens, no
    tokens x tokens score matrix.
    """
    backbone = model.backbone
    stride = model.stride
    grid = (height // stride) * (width // stride)
    tokens = grid if model.max_backbone_tokens is None else min(grid, model.max_backbone_tokens)
    seen = tokens * stride * stride  # pixels per frame the frontend encodes
    dim = backbone.dim
    blocks = backbone.transformer_blocks
    ff = int(blocks[0].ff.net[0].proj.out_features)
    taps = len(backbone.taps)
    frontend = model.frontend
    lat_ch = frontend.latent_channels
    lat_px = seen // (frontend.downscale**2)
    floats = frames * 3 * seen  # the resized copy of the window (or the frames themselves)
    vae = getattr(frontend, "vae", None)
    if vae is not None:
        # the VAE encoder's widest stage at full resolution: about six tensors alive in a resnet block
        floats += frames * 6 * int(vae.config.block_out_channels[0]) * seen
    floats += frames * 4 * lat_ch * lat_px  # latent, noise, noised latent, per-step copy
    seq = frames * tokens  # tokens of one stream; the joint attention runs over both streams
    # Per block, both streams: the two residual streams, adaLN outputs, q/k/v and their norms and
    # concatenations, the attention output and projections (about 26 token-widths per token), plus the
    # feed-forward's hidden width twice (linear and GELU).
    floats += seq * (2 * 26 * dim + 2 * 2 * ff)
    floats += 2 * seq * dim * taps  # the tapped hidden states and their averaged copies
    tap_floats = frames * grid * dim * taps  # taps resized back to the full 1/16 grid
    return floats, tap_floats


def _dpt_floats(head: Any, *, frames: int, height: int, width: int) -> int:
    """Peak floats of one DPT head: reassembled taps and fusion at 1/16, then the 1/8 output stage."""
    ch = _conv_out(head.reassemble[0])
    taps = len(head.reassemble)
    g16 = (height // 16) * (width // 16)
    p8 = (height // 8) * (width // 8)
    return frames * (taps * g16 * ch + 4 * g16 * ch + 5 * p8 * ch)


def _update_floats(model: Any) -> tuple[int, int]:
    """(floats per 1/8 pixel and pair of one refinement iteration, of the final convex upsampling).

    An iteration keeps the hidden state, the context, the correlation and the flow alive and runs three
    stages one after the other, so its peak is the largest stage: the motion encoder, the recurrent
    cell, or the heads (trunk, flow, the 576-channel mask and its scaled copy, uncertainty).
    """
    from ..model.update import SepConvGRU

    ub = model.update_block
    enc = ub.encoder
    corr = model.corr_levels * (2 * model.corr_radius + 1) ** 2
    hid = model.hidden_channels
    first = ub.cell.proj if hasattr(ub.cell, "proj") else ub.cell.convz1
    inputs = int(first.in_channels) - hid  # the cell's input: context + motion features
    c1, c2 = _conv_out(enc.convc1), _conv_out(enc.convc2)
    f1, f2 = _conv_out(enc.convf1), _conv_out(enc.convf2)
    motion_out = _conv_out(enc.conv) + 2
    # conv and ReLU outputs of both branches, their concatenation, the output conv, ReLU and concat
    motion = 2 * (c1 + c2 + f1 + f2) + (c2 + f2) + 3 * motion_out
    if isinstance(ub.cell, SepConvGRU):
        # one separable pass: [h, x], z, r (conv + sigmoid), r*h, [r*h, x], q (conv + tanh), the blend
        cell = 2 * (hid + inputs) + 11 * hid
    else:
        widest = max(_conv_out(b.pw1) for b in ub.cell.blocks)
        # [h, x], projection, one ConvNeXt block (depthwise, norm, pw1, GELU, pw2, scale, residual)
        cell = (hid + inputs) + 2 * hid + 5 * hid + 2 * widest
    mask = _conv_out(ub.mask_head)
    heads = _conv_out(ub.trunk[0]) + 2 * mask + _conv_out(ub.flow_head) + _conv_out(ub.info_head)
    alive = hid + inputs + 2 * corr + 2 + 2  # hidden, x (= context + motion), corr and its cast, flow
    per_iter = alive + max(motion, cell + hid, heads + hid)
    # convex upsampling of flow (2 channels) then uncertainty (3): with the block's outputs alive
    # (hidden, delta, mask, info), the mask's softmax over the 3x3 neighbours, the unfolded values,
    # the broadcast product mask x values and the 8x8 sums and their reordered copies
    scale = mask // 9  # 64 sub-pixels per 1/8 pixel
    outputs = hid + 2 + mask + 3
    upsample = outputs + mask + 9 * 3 + 3 * mask + 2 * 2 * scale + 2 * 3 * scale
    return per_iter, upsample


def working_memory_bytes(
    model: Any,
    *,
    frames: int,
    height: int,
    width: int,
    corr_impl: str = "auto",
    low_precision: bool = False,
    cuda: bool = False,
    flow_init: str | None = None,
    prior_on_device: bool = False,
) -> int:
    """Conservative peak bytes of one DA-Flow window (``frames`` frames of ``height`` x ``width``
    pixels, multiples of the model's stride) through :meth:`DAFlowEstimator.estimate`.

    With ``n`` frames, ``P = 2(n - 1)`` pairs, ``p8 = H/8 * W/8`` feature pixels and every activation
    counted as float32::

        weights   parameters and buffers (+ a 2-byte copy of each parameter under autocast)
        inputs    the window and its normalised copy: 2 * n * 3 * H * W
        extract   per-frame features kept for the refinement (CNN matching and context features, DPT
                  query/key/context, their instance-norms and concatenations) + the largest of: the
                  CNN encoders (widest at 1/2 resolution), the backbone (tokens per frame = the 1/16
                  grid capped at max_backbone_tokens, fused attention, taps), the DPT heads
        refine    features + per-pair gathered query/key/context + hidden state and context + the
                  correlation (all-pairs: P * p8^2 * 4/3 for the pyramid; on demand above
                  max_all_pairs: the pooled key tables plus the look-up temporaries, int64 indices of
                  the (2r+2)^2 neighbours per level and one gathered chunk of
                  min(4096, p8) * (2r+2)^2 * D) + the larger of one update iteration (motion encoder,
                  recurrent cell, heads; channel counts read from the model) and the convex 8x
                  upsampling of flow and uncertainty
        output    the upsampled flow and uncertainty and the confidence computed from them: P*H*W*26
        prior     with ``flow_init="dis"``: the DIS flows on the host and the device, and the residual
                  sum, P*H*W*2*3, plus one DIS solve (128 bytes per pixel); with ``prior_on_device``
                  (:mod:`daflow_vfx.model.dis`, every pair at once) its working set instead of the
                  solve, 80 bytes per pixel and pair (67-70 measured on 128x96 to 512x384 frames),
                  freed before the features are extracted, so it enters the max below

    total = (weights + inputs + prior + max(extract, refine, output[, prior work])) * 1.25 [+ 256 MiB
    workspace on CUDA]. Attention is assumed fused (no tokens x tokens matrix): a backend that falls
    back to the unfused kernel needs more, which the engine's out-of-memory retry catches. The CPU peak
    of torch allocations, measured with the profiler, stays below this and within 3x of it in float32
    (``tests/test_engine_performance.py``).
    """
    n = int(frames)
    pairs = 2 * (n - 1)
    pixels = int(height) * int(width)
    p8 = pixels // 64

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    if low_precision:
        weights += sum(p.numel() * 2 for p in model.parameters() if p.is_floating_point())

    inputs = 2 * n * 3 * pixels

    f_ch = _conv_out(model.feature_encoder.out)
    c_ch = _conv_out(model.context_encoder.out)
    if model.backbone is not None:
        dq = _conv_out(model.dpt_query.head[-1])
        dk = _conv_out(model.dpt_key.head[-1])
        dc = _conv_out(model.dpt_context.head[-1])
    else:
        dq = dk = dc = 0
    query_ch, key_ch, ctx_ch = f_ch + dq, f_ch + dk, c_ch + dc
    # fmap, context, DPT outputs, their instance norms, and the three concatenations
    features = n * p8 * (f_ch + c_ch + (dq + dk + dc) + (dq + dk) + (query_ch + key_ch + ctx_ch))

    stages = [
        _encoder_floats(model.feature_encoder, frames=n, pixels=pixels),
        _encoder_floats(model.context_encoder, frames=n, pixels=pixels),
    ]
    if model.backbone is not None:
        backbone, taps = _backbone_floats(model, frames=n, height=height, width=width)
        dpt = max(_dpt_floats(h, frames=n, height=height, width=width)
                  for h in (model.dpt_query, model.dpt_key, model.dpt_context))
        stages += [backbone + taps, taps + dpt]
    extract = features + max(stages)

    gathered = pairs * p8 * (query_ch + key_ch + ctx_ch)
    if low_precision:
        gathered += pairs * p8 * (query_ch + key_ch)  # the float32 copies the correlation takes
    state = pairs * p8 * (ctx_ch + 2 * 2 + 2)  # hidden + context inputs, coords0/1, flow
    levels, radius = model.corr_levels, model.corr_radius
    window = (2 * radius + 1) ** 2
    side2 = (2 * radius + 2) ** 2
    all_pairs = corr_impl == "all_pairs" or (corr_impl == "auto" and p8 <= model.max_all_pairs)
    if all_pairs:
        corr_static = pairs * p8 * p8 * 4 // 3 + 2 * pairs * p8 * max(query_ch, key_ch)
        lookup = pairs * p8 * (3 * levels * window + 8 * window + 2)
    else:
        chunk = min(4096, p8)
        corr_static = pairs * p8 * key_ch * 8 // 3 + 2 * pairs * levels * key_ch
        index_floats = _I64 // _F32 * 6 + 1  # bx, by, by*w, +bx, full_like, where (int64) + inside
        lookup = pairs * p8 * (2 * index_floats * side2 + 3 * side2 + 8 * window + 3 * levels * window + 8)
        lookup += 2 * pairs * chunk * side2 * key_ch
    per_iter, upsample = _update_floats(model)
    refine = (features + gathered + state + corr_static
              + max(lookup + pairs * p8 * per_iter, pairs * p8 * upsample))

    output = pairs * pixels * (5 + 21 + (5 if low_precision else 0))
    # the device DIS's working set is freed before the features are extracted: it peaks alone
    prior_work = 0
    if flow_init is None:
        prior = 0
    elif prior_on_device:
        prior = pairs * pixels * 2 * 3
        prior_work = pairs * pixels * 80 // _F32
    else:
        prior = pairs * pixels * 2 * 3 + pixels * 128 // _F32

    total = weights + _F32 * (inputs + prior + max(extract, refine, output, prior_work))
    total = int(math.ceil(total * MEMORY_SAFETY))
    if cuda:
        total += CUDA_WORKSPACE
    return total
