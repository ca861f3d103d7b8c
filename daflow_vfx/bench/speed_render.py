"""End-to-end ``render`` throughput for ``bench speed``: what a user waits for, I/O included.

A plate of synthetic frames is written as a half-float EXR sequence into a temporary folder, then
:func:`daflow_vfx.jobs.render.render` (the whole of ``daflow-vfx render``: decode, colour conversion,
the engine's overlapped pipeline, EXR encoding, atomic writes) renders motion vectors for every frame.
One render is timed from the call to its return, loading the model included; warm-up renders of the
plate's first three frames run before it in the same process, so one-off start-up costs (the first
kernels, the weights file coming off the disk) are not counted. Peak memory is measured around the
timed render (:class:`~daflow_vfx.bench.speed_cases.MemoryProbe`: GPU memory on CUDA, peak RSS on the
CPU), in a fresh process by default like every other measurement.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .speed_cases import CaseResult, MemoryProbe, set_threads, synthetic_frames

__all__ = ["RenderSpec", "RenderResult", "format_render_table", "measure_render"]

_MIB = 2**20


@dataclass(frozen=True, kw_only=True)
class RenderSpec:
    """One end-to-end render measurement; plain values so it travels to a worker process as JSON."""

    model: str
    width: int
    height: int
    frames: int = 8
    device: str = "cpu"
    dtype: str = "float32"
    iters: int = 12
    warmup: int = 1
    threads: int | None = None
    batch_windows: int = 1


@dataclass(frozen=True, kw_only=True)
class RenderResult:
    model: str
    width: int
    height: int
    status: str  # "ok", "skipped", "unavailable" or "failed"
    reason: str = ""
    frames: int = 0
    dtype: str = ""
    batch_windows: int = 1
    seconds: float | None = None  # the timed render, model loading included
    frames_per_s: float | None = None
    peak_bytes: int | None = None
    memory: str = ""  # "rss" or "cuda"
    note: str = ""

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def write_plate(folder: str, *, frames: int, width: int, height: int) -> str:
    """``frames`` synthetic frames as ``folder/plate.####.exr`` (half float, zip), frames 1001 on."""
    from ..io.images import write_image

    images = synthetic_frames(frames, width, height)  # [N, H, W, 3]
    for i, image in enumerate(images):
        write_image(os.path.join(folder, f"plate.{1001 + i:04d}.exr"), image)
    return os.path.join(folder, "plate.####.exr")


def measure_render(spec: RenderSpec) -> RenderResult:
    """Write the plate, run the warm-up renders, then time one render of the whole plate."""
    from ..jobs.options import EngineOptions
    from ..jobs.render import RenderJob, render

    set_threads(spec.threads)
    engine = EngineOptions(model=spec.model, device=spec.device, dtype=spec.dtype,
                           iters=spec.iters if spec.model.startswith("daflow") else None,
                           threads=spec.threads, batch_windows=spec.batch_windows)
    on_gpu = spec.device.startswith("cuda") and spec.model not in ("dis", "farneback", "deepflow")
    with tempfile.TemporaryDirectory(prefix="daflow-bench-render-") as tmp:
        plate = write_plate(tmp, frames=spec.frames, width=spec.width, height=spec.height)
        for k in range(spec.warmup):
            render(RenderJob(input=plate, output=os.path.join(tmp, f"warm{k}", "v.####.exr"),
                             frames=f"1001-{1000 + min(3, spec.frames)}", engine=engine))
        probe = MemoryProbe(spec.device if on_gpu else "cpu")
        probe.start()
        t0 = time.perf_counter()
        report = render(RenderJob(input=plate, output=os.path.join(tmp, "out", "v.####.exr"), engine=engine))
        seconds = time.perf_counter() - t0
        peak, _ = probe.stop()
    written = len(report.written)
    return RenderResult(
        model=spec.model, width=spec.width, height=spec.height, status="ok", frames=written,
        dtype=spec.dtype if report.estimator.startswith("daflow") else "-",
        batch_windows=spec.batch_windows, seconds=seconds, frames_per_s=written / seconds,
        peak_bytes=peak, memory=probe.kind,
        note="" if probe.reset_ok else "peak RSS not resettable here: includes the plate's writing",
    )


def _num(value: float | None) -> str:
    """As the case table writes numbers (three significant figures), so a row's pairs/s reads the same."""
    from .speed_report import _num as three_figures  # speed_report imports this module: import here

    return "-" if value is None else three_figures(value)


def format_render_table(rows: Sequence[RenderResult], cases: Sequence[CaseResult]) -> str:
    """Markdown: one row per render measurement, the model-only pairs/s of the same model, size and
    dtype beside it (a frame of a render needs one pair's forward and backward flow)."""
    model_only = {(c.model, c.size, c.dtype): c.pairs_per_s for c in cases if c.status == "ok"}
    lines = [
        "| model | plate | dtype | batch | frames | render frames/s | render s | model-only pairs/s | "
        "peak MiB | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.status != "ok":
            lines.append(f"| {r.model} | {r.size} | - | - | - | - | - | - | - | {r.status}: {r.reason} |")
            continue
        # the DIS row of the case table says uint8: it has no compute dtype of its own
        pairs = model_only.get((r.model, r.size, r.dtype)) or model_only.get((r.model, r.size, "uint8"))
        peak = "—" if r.peak_bytes is None else f"{r.peak_bytes / _MIB:.0f}"
        lines.append(f"| {r.model} | {r.size} | {r.dtype} | {r.batch_windows} | {r.frames} | "
                     f"{_num(r.frames_per_s)} | {_num(r.seconds)} | {_num(pairs)} | {peak} | {r.note} |")
    return "\n".join(lines)
