"""One optimisation step of either stage, shared by the training loop and ``bench train``."""

from __future__ import annotations

import contextlib
import math

import torch

from ..model.daflow import DAFlow
from ..model.dit import logit_normal_timesteps
from .config import StageConfig, TrainConfig
from .losses import epe, flow_matching_loss, sequence_loss


def lr_factor(step: int, stage: StageConfig, *, elapsed_minutes: float | None = None) -> float:
    """Linear warm-up, then cosine decay to 10 % at the stage's end.

    The end is the stage's last step, or, for a stage with a time budget, the end of its minutes
    (``elapsed_minutes`` is then the time spent in the stage so far).
    """
    if step < stage.warmup:
        return (step + 1) / max(stage.warmup, 1)
    if stage.minutes is not None and elapsed_minutes is not None:
        progress = min(1.0, elapsed_minutes / stage.minutes)
    else:
        progress = min(1.0, (step - stage.warmup) / max(stage.steps - stage.warmup, 1))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: DAFlow, cfg: TrainConfig, stage: int) -> torch.optim.Optimizer:
    sc = cfg.stage1 if stage == 1 else cfg.stage2
    if stage == 1:
        assert model.backbone is not None
        groups = [{"params": list(model.backbone.parameters()), "lr": sc.lr}]
    else:
        backbone = set(id(p) for p in model.backbone.parameters()) if model.backbone is not None else set()
        rest = [p for p in model.parameters() if id(p) not in backbone]
        groups = [{"params": rest, "lr": sc.lr}]
        if model.backbone is not None and sc.backbone_lr_mult > 0:
            groups.append({"params": list(model.backbone.parameters()), "lr": sc.lr * sc.backbone_lr_mult})
    for g in groups:
        g["base_lr"] = g["lr"]
    # Fused AdamW: one kernel per step for all parameters instead of several per tensor, and it takes
    # a device-side skip flag (``found_inf``), which train_step needs to skip a non-finite update
    # without reading the gradient norm back to the host. It runs on CUDA and the CPU alike.
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, fused=True)


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load a checkpoint's optimiser state, keeping ``opt``'s own implementation choices.

    A state dict carries each group's flags (``fused``, ``foreach``) beside what was learned, and
    loading it would bring back those of the run that saved it; how the step runs is this run's
    choice, and ``skip_nonfinite_step`` needs the fused kernel.
    """
    keep = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for g, flags in zip(opt.param_groups, keep, strict=True):
        g.update(flags)


def autocast_context(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if cfg.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, cfg.autocast))


def stage1_loss(model: DAFlow, batch: dict[str, torch.Tensor], transform, cfg: TrainConfig, *,
                host_gen: torch.Generator, noise_gen: torch.Generator) -> torch.Tensor:
    """Restoration pretraining (rectified flow): the lifted DiT restores the clean window.

    Timesteps come from ``host_gen`` (CPU); the noise from ``noise_gen``, which lives on the training
    device so a batch of noise is never drawn on the host and copied over. On the CPU both may be
    one generator.
    """
    assert model.backbone is not None
    clean = transform(batch["clean"])  # [B, F, 3, H, W]
    degraded = transform(batch["degraded"])
    b, f, c, h, w = clean.shape
    device = clean.device
    with autocast_context(cfg, device):
        x0 = model.frontend.encode(clean.reshape(b * f, c, h, w))
        y = model.frontend.encode(degraded.reshape(b * f, c, h, w))
    x0 = x0.float().reshape(b, f, *x0.shape[1:])
    y = y.reshape(b, f, *y.shape[1:])
    t = logit_normal_timesteps(b, generator=host_gen, device=device)
    noise = torch.randn(x0.shape, generator=noise_gen, device=noise_gen.device).to(x0)
    tt = t.view(b, 1, 1, 1, 1)
    z = (1.0 - tt) * x0 + tt * noise
    with autocast_context(cfg, device):
        out = model.backbone(z, y, t, return_velocity=True)
    return flow_matching_loss(out.velocity, x0, noise)


def flow_init_of_batch(batch: dict[str, torch.Tensor], n: int, cfg: TrainConfig) -> torch.Tensor | None:
    """[B, P, 2, H, W] in the model's pair order (forward pairs, then backward), or None."""
    if cfg.flow_init is None:
        return None
    return torch.cat([batch["init_fwd"][:, :n], batch["init_bwd"][:, :n]], dim=1)


def stage2_loss(model: DAFlow, batch: dict[str, torch.Tensor], transform, cfg: TrainConfig, nframes: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow: the sequence loss over all refinement iterations, and the last iteration's EPE."""
    frames = transform(batch["degraded"][:, :nframes])  # [B, F, 3, H, W] on the model's device
    n = nframes - 1
    with autocast_context(cfg, frames.device):
        out = model(frames, iters=cfg.iters, return_all=True, flow_init=flow_init_of_batch(batch, n, cfg))
    gt = torch.cat([batch["flow_fwd"][:, :n], batch["flow_bwd"][:, :n]], dim=1)  # [B, P, 2, H, W]
    valid = torch.cat([batch["valid_fwd"][:, :n], batch["valid_bwd"][:, :n]], dim=1)  # [B, P, H, W]
    gt = gt.flatten(0, 1)
    valid = valid.flatten(0, 1)
    its = [(fl.flatten(0, 1).float(), inf.flatten(0, 1).float()) for fl, inf in out.iterations]
    loss = sequence_loss(its, gt, valid, gamma=cfg.gamma)
    return loss, epe(its[-1][0].detach(), gt, valid)


def train_step(model: DAFlow, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor], *, stage: int,
               transform, cfg: TrainConfig, nframes: int, host_gen: torch.Generator,
               noise_gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward, backward and optimiser step; returns (loss, training EPE or None), both on the device.

    Nothing here waits for the device: the caller decides when to read the numbers back.
    """
    if stage == 1:
        loss = stage1_loss(model, batch, transform, cfg, host_gen=host_gen, noise_gen=noise_gen)
        train_epe = None
    else:
        loss, train_epe = stage2_loss(model, batch, transform, cfg, nframes)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    skip_nonfinite_step(opt, norm)
    return loss.detach(), train_epe


def skip_nonfinite_step(opt: torch.optim.Optimizer, norm: torch.Tensor) -> None:
    """``opt.step()``, except when ``norm`` (the gradient norm, on the device) is not finite.

    A non-finite gradient would poison every weight, so that update is skipped. Asking
    ``bool(torch.isfinite(norm))`` would make the host wait for the device every step; instead
    the flag stays on the device and the fused optimiser reads it, as ``torch.amp.GradScaler``
    does: with ``found_inf`` set, the kernel leaves parameters and moments alone and the step
    count is put back.
    """
    if not all(g.get("fused") for g in opt.param_groups):
        if bool(torch.isfinite(norm)):
            opt.step()
        return
    opt.found_inf = (~torch.isfinite(norm)).to(torch.float32)  # [] 1.0 skips the update
    try:
        opt.step()
    finally:
        del opt.found_inf
