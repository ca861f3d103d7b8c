"""CNN feature and context encoders at 1/8 resolution (RAFT's encoders).

The CNN branch sees the frames at full resolution and keeps the fine, local detail that the
1/16 transformer tokens lack; DA-Flow concatenates both.
"""

from __future__ import annotations

import torch
from torch import nn

from .norm import LocalInstanceNorm2d


def _norm(kind: str, channels: int, window: tuple[int, int] | None = None) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels) if window is None else LocalInstanceNorm2d(window=window)
    if kind == "group":
        return nn.GroupNorm(num_groups=max(1, channels // 8), num_channels=channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class ResidualBlock(nn.Module):
    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm: str,
        norm_window: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm1 = _norm(norm, out_channels, norm_window)
        self.norm2 = _norm(norm, out_channels, norm_window)
        self.relu = nn.ReLU(inplace=True)
        self.down: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.down = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride), _norm(norm, out_channels, norm_window)
            )
        else:
            self.down = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        return self.relu(self.down(x) + y)


class ConvEncoder(nn.Module):
    """Stem at 1/2, then three stages of two residual blocks each, down to 1/8.

    Args:
        widths: channels of the stem and of the stages at 1/2, 1/4, 1/8.
        out_channels: channels of the 1/8 output.
        norm: ``instance`` for matching features, ``none``/``group`` for context.
        norm_window: (h, w) in input pixels: instance norms take their statistics over this
            window around each position (see :mod:`.norm`) instead of the whole frame, so
            features do not depend on the frame size. ``None``: whole-frame instance norm.
    """

    def __init__(
        self,
        *,
        widths: tuple[int, int, int, int],
        out_channels: int,
        norm: str,
        norm_window: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        stem, c1, c2, c3 = widths

        def at(stride: int) -> tuple[int, int] | None:
            # the window in pixels of a feature map at 1/stride
            return None if norm_window is None else (norm_window[0] // stride, norm_window[1] // stride)

        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 7, stride=2, padding=3), _norm(norm, stem, at(2)), nn.ReLU(inplace=True)
        )
        self.layer1 = nn.Sequential(
            ResidualBlock(in_channels=stem, out_channels=c1, stride=1, norm=norm, norm_window=at(2)),
            ResidualBlock(in_channels=c1, out_channels=c1, stride=1, norm=norm, norm_window=at(2)),
        )
        self.layer2 = nn.Sequential(
            ResidualBlock(in_channels=c1, out_channels=c2, stride=2, norm=norm, norm_window=at(4)),
            ResidualBlock(in_channels=c2, out_channels=c2, stride=1, norm=norm, norm_window=at(4)),
        )
        self.layer3 = nn.Sequential(
            ResidualBlock(in_channels=c2, out_channels=c3, stride=2, norm=norm, norm_window=at(8)),
            ResidualBlock(in_channels=c3, out_channels=c3, stride=1, norm=norm, norm_window=at(8)),
        )
        self.out = nn.Conv2d(c3, out_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, 3, H, W] -> [N, out_channels, H/8, W/8]
        return self.out(self.layer3(self.layer2(self.layer1(self.stem(x)))))
