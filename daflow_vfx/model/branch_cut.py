"""A DA-Flow model's weights as the weights of its CNN-only twin: the diffusion branch cut off.

The CNN-only ablation (``daflow_compact_cnn``) is the same network without the lifted DiT and its
DPT heads. To compare the two at the same training budget, the CNN-only model starts from the
DA-Flow weights with the branch removed, not from a separate history: the CNN encoders, the
correlation and the update block carry over, and the update cell's weights lose exactly the input
channels that read the DPT context. That is the only tensor whose shape differs.

Channel layout of the update cell's input (see ``UpdateBlock.forward`` and the cells in
``update.py``): ``[hidden | CNN context | DPT context | motion features]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import WeightsError
from .daflow import DAFlow

_BRANCH_PREFIXES = ("backbone.", "dpt_query.", "dpt_key.", "dpt_context.")


def cut_diffusion_branch(state: Mapping[str, torch.Tensor], *, target: DAFlow, source: str
                         ) -> dict[str, torch.Tensor]:
    """``state`` of a DA-Flow model, reshaped to load strictly into the CNN-only ``target``."""
    if target.backbone is not None:
        raise WeightsError(f"{source}: cutting the diffusion branch needs a CNN-only target model")
    if not any(k.startswith("backbone.") for k in state):
        raise WeightsError(f"{source}: these weights have no diffusion branch to cut")
    want = target.state_dict()
    hidden = target.hidden_channels
    # The context encoder's output is [hidden | CNN context]: CNN context channels follow the hidden state.
    cnn_context = target.context_encoder.out.out_channels - hidden
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(_BRANCH_PREFIXES):
            continue
        if key in want and want[key].shape != value.shape:
            if not key.startswith("update_block.cell.") or value.dim() < 2:
                raise WeightsError(f"{source}: tensor {key} has shape {tuple(value.shape)}, the CNN-only "
                                   f"model expects {tuple(want[key].shape)}")
            # value: [out, hidden + cnn_context + dpt_context + motion, kh, kw]
            dpt_context = value.shape[1] - want[key].shape[1]
            start = hidden + cnn_context
            value = torch.cat([value[:, :start], value[:, start + dpt_context:]], dim=1)
        out[key] = value
    return out
