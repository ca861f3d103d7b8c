"""The fixed synthetic validation set of a training run, its baselines, and scoring a model on it.

Validation windows come from the generator that makes the training windows: the CPU reference
(:mod:`.data`, real codecs through PyAV) for ``data: cpu``, and the on-device generator for
``data: device``, so a device run needs neither PyAV nor CPU workers (the lent machine has no PyAV).
Either way the set is fixed by the run's seed and severely degraded, and every validation of a run
scores the same windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..model.daflow import DAFlow
from .config import TrainConfig
from .data import SyntheticFlowDataset
from .losses import epe
from .sources import to_device
from .steps import flow_init_of_batch


def validation_samples(cfg: TrainConfig, *, large: bool = False) -> list[dict[str, torch.Tensor]]:
    """The fixed synthetic validation set (its own seed, severe degradation), generated once.

    ``large``: the ``val_large`` set. Every validation of a run scores the same samples, so a run
    generates them once (rendering, degrading and DIS included) and passes them on.
    """
    size, length = (cfg.val_large, cfg.val_large_samples) if large else (cfg.crop, cfg.val_samples)
    assert size is not None
    if cfg.data == "device":
        from .synth_torch import DeviceWindowGenerator

        # Still layers at the generator's default share, as in training; the CPU set keeps its own
        # default (none), so the two sources' validation numbers are not comparable with each other.
        make = DeviceWindowGenerator(size=size, num_frames=cfg.num_frames, batch_size=1, device=cfg.device,
                                     seed=10_000 + cfg.seed, degrade="severe", clean_fraction=0.0)
        return [{k: v[0] for k, v in make(i).items()} for i in range(length)]
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
        s = to_device(s, device)
        nf = s["degraded"].shape[0]
        batch = {k: v[None] for k, v in s.items() if k.startswith("init_")}
        out = model(transform(s["degraded"][None]), iters=max(cfg.iters, 12),
                    flow_init=flow_init_of_batch(batch, nf - 1, cfg))
        gt = torch.cat([s["flow_fwd"], s["flow_bwd"]])  # [P, 2, H, W]
        valid = torch.cat([s["valid_fwd"], s["valid_bwd"]])
        total += float(epe(out.flow[0], gt, valid))
    model.train(was_training)
    return total / len(samples)


@dataclass
class ValidationSet:
    """A run's validation samples with their fixed baselines, built at the first validation."""

    prefix: str  # the log's key prefix: "val" or "val_large"
    samples: list[dict[str, torch.Tensor]]
    zero_epe: float  # a collapsed model sits at this value
    init_epe: float | None  # the prior a refining model must beat

    @classmethod
    def build(cls, cfg: TrainConfig, *, large: bool) -> ValidationSet:
        samples = validation_samples(cfg, large=large)
        return cls("val_large" if large else "val", samples, zero_flow_epe(samples),
                   init_flow_epe(cfg, samples))
