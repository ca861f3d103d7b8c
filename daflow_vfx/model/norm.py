"""Normalisation whose statistics come from a fixed window, so a model behaves the same at any frame size.

Instance and group norms over the whole frame make a network's features depend on the frame's
size: trained on 128x160 crops, the compact model normalised a 1080p frame with statistics of a
region 50 times larger than any it had seen, and its flow fell apart above the training size
(flow-dev EPE 11.2 on full frames against 2.4 when the same weights ran on 160-pixel tiles;
docs/training/README.md, session 3). Following TLC (Chu et al., "Improving Image Restoration by
Revisiting Global Information Aggregation", ECCV 2022), the statistics here are taken over a
``window`` the size of the training crop around each position instead. The window slides but
stays inside the frame, so on a frame no larger than the window every position uses the whole
frame: exactly instance/group norm, which is what the weights were trained with.

The networks use :func:`block_moments`: windows summed from blocks of a quarter window and the
statistics interpolated between blocks, a few passes over the tensor whatever the window size
(0.45 s against 0.13 s for a whole-frame instance norm on a [3, 32, 544, 960] map, 2 cores).
:func:`local_moments` is the exact per-position form, kept as the reference the tests compare with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _window_sum(x: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """Sum over a length-``k`` window along ``dim`` that slides but never leaves the tensor.

    Position i sums [s, s + k) with s = clamp(i - k // 2, 0, n - k); with n <= k, all n values.
    """
    n = x.shape[dim]
    if n <= k:
        return x.sum(dim=dim, keepdim=True).expand_as(x)
    cs = torch.cat([x.new_zeros(x.shape[:dim] + (1,) + x.shape[dim + 1 :]), x.cumsum(dim)], dim=dim)
    start = (torch.arange(n, device=x.device) - k // 2).clamp(0, n - k)
    return cs.index_select(dim, start + k) - cs.index_select(dim, start)


def local_moments(x: torch.Tensor, window: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``x`` [N, C, H, W] over a ``window`` (h, w) around each position.

    Exact for every position (each window is summed); see :func:`block_moments` for the fast form
    the networks use.
    """
    kh, kw = window
    count = min(kh, x.shape[-2]) * min(kw, x.shape[-1])
    # float32 sums: the difference of two cumulative sums loses precision in half types.
    xf = x.float()
    mean = _window_sum(_window_sum(xf, 2, kh), 3, kw) / count
    sq = _window_sum(_window_sum(xf * xf, 2, kh), 3, kw) / count
    return mean, (sq - mean * mean).clamp_min(0.0)


# Windows are summed from blocks of 1/BLOCKS of the window per side.
BLOCKS = 4


def block_moments(
    x: torch.Tensor, window: tuple[int, int], *, upsample: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``x`` [N, C, H, W] over ``window``, the fast form.

    Summing a window at every position costs ~25 passes over a 1080p feature map (3 s per norm on
    2 cores, measured), but the statistics of a window this large change slowly from one position
    to the next. So blocks of window/4 per side are summed once (average pooling), windows of 4x4
    blocks (sliding but inside the frame, as in :func:`local_moments`) give the statistics at each
    block, and those are interpolated bilinearly to every position (``upsample=False`` returns them
    per block, [N, C, gh, gw]). Where the frame is no larger than the window in a dimension, the
    whole dimension is one window, as in the exact form.
    """
    h, w = x.shape[-2:]
    kh, kw = window
    xf = x.float()
    # A dimension the window covers is pooled whole (one block); others in blocks of window/4.
    bh = h if h <= kh else max(1, kh // BLOCKS)
    bw = w if w <= kw else max(1, kw // BLOCKS)
    nh, nw = (1 if h <= kh else BLOCKS), (1 if w <= kw else BLOCKS)
    ones = xf.new_ones(1, 1, h, w)
    pool = dict(kernel_size=(bh, bw), stride=(bh, bw), ceil_mode=True)
    # Block sums (ceil mode: the last block of a row or column may be partial, so counts are kept).
    count = F.avg_pool2d(ones, **pool, divisor_override=1)  # [1, 1, gh, gw] pixels per block
    s1 = F.avg_pool2d(xf, **pool, divisor_override=1)  # [N, C, gh, gw]
    s2 = F.avg_pool2d(xf * xf, **pool, divisor_override=1)
    c = _window_sum(_window_sum(count, 2, nh), 3, nw)
    mean = _window_sum(_window_sum(s1, 2, nh), 3, nw) / c
    sq = _window_sum(_window_sum(s2, 2, nh), 3, nw) / c
    var = (sq - mean * mean).clamp_min(0.0)
    if upsample and mean.shape[-2:] != (h, w):
        mean = F.interpolate(mean, size=(h, w), mode="bilinear", align_corners=False)
        var = F.interpolate(var, size=(h, w), mode="bilinear", align_corners=False)
    return mean, var


def local_instance_norm(x: torch.Tensor, window: tuple[int, int], eps: float = 1e-5) -> torch.Tensor:
    """Instance norm with statistics over ``window`` (no affine); equals ``F.instance_norm`` on
    frames no larger than the window."""
    # x: [N, C, H, W]
    if x.shape[-2] <= window[0] and x.shape[-1] <= window[1]:
        return F.instance_norm(x, eps=eps)
    xf = x.float()  # statistics and the affine step in float32, in x's memory format
    mean, var = block_moments(xf, window, upsample=False)
    # y = x * a + b with a = 1/std, b = -mean/std: two maps interpolated instead of mean and var
    # followed by an rsqrt over the full-size tensor.
    a = torch.rsqrt(var + eps)
    b = -mean * a
    size = x.shape[-2:]
    # Everything full-size in x's memory format (channels_last on CUDA and where the CPU has native
    # bf16): mixing layouts in one elementwise op falls off the vectorised path, 2.3x slower on a
    # [3, 32, 544, 960] map (2 cores).
    fmt = _memory_format(x)
    if a.shape[-2:] != size:
        a = F.interpolate(a.contiguous(memory_format=fmt), size=size, mode="bilinear", align_corners=False)
        b = F.interpolate(b.contiguous(memory_format=fmt), size=size, mode="bilinear", align_corners=False)
    # A float32 result cast back, not addcmul(..., out=<half-type tensor>): the mixed-dtype kernel
    # took 0.68 s against 0.045 s on that map.
    return torch.addcmul(b, xf, a).to(x.dtype)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class LocalInstanceNorm2d(nn.Module):
    """``nn.InstanceNorm2d`` (affine=False) with statistics over a fixed window; no parameters."""

    def __init__(self, *, window: tuple[int, int], eps: float = 1e-5) -> None:
        super().__init__()
        self.window = (int(window[0]), int(window[1]))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_instance_norm(x, self.window, self.eps)

    def extra_repr(self) -> str:
        return f"window={self.window}, eps={self.eps}"


class LocalLayerNorm2d(nn.Module):
    """``nn.GroupNorm(1, C)`` with its statistics over a fixed window (per-channel affine kept).

    Parameter names (``weight``, ``bias``) match ``nn.GroupNorm``'s, so weights trained with it load.
    """

    def __init__(self, *, channels: int, window: tuple[int, int], eps: float = 1e-5) -> None:
        super().__init__()
        self.window = (int(window[0]), int(window[1]))
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, C, H, W]; statistics over channels and the window
        if x.shape[-2] <= self.window[0] and x.shape[-1] <= self.window[1]:
            return F.group_norm(x, 1, self.weight, self.bias, self.eps)
        xf = x.float()
        # Window means of the channel mean and of the channel mean square, in one pass: [N, 2, H, W].
        moments, _ = block_moments(torch.cat([xf.mean(1, keepdim=True), (xf * xf).mean(1, keepdim=True)], 1),
                                   self.window)
        mean, sq = moments[:, :1], moments[:, 1:]
        var = (sq - mean * mean).clamp_min(0.0)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        return (y * self.weight[:, None, None] + self.bias[:, None, None]).to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.weight.numel()}, window={self.window}, eps={self.eps}"
