import pytest
import torch

from daflow_vfx.model.daflow import DAFlow, PixelFrontend
from daflow_vfx.model.dit import LiftedMMDiT
from daflow_vfx.model.dpt import DPTHead
from daflow_vfx.model.encoder import ConvEncoder
from daflow_vfx.model.update import UpdateBlock


def tiny_daflow(
    *, lift: bool = True, cell: str = "gru", backbone: bool = True, max_tokens: int | None = None
) -> DAFlow:
    """A shrunk DA-Flow built from the same explicit parts as the shipped variants."""
    levels, radius, hidden, ctx, dpt = 2, 2, 16, 8, 8
    heads = [None, None, None]
    dit = None
    if backbone:
        dit = LiftedMMDiT(
            in_channels=3,
            patch_size=16,
            dim=32,
            depth=3,
            num_heads=2,
            head_dim=16,
            dual_attention_layers=(0,),
            qk_norm="rms_norm",
            taps=(0, 1, 2),
            max_frames=4,
            lift=lift,
        )
        heads = [DPTHead(in_channels=32, num_taps=3, channels=8, out_channels=dpt) for _ in range(3)]
    return DAFlow(
        frontend=PixelFrontend(),
        backbone=dit,
        dpt_query=heads[0],
        dpt_key=heads[1],
        dpt_context=heads[2],
        feature_encoder=ConvEncoder(widths=(8, 8, 12, 16), out_channels=16, norm="instance"),
        context_encoder=ConvEncoder(widths=(8, 8, 12, 16), out_channels=hidden + ctx, norm="none"),
        update_block=UpdateBlock(
            corr_channels=levels * (2 * radius + 1) ** 2,
            context_channels=ctx + (dpt if backbone else 0),
            hidden=hidden,
            cell=cell,
        ),
        hidden_channels=hidden,
        corr_levels=levels,
        corr_radius=radius,
        max_backbone_tokens=max_tokens,
    )


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return tiny_daflow()
