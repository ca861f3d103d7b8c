"""DPT heads: tapped transformer features (1/16 of the frame) to dense 1/8 feature maps.

Each head reassembles the tapped layers with 1x1 projections, fuses them from the deepest to the
shallowest with residual convolution units (as DPT's RefineNet-style fusion does), and the last
fusion upsamples 2x so the output sits on the 1/8 grid of the CNN encoders and the correlation.
DA-Flow uses three heads: query (the frame flow starts from), key (the frame it points to) and
context (fed to the update block).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Adds a skip feature to the running feature, refines it, optionally upsamples 2x."""

    def __init__(self, *, channels: int, upsample: bool, skip: bool) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels=channels) if skip else None
        self.unit = ResidualConvUnit(channels=channels)
        self.out = nn.Conv2d(channels, channels, 1)
        self.upsample = upsample

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        if self.skip_unit is not None:
            assert skip is not None
            x = x + self.skip_unit(skip)
        x = self.unit(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.out(x)


class DPTHead(nn.Module):
    """Fuses ``num_taps`` feature maps at 1/16 into one ``out_channels`` map at 1/8."""

    def __init__(self, *, in_channels: int, num_taps: int, channels: int, out_channels: int) -> None:
        super().__init__()
        self.reassemble = nn.ModuleList([nn.Conv2d(in_channels, channels, 1) for _ in range(num_taps)])
        self.fusion = nn.ModuleList(
            [
                # The first block starts from the deepest tap and has no skip input.
                FusionBlock(channels=channels, upsample=i == num_taps - 1, skip=i > 0)
                for i in range(num_taps)
            ]
        )
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, out_channels, 1),
        )

    def forward(self, taps: Sequence[torch.Tensor]) -> torch.Tensor:
        # taps: num_taps x [N, in_channels, h16, w16] -> [N, out_channels, 2*h16, 2*w16]
        feats = [proj(t) for proj, t in zip(self.reassemble, taps, strict=True)]
        # Deepest first: the deepest layer carries the most restored, most global signal.
        x = self.fusion[0](feats[-1], None)
        for block, skip in zip(self.fusion[1:], reversed(feats[:-1]), strict=True):
            x = block(x, skip)
        return self.head(x)
