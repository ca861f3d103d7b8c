"""Where a training run's batches come from: CPU workers, or the training device itself.

Both sources give batch ``k`` of a run as a pure function of (seed, k), so a resumed run draws fresh
windows instead of repeating the ones it has already seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .config import TrainConfig
from .data import SyntheticFlowDataset, worker_init_fn


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class _Slice(Dataset):
    """Samples ``start, start+1, ...`` of an endless dataset (so resumes draw fresh samples)."""

    def __init__(self, base: SyntheticFlowDataset, start: int) -> None:
        self.base, self.start = base, start

    def __len__(self) -> int:
        return len(self.base) - self.start

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.base[self.start + i]


def _cpu_batches(cfg: TrainConfig, device: torch.device, first_batch: int
                 ) -> Iterator[dict[str, torch.Tensor]]:
    data = SyntheticFlowDataset(
        size=cfg.crop, num_frames=cfg.num_frames, seed=cfg.seed, length=10**9, degrade_preset=cfg.degrade,
        init_flow=cfg.flow_init, photo_fraction=cfg.photo_fraction, static_fraction=cfg.static_fraction,
        max_motion=cfg.max_motion,
    )
    loader = DataLoader(
        _Slice(data, first_batch * cfg.batch_size),
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        worker_init_fn=worker_init_fn,
        persistent_workers=False,
        prefetch_factor=4 if cfg.workers else None,
        pin_memory=device.type == "cuda",
    )
    for batch in loader:
        yield to_device(batch, device)


def chunked_batches(make, *, batch_size: int, chunk: int, first_batch: int
                    ) -> Iterator[dict[str, torch.Tensor]]:
    """Batch k, k+1, ... of ``make``'s sequence, where one call ``make(c)`` yields ``chunk`` batches.

    Batch k is slice k % chunk of call k // chunk, so a run resumed at any batch sees what an
    uninterrupted run would have.
    """
    c, skip = divmod(first_batch, chunk)
    while True:
        made = make(c)
        for i in range(skip, chunk):
            yield {k: v[i * batch_size:(i + 1) * batch_size] for k, v in made.items()}
        c, skip = c + 1, 0


def _device_batches(cfg: TrainConfig, device: torch.device, first_batch: int
                    ) -> Iterator[dict[str, torch.Tensor]]:
    from .synth_torch import DeviceWindowGenerator

    make = DeviceWindowGenerator(
        size=cfg.crop, num_frames=cfg.num_frames, batch_size=cfg.batch_size * cfg.data_chunk, device=device,
        seed=cfg.seed, degrade=cfg.degrade, max_motion=cfg.max_motion, static_fraction=cfg.static_fraction,
        photo_fraction=cfg.photo_fraction,
    )
    return chunked_batches(make, batch_size=cfg.batch_size, chunk=cfg.data_chunk, first_batch=first_batch)


def training_batches(cfg: TrainConfig, device: torch.device, *, first_batch: int
                     ) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches on ``device``, starting at batch ``first_batch`` of the run's sequence."""
    if cfg.data == "device":
        return _device_batches(cfg, device, first_batch)
    return _cpu_batches(cfg, device, first_batch)
