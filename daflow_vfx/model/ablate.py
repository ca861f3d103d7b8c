"""Ablations of a trained DA-Flow model that leave its weights alone.

:func:`with_zeroed_taps` answers "does the diffusion branch carry weight?" for a trained model: it
returns a second :class:`DAFlow` that shares every part of the original (frontend, DPT heads, CNN
encoders, update block) and every setting, but whose backbone is :class:`ZeroTaps`, a stand-in that
returns zeros where the lifted MM-DiT returns its tapped hidden states. Nothing else changes: the zero
taps still go through the DPT heads (whose biases and convolutions give a constant-ish map) and the
matching features' instance norm, exactly as ``DAFlow.backbone_taps`` returning zeros would. The
original model is not modified, so both can run side by side on the same frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ModelError
from .daflow import DAFlow
from .dit import DiTOutput, LiftedMMDiT

__all__ = ["SHARED_SETTINGS", "ZeroTaps", "with_zeroed_taps"]

# Every DAFlow constructor argument except the backbone; DAFlow keeps each under the same attribute name.
# Listed (not discovered) so a reader sees what the ablated model shares; a test checks the list
# against DAFlow's signature, so a new setting cannot silently fall back to its default here.
SHARED_SETTINGS = (
    "frontend",
    "dpt_query",
    "dpt_key",
    "dpt_context",
    "feature_encoder",
    "context_encoder",
    "update_block",
    "hidden_channels",
    "corr_levels",
    "corr_radius",
    "max_all_pairs",
    "feature_timesteps",
    "noise_seed",
    "max_backbone_tokens",
    "norm_window",
)


class ZeroTaps(nn.Module):
    """Stands in for a :class:`LiftedMMDiT`: same token grid and tap layout, every tap all zeros.

    It has no parameters and runs no blocks. ``patch_size`` keeps ``DAFlow.stride`` (and so the
    engine's padding) what it was; ``dim`` and ``taps`` give the DPT heads inputs of the shape they
    were trained on.
    """

    def __init__(self, *, patch_size: int, dim: int, taps: Sequence[int]) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.dim = dim
        self.taps = tuple(int(t) for t in taps)

    @classmethod
    def like(cls, backbone: LiftedMMDiT) -> ZeroTaps:
        return cls(patch_size=backbone.patch_size, dim=backbone.dim, taps=backbone.taps)

    @property
    def tap_channels(self) -> int:
        return self.dim

    def forward(
        self,
        latents: torch.Tensor,
        cond: torch.Tensor,
        timestep: torch.Tensor,
        *,
        return_velocity: bool = False,
    ) -> DiTOutput:
        """latents, cond: [B, F, C, H, W] (only their shape is read); taps: each [B, F, dim, H/p, W/p]."""
        if return_velocity:
            raise ModelError("a backbone with zeroed taps has no restoration head (return_velocity)")
        b, f, _, h, w = latents.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"latent size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        grid = (h // self.patch_size, w // self.patch_size)
        taps = [latents.new_zeros(b, f, self.dim, *grid) for _ in self.taps]
        return DiTOutput(taps=taps, velocity=None)


def with_zeroed_taps(model: DAFlow) -> DAFlow:
    """A new DAFlow sharing all of ``model`` but its backbone, which is a :class:`ZeroTaps` of its shape.

    The parts are shared, not copied: no extra memory, and the original keeps its own backbone.
    """
    if model.backbone is None:
        raise ModelError("this model has no diffusion backbone, so there are no taps to zero")
    shared = {name: getattr(model, name) for name in SHARED_SETTINGS}
    # DAFlow uses its backbone only through the call and patch_size, which ZeroTaps provides as the
    # lifted MM-DiT does (its annotation names the one real backbone class).
    ablated = DAFlow(backbone=ZeroTaps.like(model.backbone), **shared)  # type: ignore[arg-type]
    # The shared parts are already in the original's mode; the new wrapper must agree with them.
    return ablated.train(model.training)
