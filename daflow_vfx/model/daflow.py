"""DA-Flow assembled from explicit parts, and one factory per variant.

Data flow for one window of F frames (normalised to [-1, 1] outside this module):

    frames --frontend--> latents --lifted MM-DiT (one step at t)--> taps @1/16
    taps --DPT query/key/context--> @1/8  ++ CNN feature / context encoders @1/8
    for each (source, target) pair: correlation pyramid (query_src x key_tgt)
        -> iterative update (GRU or ConvNeXt) -> convex 8x upsampling -> flow + uncertainty

Every per-frame feature is computed once per window and shared by all pairs that use the
frame, so a window of 3 frames costs one backbone pass for its four flows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .corr import build_corr
from .dit import LiftedMMDiT, default_noise
from .dpt import DPTHead
from .encoder import ConvEncoder
from .norm import local_instance_norm
from .update import UpdateBlock, convex_upsample, convex_weights


class PixelFrontend(nn.Module):
    """The compact model's "latent" is the normalised frame itself (no VAE)."""

    latent_channels = 3
    downscale = 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x


class VAEFrontend(nn.Module):
    """SD3's VAE encoder: frames in [-1, 1] to 16-channel latents at 1/8, scaled as SD3 does."""

    latent_channels = 16
    downscale = 8

    def __init__(self, *, vae: nn.Module, scaling_factor: float, shift_factor: float) -> None:
        super().__init__()
        self.vae = vae
        self.scaling_factor = scaling_factor
        self.shift_factor = shift_factor

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # The distribution's mode, not a sample: features must be deterministic.
        z = self.vae.encode(x).latent_dist.mode()
        return (z - self.shift_factor) * self.scaling_factor


@dataclass
class WindowFeatures:
    """Per-frame features of one window, each [B, F, C, H/8, W/8]."""

    query: torch.Tensor
    key: torch.Tensor
    context: torch.Tensor


@dataclass
class FlowOutput:
    """Flows for the requested (source, target) frame pairs of a window."""

    pairs: list[tuple[int, int]]
    flow: torch.Tensor  # [B, P, 2, H, W] pixels, +x right, +y down
    info: torch.Tensor  # [B, P, 3, H, W] raw mixture-of-Laplace parameters (see update.mixture_params)
    iterations: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # per iter (flow, info)


def neighbour_pairs(num_frames: int) -> list[tuple[int, int]]:
    """Forward pairs (i, i+1) then backward pairs (i+1, i)."""
    fwd = [(i, i + 1) for i in range(num_frames - 1)]
    return fwd + [(j, i) for i, j in fwd]


class DAFlow(nn.Module):
    """Degradation-aware flow: diffusion features + CNN features + RAFT refinement.

    ``backbone=None`` (with no DPT heads) gives the CNN-only ablation with the same refinement.
    """

    def __init__(
        self,
        *,
        frontend: nn.Module,
        backbone: LiftedMMDiT | None,
        dpt_query: DPTHead | None,
        dpt_key: DPTHead | None,
        dpt_context: DPTHead | None,
        feature_encoder: ConvEncoder,
        context_encoder: ConvEncoder,
        update_block: UpdateBlock,
        hidden_channels: int,
        corr_levels: int = 4,
        corr_radius: int = 4,
        max_all_pairs: int = 96 * 96,
        feature_timesteps: Sequence[float] = (0.5,),
        noise_seed: int = 0,
        max_backbone_tokens: int | None = None,
        norm_window: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        heads = (dpt_query, dpt_key, dpt_context)
        if (backbone is None) != all(h is None for h in heads) or (backbone is not None and None in heads):
            raise ValueError("backbone and the three DPT heads come together: give all four or none")
        self.frontend = frontend
        self.backbone = backbone
        self.dpt_query = dpt_query
        self.dpt_key = dpt_key
        self.dpt_context = dpt_context
        self.feature_encoder = feature_encoder
        self.context_encoder = context_encoder
        self.update_block = update_block
        self.hidden_channels = hidden_channels
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius
        self.max_all_pairs = max_all_pairs
        self.feature_timesteps = tuple(float(t) for t in feature_timesteps)
        self.noise_seed = noise_seed
        self.max_backbone_tokens = max_backbone_tokens
        # (h, w) in pixels: the DPT matching features are normalised over this window at 1/8
        # (see .norm), like the CNN encoder's, so neither depends on the frame size.
        self.norm_window = norm_window
        self.window_noise = False  # see backbone_taps; the inference estimator sets it
        # refine_step compiled (torch.compile, CUDA graphs on CUDA) by the estimator, or None: eager
        self.compiled_step: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def stride(self) -> int:
        """Frame sizes must be multiples of this (the engine pads)."""
        if self.backbone is None:
            return 8
        return self.backbone.patch_size * self.frontend.downscale

    def backbone_taps(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """One-step (or multi-step averaged) tapped features: each [B*F, C, H/16, W/16]."""
        assert self.backbone is not None
        b, f, _, h, w = frames.shape
        grid = (h // self.stride, w // self.stride)
        flat = frames.reshape(b * f, 3, h, w)
        if self.max_backbone_tokens is not None and grid[0] * grid[1] > self.max_backbone_tokens:
            # Joint attention is quadratic in tokens (F x H/16 x W/16): above the budget the
            # backbone sees a downscaled window and its taps are upsampled back to the 1/16 grid.
            # Fine detail still comes from the full-resolution CNN branch.
            s = (self.max_backbone_tokens / (grid[0] * grid[1])) ** 0.5
            size = (max(1, int(grid[0] * s)) * self.stride, max(1, int(grid[1] * s)) * self.stride)
            flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=True)
        lat = self.frontend.encode(flat)
        lat = lat.reshape(b, f, *lat.shape[1:])  # [B, F, C, h_lat, w_lat]
        # window_noise: one window's noise for each window of the batch, so a batch of windows gives
        # each the features it gets alone (batched inference); training draws it for the whole batch.
        shape = (1, *lat.shape[1:]) if self.window_noise else lat.shape
        noise = default_noise(shape, device=lat.device, dtype=lat.dtype, seed=self.noise_seed)
        acc: list[torch.Tensor] | None = None
        for t in self.feature_timesteps:
            # No clean latent exists at inference: noise the degraded latent itself to time t
            # (SDEdit-style) and read the features of the single denoising step from there.
            z = (1.0 - t) * lat + t * noise
            ts = torch.full((b,), t, device=lat.device, dtype=lat.dtype)
            taps = self.backbone(z, lat, ts).taps
            acc = taps if acc is None else [a + x for a, x in zip(acc, taps, strict=True)]
        assert acc is not None
        n = len(self.feature_timesteps)
        taps = [(a / n).reshape(b * f, *a.shape[2:]) for a in acc]
        if taps[0].shape[-2:] != grid:
            taps = [F.interpolate(t, size=grid, mode="bilinear", align_corners=False) for t in taps]
        return taps

    def _match_norm(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B*F, C, H/8, W/8]
        if self.norm_window is None:
            return F.instance_norm(x)
        return local_instance_norm(x, (self.norm_window[0] // 8, self.norm_window[1] // 8))

    def extract(self, frames: torch.Tensor) -> WindowFeatures:
        """Per-frame query/key/context features of a window ([B, F, 3, H, W], normalised)."""
        b, f, _, h, w = frames.shape
        if h % self.stride or w % self.stride:
            raise ValueError(f"frame size {h}x{w} must be a multiple of {self.stride}; the engine pads")
        flat = frames.reshape(b * f, 3, h, w)
        fmap = self.feature_encoder(flat)  # [B*F, Df, H/8, W/8]
        ctx = self.context_encoder(flat)  # [B*F, hidden + Dc, H/8, W/8]
        query = key = fmap
        if self.backbone is not None:
            assert self.dpt_query is not None and self.dpt_key is not None and self.dpt_context is not None
            taps = self.backbone_taps(frames)
            # At initialisation the DPT outputs are ~20x smaller than the CNN matching features
            # (std 0.1 vs 1.8, measured), so the correlation would ignore the diffusion features
            # until the heads grew. Instance-normalising them puts both halves on one scale.
            query = torch.cat([fmap, self._match_norm(self.dpt_query(taps))], dim=1)
            key = torch.cat([fmap, self._match_norm(self.dpt_key(taps))], dim=1)
            ctx = torch.cat([ctx, self.dpt_context(taps)], dim=1)

        def per_frame(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, f, *x.shape[1:])

        return WindowFeatures(query=per_frame(query), key=per_frame(key), context=per_frame(ctx))

    def refine(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        context: torch.Tensor,
        *,
        iters: int,
        flow_init: torch.Tensor | None = None,
        corr_impl: str = "auto",
        return_all: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """RAFT refinement for N pairs: query/key/context [N, C, h, w] -> flow [N, 2, 8h, 8w]."""
        n, _, h, w = query.shape
        corr_fn = build_corr(
            query.float(),
            key.float(),
            levels=self.corr_levels,
            radius=self.corr_radius,
            impl=corr_impl,
            max_all_pairs=self.max_all_pairs,
        )
        hidden = torch.tanh(context[:, : self.hidden_channels])
        inp = F.relu(context[:, self.hidden_channels :])
        ys, xs = torch.meshgrid(
            torch.arange(h, device=query.device, dtype=torch.float32),
            torch.arange(w, device=query.device, dtype=torch.float32),
            indexing="ij",
        )
        coords0 = torch.stack([xs, ys])[None].expand(n, 2, h, w)  # [N, 2, h, w] (x, y)
        coords1 = coords0.clone()
        init_lo = None
        if flow_init is not None:
            # flow_init: [N, 2, 8h, 8w] in full-resolution pixels -> grid units at 1/8.
            init_lo = F.interpolate(flow_init.float(), size=(h, w), mode="area") / 8.0
            coords1 = coords1 + init_lo
        steps: list[tuple[torch.Tensor, torch.Tensor]] = []
        flow_up = info_up = None
        step = self.refine_step
        if self.compiled_step is not None and not return_all and not torch.is_grad_enabled():
            step = self.compiled_step  # inference only: training needs every step's gradients
            torch.compiler.cudagraph_mark_step_begin()  # a new window: CUDA graphs may reuse their outputs
        for it in range(iters):
            # As in RAFT, gradients do not flow through the look-up positions between steps.
            coords1 = coords1.detach()
            upsample = return_all or it == iters - 1
            if not upsample:
                hidden, coords1 = step(corr_fn, coords0, coords1, hidden, inp)
                continue
            corr = corr_fn(coords1).to(context.dtype)
            flow = (coords1 - coords0).to(context.dtype)
            hidden, delta, mask, info = self.update_block(hidden, inp, corr, flow, heads=upsample)
            coords1 = coords1 + delta.float()
            if upsample:
                assert mask is not None and info is not None
                weights = convex_weights(mask)
                if init_lo is None:
                    flow_up = convex_upsample((coords1 - coords0).to(mask.dtype), weights, scale=8.0)
                else:
                    # Residual on the full-resolution initial flow: the update's correction is
                    # upsampled and added, so detail of the initial flow finer than the 1/8 grid
                    # survives wherever the network leaves it alone.
                    delta = (coords1 - coords0 - init_lo).to(mask.dtype)
                    flow_up = flow_init.to(mask.dtype) + convex_upsample(delta, weights, scale=8.0)
                info_up = convex_upsample(info, weights.detach())  # see UpdateBlock: no NLL into the trunk
                if return_all:
                    steps.append((flow_up, info_up))
        assert flow_up is not None and info_up is not None
        return flow_up, info_up, steps

    def refine_step(self, corr_fn: Callable[[torch.Tensor], torch.Tensor], coords0: torch.Tensor,
                    coords1: torch.Tensor, hidden: torch.Tensor,
                    inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One refinement iteration without the upsampling heads: look-up, update block, new positions.
        coords: [N, 2, h, w]; hidden, inp: [N, C, h, w]. ``compiled_step`` is this, compiled."""
        corr = corr_fn(coords1).to(inp.dtype)  # [N, levels*K, h, w]
        flow = (coords1 - coords0).to(inp.dtype)
        hidden, delta, _, _ = self.update_block(hidden, inp, corr, flow, heads=False)
        return hidden, coords1 + delta.float()

    def forward(
        self,
        frames: torch.Tensor,
        *,
        pairs: Sequence[tuple[int, int]] | None = None,
        iters: int = 12,
        flow_init: torch.Tensor | Callable[[], torch.Tensor] | None = None,
        corr_impl: str = "auto",
        return_all: bool = False,
    ) -> FlowOutput:
        """Flows for a window.

        Args:
            frames: [B, F, 3, H, W] normalised frames, H and W multiples of :attr:`stride`.
            pairs: (source, target) frame indices; default all forward then all backward neighbours.
            iters: refinement iterations.
            flow_init: [B, P, 2, H, W] warm start (e.g. the previous window's flow), or None; or a
                function returning it, called once the features are extracted, so that a prior
                computed on the host (DIS) overlaps the device's feature pass.
            corr_impl: ``auto`` (all-pairs for small frames, on-demand above ``max_all_pairs``),
                ``all_pairs`` or ``local``.
            return_all: keep every iteration's upsampled prediction (training).
        """
        b, f = frames.shape[:2]
        pair_list = list(pairs) if pairs is not None else neighbour_pairs(f)
        feats = self.extract(frames)
        src = [p[0] for p in pair_list]
        dst = [p[1] for p in pair_list]
        npairs = len(pair_list)

        def gather(x: torch.Tensor, idx: list[int]) -> torch.Tensor:
            # x: [B, F, C, h, w] -> [B*P, C, h, w]. Frames picked by Python index: an index tensor made
            # from a host list would be a blocking copy to the device, stalling the host every forward.
            return torch.stack([x[:, i] for i in idx], dim=1).reshape(b * npairs, *x.shape[2:])

        if callable(flow_init):
            flow_init = flow_init()
        init = None if flow_init is None else flow_init.reshape(b * npairs, *flow_init.shape[2:])
        flow, info, steps = self.refine(
            gather(feats.query, src),
            gather(feats.key, dst),
            gather(feats.context, src),
            iters=iters,
            flow_init=init,
            corr_impl=corr_impl,
            return_all=return_all,
        )

        def unbatch(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, npairs, *x.shape[1:])

        return FlowOutput(
            pairs=pair_list,
            flow=unbatch(flow),
            info=unbatch(info),
            iterations=[(unbatch(fl), unbatch(inf)) for fl, inf in steps],
        )


def _heads(
    *, in_channels: int, num_taps: int, channels: int, query: int, context: int
) -> tuple[DPTHead, ...]:
    return (
        DPTHead(in_channels=in_channels, num_taps=num_taps, channels=channels, out_channels=query),
        DPTHead(in_channels=in_channels, num_taps=num_taps, channels=channels, out_channels=query),
        DPTHead(in_channels=in_channels, num_taps=num_taps, channels=channels, out_channels=context),
    )


# Compact variant sizes, shared by the model and its CNN-only ablation so the two differ only
# in the diffusion branch.
_COMPACT_FEATURE = 128
_COMPACT_HIDDEN = 96
_COMPACT_CONTEXT = 64
_COMPACT_DPT_OUT = 64
_COMPACT_LEVELS, _COMPACT_RADIUS = 4, 3
# The training crop (h, w). Normalisation statistics are taken over a window of this size, so the
# model computes at 4K what it computed on its training crops (whole-frame norms made its flow fall
# apart above the training size; see .norm).
COMPACT_NORM_WINDOW = (128, 160)


def _compact_cnn_and_refinement(*, dpt_context: int, cell: str) -> dict:
    """The CNN encoders and refinement of the compact variant (shared with its ablation)."""
    win = COMPACT_NORM_WINDOW
    return dict(
        feature_encoder=ConvEncoder(
            widths=(32, 32, 64, 96), out_channels=_COMPACT_FEATURE, norm="instance", norm_window=win
        ),
        context_encoder=ConvEncoder(
            widths=(32, 32, 64, 96), out_channels=_COMPACT_HIDDEN + _COMPACT_CONTEXT, norm="none"
        ),
        update_block=UpdateBlock(
            corr_channels=_COMPACT_LEVELS * (2 * _COMPACT_RADIUS + 1) ** 2,
            context_channels=_COMPACT_CONTEXT + dpt_context,
            hidden=_COMPACT_HIDDEN,
            cell=cell,
            norm_window=(win[0] // 8, win[1] // 8),
        ),
        hidden_channels=_COMPACT_HIDDEN,
        norm_window=win,
        corr_levels=_COMPACT_LEVELS,
        corr_radius=_COMPACT_RADIUS,
    )


# The compact backbone's one-step timestep, chosen by `daflow-vfx bench timestep` (docs/benchmarks.md):
# its tapped features match tokens best at the smallest t measured (0.1: 12 px against 39 px at
# t = 0.5), on clean and severe windows alike.
COMPACT_FEATURE_T = 0.1


def daflow_compact(
    *, lift: bool = True, cell: str = "convnext", feature_timesteps: Sequence[float] = (COMPACT_FEATURE_T,)
) -> DAFlow:
    """The CPU-sized DA-Flow (12.6 M parameters): pixel patches instead of the VAE, 6 joint blocks."""
    backbone = LiftedMMDiT(
        in_channels=3,
        patch_size=16,
        dim=192,
        depth=6,
        num_heads=3,
        head_dim=64,
        dual_attention_layers=(0, 1, 2),
        qk_norm="rms_norm",
        # The full model taps {3, 13, 16, 17} of 24; the same relative depths in 6 blocks.
        taps=(1, 3, 4, 5),
        max_frames=8,
        lift=lift,
    )
    q, k, c = _heads(
        in_channels=192, num_taps=4, channels=64, query=_COMPACT_DPT_OUT, context=_COMPACT_DPT_OUT
    )
    return DAFlow(
        frontend=PixelFrontend(),
        backbone=backbone,
        dpt_query=q,
        dpt_key=k,
        dpt_context=c,
        **_compact_cnn_and_refinement(dpt_context=_COMPACT_DPT_OUT, cell=cell),
        feature_timesteps=feature_timesteps,
        # 1024 tokens per frame (a 512x512 frame keeps its full 1/16 grid; larger ones are scaled
        # down). Joint attention is quadratic in tokens, and on 2x-upscaled flow-dev pairs (768x1024
        # to 960x1280) a budget of 1024 gave the same EPE as 2048 (within 0.005 px, clean and severe)
        # for ~4x less attention work; 512 was 0.02 px worse at severe (docs/benchmarks.md).
        max_backbone_tokens=1024,
    )


def daflow_compact_cnn(*, cell: str = "convnext") -> DAFlow:
    """Ablation: the compact model without the diffusion branch (CNN encoders + refinement only)."""
    return DAFlow(
        frontend=PixelFrontend(),
        backbone=None,
        dpt_query=None,
        dpt_key=None,
        dpt_context=None,
        **_compact_cnn_and_refinement(dpt_context=0, cell=cell),
    )


# SD3 VAE (as used by SD3/SD3.5 and DiT4SR): 16 latent channels, no quant convs.
SD3_VAE_SCALING = 1.5305
SD3_VAE_SHIFT = 0.0609


def sd3_vae() -> nn.Module:
    """SD3's VAE architecture with random weights (load the real ones from a local path)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=16,
        norm_num_groups=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=SD3_VAE_SCALING,
        shift_factor=SD3_VAE_SHIFT,
    )


def daflow_full(
    *, lift: bool = True, cell: str = "gru", feature_timesteps: Sequence[float] = (0.5,)
) -> DAFlow:
    # t = 0.5 here is not measured: no DiT4SR weights are available to sweep (see COMPACT_FEATURE_T).
    """DiT4SR dimensions (SD3.5-medium MM-DiT: 24 blocks, 24 heads x 64, dual attention in 0-12)."""
    backbone = LiftedMMDiT(
        in_channels=16,
        patch_size=2,
        dim=1536,
        depth=24,
        num_heads=24,
        head_dim=64,
        dual_attention_layers=tuple(range(13)),
        qk_norm="rms_norm",
        taps=(3, 13, 16, 17),
        max_frames=8,
        lift=lift,
    )
    q, k, c = _heads(in_channels=1536, num_taps=4, channels=256, query=128, context=128)
    return DAFlow(
        frontend=VAEFrontend(vae=sd3_vae(), scaling_factor=SD3_VAE_SCALING, shift_factor=SD3_VAE_SHIFT),
        backbone=backbone,
        dpt_query=q,
        dpt_key=k,
        dpt_context=c,
        feature_encoder=ConvEncoder(widths=(64, 64, 96, 128), out_channels=256, norm="instance"),
        context_encoder=ConvEncoder(widths=(64, 64, 96, 128), out_channels=128 + 128, norm="none"),
        update_block=UpdateBlock(corr_channels=4 * 9**2, context_channels=128 + 128, hidden=128, cell=cell),
        hidden_channels=128,
        corr_levels=4,
        corr_radius=4,
        feature_timesteps=feature_timesteps,
        max_backbone_tokens=8192,
    )
