"""Lifted MM-DiT: a DiT4SR-style restoration transformer attending over a whole window of frames.

DiT4SR feeds the degraded (low-quality) image to SD3's MM-DiT as a second token stream beside
the noisy latent stream; every block runs joint attention over both streams. DA-Flow "lifts"
that model to video: the tokens of all F frames of a window are concatenated into one sequence,
so every attention layer is full spatio-temporal attention, while each frame keeps its own
spatial latents, its own 2-D position embedding and a learned per-frame embedding.

The blocks are diffusers' :class:`~diffusers.models.attention.JointTransformerBlock` (the SD3 /
SD3.5 block, including SD3.5's dual attention and RMS qk-norm), which runs its attention through
``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.models.attention import JointTransformerBlock
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.normalization import AdaLayerNormContinuous
from torch import nn


def sincos_2d(h: int, w: int, dim: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding for an h x w token grid.

    Computed on the fly (not a parameter or buffer) so any frame size works and the weights
    file does not depend on the training resolution.
    """
    if dim % 4:
        raise ValueError(f"position embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys = torch.arange(h, device=device, dtype=torch.float32)
    xs = torch.arange(w, device=device, dtype=torch.float32)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # [h, w]
    out_y = gy.reshape(-1, 1) * omega  # [h*w, quarter]
    out_x = gx.reshape(-1, 1) * omega
    emb = torch.cat([out_x.sin(), out_x.cos(), out_y.sin(), out_y.cos()], dim=1)  # [h*w, dim]
    return emb.to(dtype)


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens (SD3's ``pos_embed.proj`` convolution)."""

    def __init__(self, *, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, C, H, W] -> tokens: [N, (H/p)*(W/p), dim]
        return self.proj(x).flatten(2).transpose(1, 2)


@dataclass
class DiTOutput:
    """What one pass of the lifted transformer gives back."""

    taps: list[torch.Tensor]  # each [B, F, dim, h, w] at the token grid (1/16 of the frame)
    velocity: torch.Tensor | None  # [B, F, C_latent, H_lat, W_lat] flow-matching velocity, if asked


class LiftedMMDiT(nn.Module):
    """MM-DiT over a window of frames, with hidden states tapped at chosen layers.

    Args:
        in_channels: channels of the latent the frames are encoded to (3 for pixels, 16 for SD3's VAE).
        patch_size: latent patch size; the token grid is the latent grid divided by it.
        dim: token width (heads x head_dim).
        depth: number of joint-attention blocks built (the restoration model's full depth).
        num_heads, head_dim: attention shape.
        dual_attention_layers: blocks that also run SD3.5's second self-attention on the latent stream.
        qk_norm: ``"rms_norm"`` as in SD3.5, or ``None``.
        taps: block indices whose output hidden states (latent stream) are returned.
        max_frames: size of the learned per-frame embedding table.
        lift: attend jointly over all frames of the window (True) or each frame alone (False).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        head_dim: int,
        dual_attention_layers: Sequence[int] = (),
        qk_norm: str | None = "rms_norm",
        taps: Sequence[int],
        max_frames: int = 8,
        lift: bool = True,
    ) -> None:
        super().__init__()
        if num_heads * head_dim != dim:
            raise ValueError(f"num_heads * head_dim must equal dim ({num_heads} * {head_dim} != {dim})")
        if not taps or max(taps) >= depth or min(taps) < 0:
            raise ValueError(f"taps {tuple(taps)} must be block indices in [0, {depth})")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.dim = dim
        self.taps = tuple(int(t) for t in taps)
        self.lift = lift
        self.max_frames = max_frames
        self.pos_embed = PatchEmbed(in_channels=in_channels, dim=dim, patch_size=patch_size)
        self.cond_embed = PatchEmbed(in_channels=in_channels, dim=dim, patch_size=patch_size)
        self.time_proj = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(in_channels=256, time_embed_dim=dim)
        # Per-frame embedding: the lifted sequence would otherwise not know which frame a token is from.
        self.frame_embed = nn.Embedding(max_frames, dim)
        nn.init.normal_(self.frame_embed.weight, std=0.02)
        dual = set(int(i) for i in dual_attention_layers)
        self.transformer_blocks = nn.ModuleList(
            [
                JointTransformerBlock(
                    dim=dim,
                    num_attention_heads=num_heads,
                    attention_head_dim=head_dim,
                    # As in SD3, the last block only updates the latent stream.
                    context_pre_only=i == depth - 1,
                    qk_norm=qk_norm,
                    use_dual_attention=i in dual,
                )
                for i in range(depth)
            ]
        )
        self.freeze_dead_parameters()
        self.norm_out = AdaLayerNormContinuous(dim, dim, elementwise_affine=False, eps=1e-6)
        self.proj_out = nn.Linear(dim, patch_size * patch_size * in_channels)

    def freeze_dead_parameters(self) -> None:
        """Freeze the last block's context query projection, which never reaches an output.

        The last block only updates the latent stream (as in SD3), so training it would only
        decay dead weights. Called again after ``requires_grad_(True)`` on the whole backbone.
        """
        last_attn = self.transformer_blocks[-1].attn
        for mod in (last_attn.add_q_proj, getattr(last_attn, "norm_added_q", None)):
            if mod is not None:
                mod.requires_grad_(False)

    @property
    def tap_channels(self) -> int:
        return self.dim

    def _embed(self, x: torch.Tensor, embed: PatchEmbed, frame_ids: torch.Tensor) -> torch.Tensor:
        # x: [B, F, C, H, W] -> tokens: [B, F, T, dim]
        b, f, c, h, w = x.shape
        tok = embed(x.reshape(b * f, c, h, w))  # [B*F, T, dim]
        gh, gw = h // self.patch_size, w // self.patch_size
        pos = sincos_2d(gh, gw, self.dim, device=x.device, dtype=tok.dtype)  # [T, dim]
        tok = tok.reshape(b, f, gh * gw, self.dim) + pos
        return tok + self.frame_embed(frame_ids).to(tok.dtype)[None, :, None, :]

    def forward(
        self,
        latents: torch.Tensor,
        cond: torch.Tensor,
        timestep: torch.Tensor,
        *,
        return_velocity: bool = False,
    ) -> DiTOutput:
        """Run the window through the blocks.

        Args:
            latents: [B, F, C, H, W] noisy latent stream (what is being restored).
            cond: [B, F, C, H, W] degraded frames in the same latent space (the conditioning stream).
            timestep: [B] flow-matching time in [0, 1] (1 = pure noise).
            return_velocity: also run the output head (restoration training needs it).
        """
        b, f, c, h, w = latents.shape
        if f > self.max_frames:
            raise ValueError(f"window of {f} frames exceeds max_frames={self.max_frames}")
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"latent size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        gh, gw = h // self.patch_size, w // self.patch_size
        frame_ids = torch.arange(f, device=latents.device)
        x = self._embed(latents, self.pos_embed, frame_ids)  # [B, F, T, dim]
        ctx = self._embed(cond, self.cond_embed, frame_ids)  # [B, F, T, dim]
        temb = self.time_embed(self.time_proj(timestep * 1000.0).to(x.dtype))  # [B, dim]
        t = gh * gw
        if self.lift:
            # Lifting: one sequence of F*T tokens per window, so attention spans space and time.
            x = x.reshape(b, f * t, self.dim)
            ctx = ctx.reshape(b, f * t, self.dim)
        else:
            x = x.reshape(b * f, t, self.dim)
            ctx = ctx.reshape(b * f, t, self.dim)
            temb = temb.repeat_interleave(f, dim=0)

        last_needed = self.depth - 1 if return_velocity else max(self.taps)
        taps: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.transformer_blocks[: last_needed + 1]):
            ctx, x = block(hidden_states=x, encoder_hidden_states=ctx, temb=temb)
            if i in self.taps:
                # x: [B, F*T, dim] or [B*F, T, dim] -> [B, F, dim, gh, gw]
                taps[i] = x.reshape(b, f, gh, gw, self.dim).permute(0, 1, 4, 2, 3)

        velocity = None
        if return_velocity:
            out = self.proj_out(self.norm_out(x, temb))  # [B(*F), T', p*p*C]
            p = self.patch_size
            out = out.reshape(b, f, gh, gw, p, p, c)
            velocity = out.permute(0, 1, 6, 2, 4, 3, 5).reshape(b, f, c, h, w)
        return DiTOutput(taps=[taps[i] for i in self.taps], velocity=velocity)

    @property
    def depth(self) -> int:
        return len(self.transformer_blocks)


def logit_normal_timesteps(n: int, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """SD3's logit-normal training timestep density (mean 0, std 1), in (0, 1)."""
    u = torch.randn(n, generator=generator, device=generator.device if generator is not None else "cpu")
    u = u.to(device)
    return torch.sigmoid(u)


def default_noise(
    shape: Sequence[int], *, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> torch.Tensor:
    """Fixed noise for one-step feature extraction.

    Drawn on the CPU from a seeded generator so the same window gives the same features on any
    device and in any chunk of a farm render.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype)


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
