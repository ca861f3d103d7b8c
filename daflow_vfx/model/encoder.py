"""CNN feature and context encoders at 1/8 resolution (RAFT's encoders).

The CNN branch sees the frames at full resolution and keeps the fine, local detail that the
1/16 transformer tokens lack; DA-Flow concatenates both.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(num_groups=max(1, channels // 8), num_channels=channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class ResidualBlock(nn.Module):
    def __init__(self, *, in_channels: int, out_channels: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm1 = _norm(norm, out_channels)
        self.norm2 = _norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.down: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.down = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride), _norm(norm, out_channels)
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
    """

    def __init__(self, *, widths: tuple[int, int, int, int], out_channels: int, norm: str) -> None:
        super().__init__()
        stem, c1, c2, c3 = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 7, stride=2, padding=3), _norm(norm, stem), nn.ReLU(inplace=True)
        )
        self.layer1 = nn.Sequential(
            ResidualBlock(in_channels=stem, out_channels=c1, stride=1, norm=norm),
            ResidualBlock(in_channels=c1, out_channels=c1, stride=1, norm=norm),
        )
        self.layer2 = nn.Sequential(
            ResidualBlock(in_channels=c1, out_channels=c2, stride=2, norm=norm),
            ResidualBlock(in_channels=c2, out_channels=c2, stride=1, norm=norm),
        )
        self.layer3 = nn.Sequential(
            ResidualBlock(in_channels=c2, out_channels=c3, stride=2, norm=norm),
            ResidualBlock(in_channels=c3, out_channels=c3, stride=1, norm=norm),
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
