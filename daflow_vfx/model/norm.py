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

Window sums come from integral images (cumulative sums), so the cost is a few passes over the
tensor whatever the window size.
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
    shape = [1] * x.dim()
    shape[dim] = 1
    cs = torch.cat([x.new_zeros(x.shape[:dim] + (1,) + x.shape[dim + 1 :]), x.cumsum(dim)], dim=dim)
    start = (torch.arange(n, device=x.device) - k // 2).clamp(0, n - k)
    return cs.index_select(dim, start + k) - cs.index_select(dim, start)


def local_moments(x: torch.Tensor, window: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``x`` [N, C, H, W] over a ``window`` (h, w) around each position."""
    kh, kw = window
    count = min(kh, x.shape[-2]) * min(kw, x.shape[-1])
    # float32 sums: the difference of two cumulative sums loses precision in half types.
    xf = x.float()
    mean = _window_sum(_window_sum(xf, 2, kh), 3, kw) / count
    sq = _window_sum(_window_sum(xf * xf, 2, kh), 3, kw) / count
    return mean, (sq - mean * mean).clamp_min(0.0)


def local_instance_norm(x: torch.Tensor, window: tuple[int, int], eps: float = 1e-5) -> torch.Tensor:
    """Instance norm with statistics over ``window`` (no affine); equals ``F.instance_norm`` on
    frames no larger than the window."""
    # x: [N, C, H, W]
    if x.shape[-2] <= window[0] and x.shape[-1] <= window[1]:
        return F.instance_norm(x, eps=eps)
    mean, var = local_moments(x, window)
    return ((x.float() - mean) * torch.rsqrt(var + eps)).to(x.dtype)


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
        mean, _ = local_moments(xf.mean(1, keepdim=True), self.window)
        sq, _ = local_moments((xf * xf).mean(1, keepdim=True), self.window)
        var = (sq - mean * mean).clamp_min(0.0)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        return (y * self.weight[:, None, None] + self.bias[:, None, None]).to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.weight.numel()}, window={self.window}, eps={self.eps}"
