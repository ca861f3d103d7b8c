"""Speed and memory benchmark: frame pairs per second and peak memory per model and frame size.

``daflow-vfx bench speed`` times, at each size, what a render needs per frame: the forward and the
backward flow of a frame pair. Every model runs through the engine (:class:`~daflow_vfx.engine.FlowEngine`,
so padding is included) on the same synthetic textured frames, with warm-up calls and the median
over repeats:

- ``daflow-compact`` / ``daflow-full`` from the registry (random weights where no trained weights
  are present; the table says so). One call is a whole 3-frame window, 2 pairs both ways, as in a
  render; pairs/s counts those 2 pairs.
- ``dis``: OpenCV DIS, medium preset (CPU only), one pair per call.
- ``raft_small`` / ``raft_large``: torchvision's RAFT architectures with ``weights=None`` and the same
  number of refinement iterations, forward and backward batched in one call.

A reduced-precision row (``--dtypes``; on CUDA DA-Flow runs bf16 autocast by default) also reports how
far that precision moves the flow from float32 on a fixed input (:func:`daflow_vfx.numerics.autocast_epe`),
so the speed it buys is read beside what it costs.

It also measures windowed reuse on a short sequence: DA-Flow computes each frame's features once
per window and shares them between the window's pairs, against recomputing them for every pair.

And what a user waits for: end-to-end ``render`` throughput, frames per second on a generated plate
(1920x1080 by default) with decoding, colour conversion and EXR encoding included, beside the same
model's model-only pairs/s and the render's peak memory (GPU memory on CUDA, peak RSS on the CPU).

This module plans the run; one measurement is :mod:`.speed_cases` (a render: :mod:`.speed_render`), the
fresh process it runs in :mod:`.speed_worker`, the markdown :mod:`.speed_report`, and torchvision's RAFT
:mod:`.torchvision_raft`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import ModelError, UsageError
from ..numerics import AUTO_DTYPE, REDUCED_DTYPES, resolve_dtype
from ..registry import NETWORKS, model_names
from .speed_cases import RAFT_MODELS, CaseResult, CaseSpec, ReuseResult, ReuseSpec, proc_kib, set_threads
from .speed_render import RenderResult, RenderSpec
from .speed_report import format_report
from .speed_worker import measure
from .torchvision_raft import load_raft_module, torchvision_version

log = logging.getLogger(__name__)

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((960, 540), (1920, 1080), (4096, 2160))
DEFAULT_RENDER_SIZES: tuple[tuple[int, int], ...] = ((1920, 1080),)
DEFAULT_MODELS = ("daflow-compact", "daflow-full", "dis", *RAFT_MODELS)
# Compute dtypes a DA-Flow row may run in (reduced ones under autocast, weights stay float32).
DTYPES = ("float32", *REDUCED_DTYPES)
# torchvision's RAFT pools its 1/8 feature maps three times and refuses maps under 16 px.
RAFT_MIN_SIDE = 128
# daflow-full (2.35 B parameters) on a CPU: the SD3 VAE and 24 joint blocks over three frames take
# minutes per window even at 960x540, so by default it only runs on tiny quick-check sizes.
FULL_CPU_MAX_PIXELS = 128 * 128
# Host memory needed to build daflow-full at all: ~9.4 GB of float32 weights plus working space.
FULL_HOST_BYTES = 12 * 2**30


def speed_models() -> tuple[str, ...]:
    """What ``--models`` accepts: every registry model and torchvision's two RAFTs."""
    return (*[n for n in model_names() if n != "default"], *RAFT_MODELS)


# --------------------------------------------------------------------------------------------------
# options


def parse_size(text: str, *, param: str = "sizes") -> tuple[int, int]:
    """``"1920x1080"`` -> ``(1920, 1080)``; :class:`UsageError` naming ``param`` for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise UsageError(f"bad size {text.strip()!r} in `{param}`; use WIDTHxHEIGHT, e.g. 1920x1080",
                         param=param)
    return int(match.group(1)), int(match.group(2))


def parse_sizes(text: str, *, param: str = "sizes") -> tuple[tuple[int, int], ...]:
    """Comma-separated ``WIDTHxHEIGHT`` list, e.g. ``960x540,1920x1080``."""
    sizes = tuple(parse_size(part, param=param) for part in text.split(",") if part.strip())
    if not sizes:
        raise UsageError(f"`{param}` is empty; give WIDTHxHEIGHT values, e.g. 960x540,1920x1080", param=param)
    return sizes


def check_models(models: Sequence[str]) -> tuple[str, ...]:
    if not models:
        raise UsageError(f"`models` is empty; choose from {', '.join(speed_models())}", param="models")
    unknown = [m for m in models if m not in speed_models()]
    if unknown:
        known = ", ".join(speed_models())
        raise UsageError(f"unknown model {unknown[0]!r} in `models`; choose from {known}", param="models")
    return tuple(dict.fromkeys(models))


# --------------------------------------------------------------------------------------------------
# the run


@dataclass(frozen=True, kw_only=True)
class SpeedJob:
    """What `daflow-vfx bench speed` runs."""

    models: tuple[str, ...] = DEFAULT_MODELS
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    repeats: int = 3
    warmup: int = 1
    iters: int = 12
    device: str = "cpu"
    threads: int | None = None
    isolate: bool = True  # each measurement in a fresh process (see MemoryProbe)
    full_on_cpu: bool = False  # run daflow-full on the CPU at every size
    reuse_frames: int = 5  # 0: no windowed-reuse measurement
    output: str | None = None  # markdown file whose speed-cpu / speed-cuda section is replaced; None: none
    command: str = ""
    torchvision_module: str = "torchvision"  # tests name a missing module to get "unavailable" rows
    # compute dtypes of the DA-Flow rows; None: float32 on the CPU and bf16 too where the CPU has it in
    # hardware (render's --dtype auto), on CUDA the bf16 fast path (and float32 too for daflow-compact)
    dtypes: tuple[str, ...] | None = None
    # end-to-end renders of a generated plate of this many frames at each size (0: none)
    render_frames: int = 8
    render_sizes: tuple[tuple[int, int], ...] = DEFAULT_RENDER_SIZES
    batch_windows: int = 1  # the renders' --batch-windows


@dataclass(kw_only=True)
class SpeedReport:
    job: SpeedJob
    rows: list[CaseResult]
    reuse: ReuseResult | None
    renders: list[RenderResult]
    device_name: str
    threads: int
    versions: dict[str, str]
    raft_how: str
    minutes: float


def _mem_available() -> int | None:
    kib = proc_kib("MemAvailable", "/proc/meminfo")
    return None if kib is None else 1024 * kib


def _skip_reason(
    model: str, width: int, height: int, job: SpeedJob, raft_error: str | None
) -> tuple[str, str] | None:
    """(status, reason) for a case that is not run, or None to run it."""
    if model in RAFT_MODELS:
        if raft_error is not None:
            return "unavailable", raft_error
        if min(width, height) < RAFT_MIN_SIDE:
            return "skipped", f"torchvision RAFT needs frames of at least {RAFT_MIN_SIDE}x{RAFT_MIN_SIDE}"
    if model == "daflow-full":
        if job.device == "cpu" and not job.full_on_cpu and width * height > FULL_CPU_MAX_PIXELS:
            return "skipped", (
                "2.35 B parameters on the CPU: minutes per window above 128x128 pixels; "
                "run on CUDA or pass --full-on-cpu"
            )
        available = _mem_available()
        if available is not None and available < FULL_HOST_BYTES:
            return "skipped", (
                f"building it needs ~{FULL_HOST_BYTES / 2**30:.0f} GiB of host memory, "
                f"{available / 2**30:.1f} GiB available"
            )
    return None


def _planned_weights(model: str) -> str:
    if model in NETWORKS:
        return "trained" if NETWORKS[model].weights_present() else "random weights"
    return "random weights" if model in RAFT_MODELS else "-"


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def check_dtypes(dtypes: Sequence[str]) -> tuple[str, ...]:
    """The DA-Flow rows' compute dtypes, de-duplicated; UsageError for an unknown or empty list."""
    if not dtypes:
        raise UsageError(f"`dtypes` is empty; choose from {', '.join(DTYPES)}", param="dtypes")
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise UsageError(f"bad dtype {unknown[0]!r} in `dtypes`; choose from {', '.join(DTYPES)}",
                         param="dtypes")
    return tuple(dict.fromkeys(dtypes))


def _case_dtypes(model: str, device: str, dtypes: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if model not in NETWORKS:
        return ("float32",)  # RAFT and the classical rows are references, always at their own precision
    if dtypes is not None:
        return dtypes
    if not device.startswith("cuda"):
        # float32, and what `render` runs by default (--dtype auto) where that differs: bf16 on CPUs
        # with bf16 in hardware
        return tuple(dict.fromkeys(("float32", resolve_dtype(AUTO_DTYPE, device))))
    # the 2.35 B-parameter daflow-full only on the fast path; the compact variants in float32 as well
    return ("bfloat16",) if model == "daflow-full" else ("float32", "bfloat16")


def run_speed(job: SpeedJob, *, progress: Callable[[int, int], None] | None = None) -> SpeedReport:
    """Measure every (model, size) of ``job`` and the windowed reuse; no files written."""
    import cv2
    import torch

    from .. import __version__

    models = check_models(job.models)
    if not job.sizes:
        raise UsageError("no sizes to measure; give `sizes` as WIDTHxHEIGHT[,...]", param="sizes")
    if job.repeats < 1 or job.warmup < 0 or job.iters < 1:
        raise UsageError("`repeats` and `iters` must be at least 1, `warmup` at least 0",
                         param=("repeats", "iters", "warmup"))
    if job.dtypes is not None:
        check_dtypes(job.dtypes)
    if job.reuse_frames != 0 and job.reuse_frames < 3:
        raise UsageError(f"`reuse_frames` must be 0 (off) or at least 3, got {job.reuse_frames}",
                         param="reuse_frames")
    if job.render_frames != 0 and job.render_frames < 2:
        raise UsageError(f"`render_frames` must be 0 (off) or at least 2, got {job.render_frames}",
                         param="render_frames")
    if job.batch_windows < 1:
        raise UsageError(f"`batch_windows` must be 1 or more, got {job.batch_windows}", param="batch_windows")
    t0 = time.perf_counter()

    raft_error: str | None = None
    raft_how = "not used"
    if any(m in RAFT_MODELS for m in models):
        try:
            _, raft_how = load_raft_module(job.torchvision_module)
        except ModelError as exc:
            raft_error = str(exc)
            raft_how = f"unavailable ({raft_error})"

    # On CUDA, DA-Flow runs under bf16 autocast (the fast path) and daflow-compact also in float32,
    # so the table shows what reduced precision buys; everything else runs in float32.
    planned: list[tuple[str, int, int, str]] = [
        (m, w, h, dt)
        for (w, h) in job.sizes
        for m in models
        for dt in _case_dtypes(m, job.device, job.dtypes)
    ]
    reuse_size = min(job.sizes, key=lambda s: s[0] * s[1])
    do_reuse = job.reuse_frames > 0 and "daflow-compact" in models
    # renders: the registry's models only (torchvision's RAFT is a reference, not something render runs)
    render_plan = [
        (m, w, h, dt)
        for (w, h) in (job.render_sizes if job.render_frames else ())
        for m in models if m not in RAFT_MODELS
        for dt in _case_dtypes(m, job.device, job.dtypes)
    ]
    total = len(planned) + int(do_reuse) + len(render_plan)
    done = 0
    rows: list[CaseResult] = []
    # in-process runs set the thread count for this process: restore it afterwards
    old_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        for model, w, h, dtype in planned:
            skip = _skip_reason(model, w, h, job, raft_error)
            if skip is not None:
                rows.append(CaseResult(model=model, width=w, height=h, status=skip[0], reason=skip[1],
                                       weights=_planned_weights(model)))
                log.info("%s at %dx%d: %s (%s)", model, w, h, *skip)
            else:
                spec = CaseSpec(model=model, width=w, height=h, device=job.device, dtype=dtype,
                                iters=job.iters, repeats=job.repeats, warmup=job.warmup, threads=job.threads,
                                torchvision_module=job.torchvision_module)
                log.info("measuring %s at %dx%d", model, w, h)
                result = measure({"kind": "case", **asdict(spec)}, isolate=job.isolate)
                row = CaseResult(**result)
                if not row.weights:
                    row = replace(row, weights=_planned_weights(model))
                rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total)
        reuse: ReuseResult | None = None
        if do_reuse:
            rspec = ReuseSpec(frames=job.reuse_frames, width=reuse_size[0], height=reuse_size[1],
                              device=job.device, iters=job.iters, repeats=job.repeats, warmup=job.warmup,
                              threads=job.threads)
            log.info("measuring windowed reuse of daflow-compact over %d frames", job.reuse_frames)
            reuse = ReuseResult(**measure({"kind": "reuse", **asdict(rspec)}, isolate=job.isolate))
            done += 1
            if progress is not None:
                progress(done, total)
        renders = []
        for model, w, h, dtype in render_plan:
            skip = _skip_reason(model, w, h, job, None)
            if skip is not None:
                renders.append(RenderResult(model=model, width=w, height=h, status=skip[0], reason=skip[1]))
            else:
                log.info("measuring a render of %d %dx%d frames with %s", job.render_frames, w, h, model)
                pspec = RenderSpec(model=model, width=w, height=h, frames=job.render_frames,
                                   device=job.device, dtype=dtype, iters=job.iters, warmup=job.warmup,
                                   threads=job.threads, batch_windows=job.batch_windows)
                result = measure({"kind": "render", **asdict(pspec)}, isolate=job.isolate)
                renders.append(RenderResult(**result))
            done += 1
            if progress is not None:
                progress(done, total)
        threads = next((r.threads for r in rows if r.threads), None) or set_threads(job.threads)
    finally:
        torch.set_num_threads(old_threads[0])
        cv2.setNumThreads(old_threads[1])

    tv = torchvision_version(job.torchvision_module)
    versions = {
        "daflow-vfx": __version__,
        "torch": torch.__version__,
        "OpenCV": cv2.__version__,
        "torchvision": tv if tv is not None else "not installed",
    }
    return SpeedReport(
        job=job,
        rows=rows,
        reuse=reuse,
        renders=renders,
        device_name=device_name(job.device),
        threads=threads,
        versions=versions,
        raft_how=raft_how,
        minutes=(time.perf_counter() - t0) / 60,
    )


def bench_speed(job: SpeedJob, *, progress: Callable[[int, int], None] | None = None) -> str:
    """Run the benchmark, write it into ``job.output`` (if any), return the markdown section.

    The section is per device kind (``speed-cpu`` / ``speed-cuda``), so a GPU run does not replace the
    CPU table.
    """
    from .markdown import update_markdown

    report = run_speed(job, progress=progress)
    body = format_report(report)
    if job.output:
        section = "speed-cuda" if job.device.startswith("cuda") else "speed-cpu"
        update_markdown(Path(job.output), section, body)
    return body
