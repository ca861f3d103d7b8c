"""Training throughput (``daflow-vfx bench train``): windows per second, per device.

Two numbers for one recipe (model, crop, batch, frames, iterations, precision):

- **data**: windows per second of the on-device generator alone (scenes, ground truth and
  degradations; :mod:`daflow_vfx.train.synth_torch`);
- **train step**: windows per second of full training steps (data, forward, backward, optimiser)
  with that generator feeding the model, as the training loop runs them.

On CUDA the GPU's busy share during the timed steps is sampled from NVML (``torch.cuda.utilization``)
when NVML is there, with the peak of allocated memory, and one call of each is run under
``torch.cuda.set_sync_debug_mode("warn")`` to count the times the host waited for the device in it:
each wait lets the GPU's queue run dry, so a host-bound generator or step shows up there. Random
weights: throughput does not depend on them.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True, kw_only=True)
class TrainSpeedJob:
    model: str = "daflow-compact-noprior"
    device: str = "cpu"
    size: tuple[int, int] = (384, 512)
    batch_size: int = 16
    num_frames: int = 3
    iters: int = 10
    autocast: str | None = None
    seconds: float = 20.0  # timed per measurement, after the warm-up
    stage: int = 2
    data_chunk: int = 1  # batches made per generator call (TrainConfig.data_chunk)
    output: str | None = None  # markdown file whose train-<device> section is replaced; None: none

    def cli_args(self) -> list[str]:
        # size is a training crop (height, width); the flag reads WIDTHxHEIGHT, as bench speed's
        args = ["--model", self.model, "--device", self.device, "--size", f"{self.size[1]}x{self.size[0]}",
                "--batch", str(self.batch_size), "--frames", str(self.num_frames), "--iters", str(self.iters),
                "--seconds", f"{self.seconds:g}", "--stage", str(self.stage)]
        if self.data_chunk != 1:
            args += ["--data-chunk", str(self.data_chunk)]
        if self.autocast:
            args += ["--autocast", self.autocast]
        return args


@dataclass(frozen=True)
class TrainSpeedRow:
    what: str  # "data" or "train step"
    device: str
    windows_per_s: float
    batches: int
    gpu_busy: float | None  # share of time NVML saw a kernel running, 0 - 1
    peak_gib: float | None  # peak allocated device memory
    host_waits: int | None = None  # synchronising calls in one call of it (CUDA only)


class _BusySampler:
    """Samples ``torch.cuda.utilization()`` every 50 ms in a thread while the timed loop runs."""

    def __init__(self, device) -> None:
        self.device = device
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.wait(0.05):
            self.samples.append(int(torch.cuda.utilization(self.device)))

    def __enter__(self) -> _BusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100.0 if self.samples else None


def _nvml_available(device) -> bool:
    import torch

    try:
        torch.cuda.utilization(device)
    except Exception:  # noqa: BLE001 - NVML missing or unusable: the figure is then left out
        return False
    return True


def _timed(fn, *, seconds: float, device, warmup: int = 2) -> tuple[float, int, float | None]:
    """(seconds, calls, gpu busy share) of calling ``fn(k)`` for at least ``seconds`` after a warm-up."""
    import torch

    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    for k in range(warmup):
        fn(k)
    sync()
    sampler = _BusySampler(device) if cuda and _nvml_available(device) else None
    calls = 0
    start = time.perf_counter()
    with sampler if sampler is not None else contextlib.nullcontext():
        while True:
            fn(warmup + calls)
            calls += 1
            if calls % 4 == 0 or not cuda:
                sync()
                if time.perf_counter() - start >= seconds:
                    break
    sync()
    return time.perf_counter() - start, calls, None if sampler is None else sampler.mean()


def count_host_waits(fn, k: int, device) -> int | None:
    """How many times one call ``fn(k)`` made the host wait for the device; None off CUDA.

    PyTorch's sync debug mode warns at each synchronising call it knows of (copies to the host,
    pageable uploads, ``.item()``, stream and device synchronisation); not every kind is covered,
    so this is a floor.
    """
    import torch

    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn(k)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize(device)
    return sum("synchroniz" in str(w.message) for w in caught)


def measure_train_speed(job: TrainSpeedJob) -> list[TrainSpeedRow]:
    """Time the on-device data alone, then full training steps fed by it."""
    import torch

    from ..engine import resolve_device
    from ..model.weights import build_model, get_entry
    from ..train.config import TrainConfig
    from ..train.sources import chunked_batches
    from ..train.steps import make_optimizer, train_step
    from ..train.synth_torch import DeviceWindowGenerator

    if job.seconds <= 0 or job.batch_size < 1 or job.num_frames < 2 or job.data_chunk < 1:
        raise UsageError("bench train needs seconds > 0, batch >= 1, frames >= 2 and data chunk >= 1")
    if min(job.size) < 16 or job.size[0] % 16 or job.size[1] % 16:
        # the compact variants' stride: the training crop is never padded
        raise UsageError(f"`size` {job.size[1]}x{job.size[0]}: use multiples of 16, e.g. 512x384",
                         param="size")
    device = torch.device(resolve_device(job.device))
    entry = get_entry(job.model)
    if entry.flow_init is not None:
        raise UsageError(f"model {job.model!r} refines a DIS prior, which runs on the host; "
                         "bench train measures the on-device path of prior-free models")
    made = job.batch_size * job.data_chunk
    make = DeviceWindowGenerator(size=job.size, num_frames=job.num_frames, batch_size=made,
                                 device=device, seed=0, degrade="random")
    rows = []
    seconds, calls, busy = _timed(make, seconds=job.seconds, device=device)
    waits = count_host_waits(make, 10_000, device)
    what = "data" if job.data_chunk == 1 else f"data ({made} windows a call)"
    rows.append(TrainSpeedRow(what, str(device), calls * made / seconds, calls * job.data_chunk, busy, None,
                              waits))

    model, _, _ = build_model(job.model, allow_random=True)
    model.to(device).train()
    stage = job.stage if model.backbone is not None else 2
    if model.backbone is not None:
        model.backbone.requires_grad_(True)
        model.backbone.freeze_dead_parameters()
    cfg = TrainConfig(model=job.model, crop=job.size, num_frames=job.num_frames, batch_size=job.batch_size,
                      iters=job.iters, autocast=job.autocast, device=str(device), data="device")
    opt = make_optimizer(model, cfg, stage)
    host_gen = torch.Generator().manual_seed(0)
    noise_gen = host_gen if device.type == "cpu" else torch.Generator(device).manual_seed(0)

    batches = chunked_batches(make, batch_size=job.batch_size, chunk=job.data_chunk, first_batch=0)

    def step(k: int) -> None:
        train_step(model, opt, next(batches), stage=stage, transform=entry.transform, cfg=cfg,
                   nframes=job.num_frames, host_gen=host_gen, noise_gen=noise_gen)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, calls, busy = _timed(step, seconds=job.seconds, device=device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    waits = count_host_waits(step, 0, device)
    rows.append(TrainSpeedRow(f"train step (stage {stage})", str(device), calls * job.batch_size / seconds,
                              calls, busy, peak, waits))
    return rows


def format_train_speed(rows: list[TrainSpeedRow], *, command: str) -> str:
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.0f} %"

    def gib(x: float | None) -> str:
        return "—" if x is None else f"{x:.1f}"

    def waits(x: int | None) -> str:
        return "—" if x is None else str(x)

    head = "| what | device | windows/s | batches timed | GPU busy | peak GiB | host waits a call |"
    lines = [f"Command: `{command}`", "", head, "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.what} | {r.device} | {r.windows_per_s:.1f} | {r.batches} | {pct(r.gpu_busy)} | "
              f"{gib(r.peak_gib)} | {waits(r.host_waits)} |" for r in rows]
    return "\n".join(lines) + "\n"


def bench_train_speed(job: TrainSpeedJob) -> str:
    """Measure, write the ``train-<device kind>`` section into ``job.output`` (if any), return it."""
    from .markdown import update_markdown

    rows = measure_train_speed(job)
    body = format_train_speed(rows, command=" ".join(["daflow-vfx bench train", *job.cli_args()]))
    if job.output:
        update_markdown(job.output, f"train-{job.device.split(':')[0]}", body)
    return body
