"""Two-stage training of a DA-Flow variant (``daflow-vfx train --config ...``).

Stage 1 (restoration pretraining) teaches the lifted MM-DiT to predict the clean window from the
degraded one with a rectified-flow objective; this is what makes its features degradation-aware.
Stage 2 trains flow on the fused features with SEA-RAFT's mixture-of-Laplace sequence loss, the
backbone fine-tuned at a reduced learning rate (or frozen with ``backbone_lr_mult: 0``).

A stage runs for a number of steps, or for a time budget (``minutes``) on a lent device. Batches
come from CPU workers or are made on the training device itself (``data``, :mod:`.sources`).

Checkpoints (model, optimizer, step, stage) are written atomically every few minutes and at the
end, so a killed run resumes where it stopped. ``init_weights`` starts from a safetensors file
(for example the shipped weights), which is how training continues across sessions.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..model.daflow import DAFlow
from ..model.dit import default_noise
from ..model.weights import build_model, get_entry, load_state_strict, save_weights
from .config import StageConfig, TrainConfig
from .sources import training_batches
from .steps import load_optimizer_state, lr_factor, make_optimizer, train_step
from .transfer import Readback
from .validation import ValidationSet, validate, validation_samples

log = logging.getLogger(__name__)


@dataclass
class TrainReport:
    step: int
    stage: int
    last_loss: float
    val_epe: float | None
    checkpoint: str
    weights: str
    batches: int = 0  # batches trained in this call (both stages)
    seconds: float = 0.0  # wall time of this call


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _stage_done(step: int, sc: StageConfig, stage_minutes: float) -> bool:
    if sc.minutes is not None:
        return stage_minutes >= sc.minutes or (sc.steps > 0 and step >= sc.steps)
    return step >= sc.steps


def _stage_runs(sc: StageConfig) -> bool:
    return sc.steps > 0 or sc.minutes is not None


def _load_init(model: DAFlow, cfg: TrainConfig, *, resuming: bool) -> None:
    from safetensors.torch import load_file

    if resuming:
        return
    if cfg.init_weights:
        state = {k: v.float() for k, v in load_file(cfg.init_weights).items()}
        if cfg.init_cut_branch:
            from ..model.branch_cut import cut_diffusion_branch

            state = cut_diffusion_branch(state, target=model, source=cfg.init_weights)
        load_state_strict(model, state, source=cfg.init_weights)
        log.info("initialised from %s", cfg.init_weights)
    if cfg.init_backbone:
        if model.backbone is None:
            raise ConfigError(f"init_backbone: model {cfg.model} has no backbone")
        state = {
            k.removeprefix("backbone."): v.float()
            for k, v in load_file(cfg.init_backbone).items()
            if k.startswith("backbone.")
        }
        load_state_strict(model.backbone, state, source=cfg.init_backbone)
        log.info("backbone initialised from %s", cfg.init_backbone)


def train(
    cfg: TrainConfig,
    *,
    progress: bool = True,
    on_log: Callable[[dict], None] | None = None,
    on_checkpoint: Callable[[DAFlow, dict[str, Any], int], None] | None = None,
    metadata: Mapping[str, object] | None = None,
) -> TrainReport:
    """Run (or resume) both stages as configured; write checkpoint.pt, weights and log.jsonl in out_dir.

    ``on_checkpoint(model, metadata, batches)`` is called after every checkpoint with the batches
    trained so far in this call (the device run writes its shards there, so a run cut short still
    returns weights). ``metadata`` is added to the weights'.
    """
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {cfg.device}: CUDA is not available here; train with device: cpu")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    entry = get_entry(cfg.model)
    model, _, _ = build_model(cfg.model, allow_random=True)
    model.train()
    transform = entry.transform
    stage, step = (1 if _stage_runs(cfg.stage1) and model.backbone is not None else 2), 0
    batches_before = 0  # batches of the run's sequence already trained (the data's position)
    opt_state = None
    resuming = ckpt_path.is_file()
    if resuming:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        load_state_strict(model, ck["model"], source=str(ckpt_path))
        stage, step, opt_state = int(ck["stage"]), int(ck["step"]), ck["optimizer"]
        # Checkpoints written before the count existed: stage 2's samples started after stage 1's steps.
        batches_before = int(ck.get("batches", (cfg.stage1.steps if stage == 2 else 0) + step))
        log.info("resumed %s at stage %d step %d", ckpt_path, stage, step)
    _load_init(model, cfg, resuming=resuming)
    # Moved after loading so checkpoints and init files (stored on the CPU) load the same anywhere;
    # the optimizer's state follows its parameters when it is loaded below.
    model.to(device)

    # Host decisions (2-frame windows, stage-1 timesteps) stay on the CPU generator; stage-1 noise is
    # drawn where the model is. On the CPU one generator serves both, as it always has.
    host_gen = torch.Generator().manual_seed(cfg.seed + 7)
    noise_gen = host_gen if device.type == "cpu" else torch.Generator(device).manual_seed(cfg.seed + 7)
    start = time.monotonic()
    last_ckpt = start
    logf = open(out / "log.jsonl", "a")  # noqa: SIM115 - closed in finally
    last_loss, val = float("nan"), None
    val_sets: list[ValidationSet] = []
    trained = 0
    last_at = (stage, step)  # (stage, step) of the last trained batch, for the report
    pending: tuple[dict[str, Any], Readback, Any] | None = None  # the last step's record, not yet written

    def emit(rec: dict[str, Any], readback: Readback, bar) -> None:
        """Write one step's record, its loss and training EPE read back from the device."""
        nonlocal last_loss
        loss, train_epe = readback.values()
        last_loss = loss
        rec["loss"] = round(loss, 5)
        if train_epe is not None:
            rec["epe"] = round(train_epe, 4)
        logf.write(json.dumps(rec) + "\n")
        logf.flush()
        if on_log is not None:
            on_log(rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", **({"epe": f"{rec['epe']:.2f}"} if "epe" in rec else {}))

    weights_meta = {"model": cfg.model, **({"flow_init": cfg.flow_init} if cfg.flow_init else {}),
                    **dict(metadata or {})}
    try:
        while stage <= 2:
            sc = cfg.stage1 if stage == 1 else cfg.stage2
            stage_start = time.monotonic()
            if (stage == 1 and (model.backbone is None or not _stage_runs(sc))) or _stage_done(step, sc, 0.0):
                stage, step, opt_state = stage + 1, 0, None
                continue
            if model.backbone is not None:
                # A frozen backbone (stage 2 with backbone_lr_mult 0) builds no autograd graph:
                # its forward is then a plain feature extractor, and each step is ~25% cheaper.
                model.backbone.requires_grad_(stage == 1 or sc.backbone_lr_mult > 0)
                model.backbone.freeze_dead_parameters()
            opt = make_optimizer(model, cfg, stage)
            if opt_state is not None:
                load_optimizer_state(opt, opt_state)
                opt_state = None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=sc.steps or None, initial=step, desc=f"stage {stage}", dynamic_ncols=True)
            stopped = False
            for batch in training_batches(cfg, device, first_batch=batches_before):
                stage_minutes = (time.monotonic() - stage_start) / 60
                factor = lr_factor(step, sc, elapsed_minutes=stage_minutes)
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * factor
                two = stage == 2 and torch.rand((), generator=host_gen).item() < cfg.pair_window_fraction
                loss, train_epe = train_step(
                    model, opt, batch, stage=stage, transform=transform, cfg=cfg,
                    nframes=2 if two else cfg.num_frames, host_gen=host_gen, noise_gen=noise_gen,
                )
                readback = Readback(loss, train_epe)
                # The previous step's record is written now that this step is queued: reading its
                # loss waits for that step only, so the device never runs dry for a log line.
                if pending is not None:
                    emit(*pending)
                    pending = None
                step += 1
                last_at = (stage, step)
                batches_before += 1
                trained += 1
                rec: dict[str, Any] = {
                    "stage": stage,
                    "step": step,
                    "loss": None,  # read back from the device when the record is written (emit)
                    "lr": opt.param_groups[0]["lr"],
                    "minutes": round((time.monotonic() - start) / 60, 2),
                }
                now = time.monotonic()
                over = cfg.max_minutes is not None and (now - start) / 60 >= cfg.max_minutes
                done = _stage_done(step, sc, (now - stage_start) / 60)
                validating = stage == 2 and (step % cfg.val_every == 0 or done or over)
                if validating:
                    if not val_sets:
                        val_sets.append(ValidationSet.build(cfg, large=False))
                        if cfg.val_large is not None:
                            val_sets.append(ValidationSet.build(cfg, large=True))
                    for vs in val_sets:
                        score = validate(model, cfg, transform, samples=vs.samples)
                        rec[f"{vs.prefix}_epe"] = round(score, 4)
                        rec[f"{vs.prefix}_zero_epe"] = round(vs.zero_epe, 4)
                        if vs.init_epe is not None:
                            rec[f"{vs.prefix}_init_epe"] = round(vs.init_epe, 4)
                        if vs.prefix == "val":
                            val = score
                pending = (rec, readback, bar)
                checkpointing = now - last_ckpt >= cfg.checkpoint_minutes * 60 or done or over
                if validating or checkpointing:
                    # These wait for the device anyway; the log is complete up to this step.
                    emit(*pending)
                    pending = None
                if checkpointing:
                    _save_checkpoint(
                        ckpt_path,
                        {
                            "model": model.state_dict(),
                            "optimizer": opt.state_dict(),
                            "stage": stage,
                            "step": step,
                            "batches": batches_before,
                            "config": asdict(cfg),
                        },
                    )
                    meta = {**weights_meta, "stage": stage, "step": step}
                    save_weights(model, out / "weights.safetensors", metadata=meta)
                    if on_checkpoint is not None:
                        on_checkpoint(model, meta, trained)
                    last_ckpt = now
                if done or over:
                    stopped = over
                    break
            if pending is not None:
                emit(*pending)
                pending = None
            if bar is not None:
                bar.close()
            if stopped:
                break
            stage, step, opt_state = stage + 1, 0, None
    finally:
        logf.close()
    return TrainReport(
        step=last_at[1],
        stage=last_at[0],
        last_loss=last_loss,
        val_epe=val,
        checkpoint=str(ckpt_path),
        weights=str(out / "weights.safetensors"),
        batches=trained,
        seconds=time.monotonic() - start,
    )


__all__ = ["StageConfig", "TrainConfig", "TrainReport", "train", "validate", "validation_samples",
           "default_noise"]
