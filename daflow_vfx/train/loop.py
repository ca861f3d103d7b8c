"""Two-stage training of a DA-Flow variant (``daflow-vfx train --config ...``).

Stage 1 (restoration pretraining) teaches the lifted MM-DiT to predict the clean window from the
degraded one with a rectified-flow objective; this is what makes its features degradation-aware.
Stage 2 trains flow on the fused features with SEA-RAFT's mixture-of-Laplace sequence loss, the
backbone fine-tuned at a reduced learning rate (or frozen with ``backbone_lr_mult: 0``).

Checkpoints (model, optimizer, step, stage) are written atomically every few minutes and at the
end, so a killed run resumes where it stopped. ``init_weights`` starts from a safetensors file
(for example the shipped weights), which is how training continues across sessions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError
from ..model.daflow import DAFlow
from ..model.dit import default_noise, logit_normal_timesteps
from ..model.weights import FLOW_INITS, build_model, get_entry, load_state_strict, save_weights
from .data import SyntheticFlowDataset, worker_init_fn
from .losses import epe, flow_matching_loss, sequence_loss

log = logging.getLogger(__name__)


@dataclass
class StageConfig:
    steps: int = 0
    lr: float = 4e-4
    warmup: int = 100
    backbone_lr_mult: float = 0.1  # stage 2 only: 0 freezes the backbone


@dataclass
class TrainConfig:
    model: str = "daflow-compact"
    out_dir: str = "runs/compact"
    seed: int = 0
    crop: tuple[int, int] = (128, 160)
    num_frames: int = 3
    pair_window_fraction: float = 0.2  # batches trained on 2-frame windows (sequence ends, pairwise use)
    batch_size: int = 4
    workers: int = 1
    threads: int = 2
    degrade: dict[str, float] = field(
        default_factory=lambda: {"clean": 0.15, "mild": 0.3, "severe": 0.35, "extreme": 0.2}
    )
    iters: int = 8
    gamma: float = 0.85
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    stage1: StageConfig = field(default_factory=lambda: StageConfig(steps=500, lr=3e-4))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(steps=20000, lr=4e-4))
    val_every: int = 250
    val_samples: int = 16
    # A second, larger validation size (h, w): does the model hold up above its training crop?
    val_large: tuple[int, int] | None = None
    val_large_samples: int = 4
    checkpoint_minutes: float = 5.0
    init_weights: str | None = None
    init_backbone: str | None = (
        None  # safetensors whose backbone.* keys start the backbone (e.g. a stage-1 run)
    )
    max_minutes: float | None = None
    # "dis": the model refines OpenCV DIS's flow (a classical prior, see model.weights.FLOW_INITS)
    flow_init: str | None = None
    # Share of textures taken from the bundled photographs (the rest are procedural); validation
    # keeps the dataset default so runs with different shares stay comparable.
    photo_fraction: float = 0.4
    # Share of layers (background included) that stand still; validation keeps the dataset default (0)
    static_fraction: float = 0.0
    # "cpu", "cuda", "cuda:1", ...: where the model trains; data is always made on the CPU workers.
    device: str = "cpu"

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the training config ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kw = dict(raw)
        for stage in ("stage1", "stage2"):
            if stage in kw:
                sk = {f.name for f in fields(StageConfig)}
                bad = sorted(set(kw[stage]) - sk)
                if bad:
                    raise ConfigError(f"{source}: unknown keys in {stage}: {', '.join(bad)}")
                kw[stage] = StageConfig(**kw[stage])
        for key in ("crop", "val_large"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if kw.get("flow_init") not in (None, *FLOW_INITS):
            raise ConfigError(f"{source}: flow_init {kw['flow_init']!r}; use one of {', '.join(FLOW_INITS)}")
        for key in ("photo_fraction", "static_fraction"):
            share = kw.get(key, getattr(cls, key))
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
                raise ConfigError(f"{source}: {key} {share!r}; use a share from 0 to 1")
        dev = kw.get("device", cls.device)
        try:
            torch.device(dev)
        except (RuntimeError, TypeError):
            raise ConfigError(f"{source}: device {dev!r}; use cpu, cuda or cuda:N") from None
        return cls(**kw)


@dataclass
class TrainReport:
    step: int
    stage: int
    last_loss: float
    val_epe: float | None
    checkpoint: str
    weights: str


def _lr_factor(step: int, stage: StageConfig) -> float:
    # Linear warm-up, then cosine decay to 10% at the stage's last step.
    if step < stage.warmup:
        return (step + 1) / max(stage.warmup, 1)
    progress = min(1.0, (step - stage.warmup) / max(stage.steps - stage.warmup, 1))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _optimizer(model: DAFlow, cfg: TrainConfig, stage: int) -> torch.optim.Optimizer:
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
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def _stage1_loss(
    model: DAFlow, batch: dict[str, torch.Tensor], transform, gen: torch.Generator
) -> torch.Tensor:
    assert model.backbone is not None
    clean = transform(batch["clean"])  # [B, F, 3, H, W]
    degraded = transform(batch["degraded"])
    b, f, c, h, w = clean.shape
    x0 = model.frontend.encode(clean.reshape(b * f, c, h, w))
    y = model.frontend.encode(degraded.reshape(b * f, c, h, w))
    x0 = x0.reshape(b, f, *x0.shape[1:])
    y = y.reshape(b, f, *y.shape[1:])
    t = logit_normal_timesteps(b, generator=gen, device=x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0)
    tt = t.view(b, 1, 1, 1, 1)
    z = (1.0 - tt) * x0 + tt * noise
    out = model.backbone(z, y, t, return_velocity=True)
    return flow_matching_loss(out.velocity, x0, noise)


def _stage2_loss(
    model: DAFlow, batch: dict[str, torch.Tensor], transform, cfg: TrainConfig, nframes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    frames = transform(batch["degraded"][:, :nframes])  # [B, F, 3, H, W] on the model's device
    n = nframes - 1
    out = model(frames, iters=cfg.iters, return_all=True, flow_init=_flow_init(batch, n, cfg))
    gt = torch.cat([batch["flow_fwd"][:, :n], batch["flow_bwd"][:, :n]], dim=1)  # [B, P, 2, H, W]
    valid = torch.cat([batch["valid_fwd"][:, :n], batch["valid_bwd"][:, :n]], dim=1)  # [B, P, H, W]
    gt = gt.flatten(0, 1)
    valid = valid.flatten(0, 1)
    its = [(fl.flatten(0, 1), inf.flatten(0, 1)) for fl, inf in out.iterations]
    loss = sequence_loss(its, gt, valid, gamma=cfg.gamma)
    return loss, epe(its[-1][0].detach(), gt, valid)


def _flow_init(batch: dict[str, torch.Tensor], n: int, cfg: TrainConfig) -> torch.Tensor | None:
    # [B, P, 2, H, W] in the model's pair order (forward pairs, then backward), or None
    if cfg.flow_init is None:
        return None
    return torch.cat([batch["init_fwd"][:, :n], batch["init_bwd"][:, :n]], dim=1)


def validation_samples(cfg: TrainConfig, *, large: bool = False) -> list[dict[str, torch.Tensor]]:
    """The fixed synthetic validation set (its own seed, severe degradation), generated once.

    ``large``: the ``val_large`` set. Every validation of a run scores the same samples, so a run
    generates them once (rendering, degrading and DIS included) and passes them on.
    """
    size, length = (cfg.val_large, cfg.val_large_samples) if large else (cfg.crop, cfg.val_samples)
    assert size is not None
    ds = SyntheticFlowDataset(size=size, num_frames=cfg.num_frames, seed=10_000 + cfg.seed,
                              length=length, degrade_preset="severe", clean_fraction=0.0,
                              init_flow=cfg.flow_init)
    return [ds[i] for i in range(len(ds))]


def _baseline_epe(
    samples: list[dict[str, torch.Tensor]], predict: Callable[[dict[str, torch.Tensor]], torch.Tensor]
) -> float:
    """Mean EPE on validation samples of a fixed prediction per sample ([P, 2, H, W])."""
    total = 0.0
    for s in samples:
        gt = torch.cat([s["flow_fwd"], s["flow_bwd"]])
        total += float(epe(predict(s), gt, torch.cat([s["valid_fwd"], s["valid_bwd"]])))
    return total / len(samples)


def zero_flow_epe(samples: list[dict[str, torch.Tensor]]) -> float:
    """EPE of predicting no motion on the validation set: a model must beat this to be learning."""
    return _baseline_epe(samples, lambda s: torch.zeros_like(torch.cat([s["flow_fwd"], s["flow_bwd"]])))


def init_flow_epe(cfg: TrainConfig, samples: list[dict[str, torch.Tensor]]) -> float | None:
    """EPE of the initial flow alone (e.g. DIS) on the validation set: a refining model must beat it."""
    if cfg.flow_init is None:
        return None
    return _baseline_epe(samples, lambda s: torch.cat([s["init_fwd"], s["init_bwd"]]))


@torch.no_grad()
def validate(
    model: DAFlow, cfg: TrainConfig, transform, *, samples: list[dict[str, torch.Tensor]] | None = None
) -> float:
    """Mean EPE on the validation set (``samples``, or :func:`validation_samples` of ``cfg``)."""
    if samples is None:
        samples = validation_samples(cfg)
    was_training = model.training
    model.eval()
    total = 0.0
    device = next(model.parameters()).device
    for s in samples:
        s = _to_device(s, device)
        nf = s["degraded"].shape[0]
        batch = {k: v[None] for k, v in s.items() if k.startswith("init_")}
        out = model(transform(s["degraded"][None]), iters=max(cfg.iters, 12),
                    flow_init=_flow_init(batch, nf - 1, cfg))
        gt = torch.cat([s["flow_fwd"], s["flow_bwd"]])  # [P, 2, H, W]
        valid = torch.cat([s["valid_fwd"], s["valid_bwd"]])
        total += float(epe(out.flow[0], gt, valid))
    model.train(was_training)
    return total / len(samples)


@dataclass
class _ValidationSet:
    """A run's validation samples with their fixed baselines, built at the first validation."""

    prefix: str  # the log's key prefix: "val" or "val_large"
    samples: list[dict[str, torch.Tensor]]
    zero_epe: float  # a collapsed model sits at this value
    init_epe: float | None  # the prior a refining model must beat

    @classmethod
    def build(cls, cfg: TrainConfig, *, large: bool) -> _ValidationSet:
        samples = validation_samples(cfg, large=large)
        return cls("val_large" if large else "val", samples, zero_flow_epe(samples),
                   init_flow_epe(cfg, samples))


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(
    cfg: TrainConfig, *, progress: bool = True, on_log: Callable[[dict], None] | None = None
) -> TrainReport:
    """Run (or resume) both stages as configured; write checkpoint.pt, weights and log.jsonl in out_dir."""
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
    stage, step = (1 if cfg.stage1.steps > 0 and model.backbone is not None else 2), 0
    opt_state = None
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        load_state_strict(model, ck["model"], source=str(ckpt_path))
        stage, step, opt_state = int(ck["stage"]), int(ck["step"]), ck["optimizer"]
        log.info("resumed %s at stage %d step %d", ckpt_path, stage, step)
    elif cfg.init_weights:
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(cfg.init_weights).items()}
        load_state_strict(model, state, source=cfg.init_weights)
        log.info("initialised from %s", cfg.init_weights)
    if cfg.init_backbone and not ckpt_path.is_file():
        from safetensors.torch import load_file

        if model.backbone is None:
            raise ConfigError(f"init_backbone: model {cfg.model} has no backbone")
        state = {
            k.removeprefix("backbone."): v.float()
            for k, v in load_file(cfg.init_backbone).items()
            if k.startswith("backbone.")
        }
        load_state_strict(model.backbone, state, source=cfg.init_backbone)
        log.info("backbone initialised from %s", cfg.init_backbone)
    # Moved after loading so checkpoints and init files (stored on the CPU) load the same anywhere;
    # the optimizer's state follows its parameters when it is loaded below.
    model.to(device)

    data = SyntheticFlowDataset(
        size=cfg.crop, num_frames=cfg.num_frames, seed=cfg.seed, length=10**9, degrade_preset=cfg.degrade,
        init_flow=cfg.flow_init, photo_fraction=cfg.photo_fraction, static_fraction=cfg.static_fraction,
    )
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    start = time.monotonic()
    last_ckpt = start
    logf = open(out / "log.jsonl", "a")  # noqa: SIM115 - closed in finally
    last_loss, val = float("nan"), None
    val_sets: list[_ValidationSet] = []
    try:
        while stage <= 2:
            sc = cfg.stage1 if stage == 1 else cfg.stage2
            if step >= sc.steps:
                stage, step, opt_state = stage + 1, 0, None
                continue
            if model.backbone is not None:
                # A frozen backbone (stage 2 with backbone_lr_mult 0) builds no autograd graph:
                # its forward is then a plain feature extractor, and each step is ~25% cheaper.
                model.backbone.requires_grad_(stage == 1 or sc.backbone_lr_mult > 0)
                model.backbone.freeze_dead_parameters()
            opt = _optimizer(model, cfg, stage)
            if opt_state is not None:
                opt.load_state_dict(opt_state)
                opt_state = None
            # Sample indices continue across stages and resumes, so no sample is repeated.
            offset = (0 if stage == 1 else cfg.stage1.steps) + step
            loader = DataLoader(
                _Slice(data, offset * cfg.batch_size),
                batch_size=cfg.batch_size,
                num_workers=cfg.workers,
                worker_init_fn=worker_init_fn,
                persistent_workers=False,
                prefetch_factor=4 if cfg.workers else None,
                pin_memory=device.type == "cuda",
            )
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=sc.steps, initial=step, desc=f"stage {stage}", dynamic_ncols=True)
            stopped = False
            for batch in loader:
                batch = _to_device(batch, device)
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * _lr_factor(step, sc)
                if stage == 1:
                    loss = _stage1_loss(model, batch, transform, gen)
                    train_epe = None
                else:
                    two = torch.rand((), generator=gen).item() < cfg.pair_window_fraction
                    loss, train_epe = _stage2_loss(model, batch, transform, cfg, 2 if two else cfg.num_frames)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                step += 1
                last_loss = float(loss.detach())
                rec: dict[str, Any] = {
                    "stage": stage,
                    "step": step,
                    "loss": round(last_loss, 5),
                    "lr": opt.param_groups[0]["lr"],
                    "minutes": round((time.monotonic() - start) / 60, 2),
                }
                if train_epe is not None:
                    rec["epe"] = round(float(train_epe), 4)
                if stage == 2 and (step % cfg.val_every == 0 or step == sc.steps):
                    if not val_sets:
                        val_sets.append(_ValidationSet.build(cfg, large=False))
                        if cfg.val_large is not None:
                            val_sets.append(_ValidationSet.build(cfg, large=True))
                    for vs in val_sets:
                        score = validate(model, cfg, transform, samples=vs.samples)
                        rec[f"{vs.prefix}_epe"] = round(score, 4)
                        rec[f"{vs.prefix}_zero_epe"] = round(vs.zero_epe, 4)
                        if vs.init_epe is not None:
                            rec[f"{vs.prefix}_init_epe"] = round(vs.init_epe, 4)
                        if vs.prefix == "val":
                            val = score
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                if on_log is not None:
                    on_log(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{last_loss:.4f}", **({"epe": f"{rec['epe']:.2f}"} if "epe" in rec else {})
                    )
                now = time.monotonic()
                over = cfg.max_minutes is not None and (now - start) / 60 >= cfg.max_minutes
                if now - last_ckpt >= cfg.checkpoint_minutes * 60 or step >= sc.steps or over:
                    _save_checkpoint(
                        ckpt_path,
                        {
                            "model": model.state_dict(),
                            "optimizer": opt.state_dict(),
                            "stage": stage,
                            "step": step,
                            "config": asdict(cfg),
                        },
                    )
                    save_weights(
                        model,
                        out / "weights.safetensors",
                        metadata={"stage": stage, "step": step, "model": cfg.model,
                                  **({"flow_init": cfg.flow_init} if cfg.flow_init else {})},
                    )
                    last_ckpt = now
                if step >= sc.steps or over:
                    stopped = over
                    break
            if bar is not None:
                bar.close()
            if stopped:
                break
    finally:
        logf.close()
    return TrainReport(
        step=step,
        stage=stage,
        last_loss=last_loss,
        val_epe=val,
        checkpoint=str(ckpt_path),
        weights=str(out / "weights.safetensors"),
    )


class _Slice(torch.utils.data.Dataset):
    """Samples ``start, start+1, ...`` of an endless dataset (so resumes draw fresh samples)."""

    def __init__(self, base: SyntheticFlowDataset, start: int) -> None:
        self.base, self.start = base, start

    def __len__(self) -> int:
        return len(self.base) - self.start

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.base[self.start + i]


__all__ = ["StageConfig", "TrainConfig", "TrainReport", "train", "validate", "default_noise"]
