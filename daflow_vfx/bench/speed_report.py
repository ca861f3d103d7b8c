"""The markdown of ``bench speed``: the table of cases, the windowed-reuse table and the text around them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .speed_cases import NUMERICS_SIZE, CaseResult, ReuseResult
from .speed_render import format_render_table

if TYPE_CHECKING:  # pragma: no cover - the report only reads a SpeedReport; speed.py imports this module
    from .speed import SpeedReport

# The row every other row's pairs/s is compared with, at the same size.
REFERENCE = "raft_large"
_MIB = 2**20


def _num(value: float) -> str:
    """Three significant figures without exponents: 1234 -> '1234', 12.34 -> '12.3', 0.01234 -> '0.0123'."""
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.{max(0, 2 - int(np.floor(np.log10(value))))}f}" if value > 0 else "0"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / _MIB:.0f}"


def _numerics_cell(row: CaseResult) -> str:
    if row.epe_vs_float32 is None or row.epe_max_vs_float32 is None:
        return "-"
    return f"{row.epe_vs_float32:.4f} ({row.epe_max_vs_float32:.3f})"


def format_table(rows: Sequence[CaseResult]) -> str:
    """Markdown: one row per (size, model, dtype); pairs/s ratio against raft_large at the same size."""
    reference = {r.size: r.pairs_per_s for r in rows if r.model == REFERENCE and r.pairs_per_s}
    lines = [
        f"| model | weights | size | dtype | pairs/s | ms/pair | vs {REFERENCE} | peak MiB | Δ MiB | "
        "Δ flow vs float32, px | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.status != "ok" or not r.pairs_per_s:
            reason = f"skipped ({r.reason})" if r.status == "skipped" else f"{r.status}: {r.reason}"
            empty = " | ".join("-" * 7)  # dtype to Δ flow
            lines.append(f"| {r.model} | {r.weights or '-'} | {r.size} | {empty} | {reason} |")
            continue
        ref = reference.get(r.size)
        ratio = f"{r.pairs_per_s / ref:.2f}x" if ref else "-"
        ms = r.ms_per_pair
        lines.append(
            f"| {r.model} | {r.weights} | {r.size} | {r.dtype} | {_num(r.pairs_per_s)} | "
            f"{_num(ms) if ms else '-'} | {ratio} | {_mib(r.peak_bytes)} | {_mib(r.delta_bytes)} | "
            f"{_numerics_cell(r)} | {r.note} |"
        )
    return "\n".join(lines)


def format_reuse(reuse: ReuseResult, *, iters: int) -> str:
    head = (
        f"Windowed reuse, `{reuse.model}` ({reuse.weights or 'random weights'}), {reuse.frames} frames at "
        f"{reuse.width}x{reuse.height}, {iters} iterations, forward and backward flow of all "
        f"{reuse.frames - 1} pairs"
    )
    if reuse.status != "ok" or reuse.windowed_s is None or reuse.per_pair_s is None:
        return f"{head}: {reuse.status}: {reuse.reason}"
    saving = reuse.saving or 0.0
    per_pair = (
        f"| per pair (each pair a 2-frame window) | {reuse.per_pair_passes} | {_num(reuse.per_pair_s)} | - |"
    )
    windowed = (
        f"| windowed (3-frame windows, the render path) | {reuse.windowed_passes} | "
        f"{_num(reuse.windowed_s)} | {100 * saving:.0f}% |"
    )
    return "\n".join(
        [
            f"{head}:",
            "",
            "| path | frame feature passes | seconds | saving |",
            "|---|---|---|---|",
            per_pair,
            windowed,
        ]
    )


def format_report(report: SpeedReport) -> str:
    job = report.job
    kind = "CUDA" if job.device.startswith("cuda") else "CPU"
    memory = (
        "peak MiB is `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` (the DIS row: "
        "process peak RSS)"
        if kind == "CUDA"
        else "peak MiB is the process's peak resident set (VmHWM)"
    )
    isolation = (
        "each measurement in a fresh process"
        if job.isolate
        else "all measurements in one process (memory of later rows may be understated)"
    )
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    lines = [
        f"## Speed and memory ({kind})",
        "",
        f"Command: `{job.command}`" if job.command else "",
        "",
        f"Device: {report.device_name} (`{job.device}`), threads: {report.threads}. {versions}. "
        f"torchvision RAFT: {report.raft_how}.",
        "",
        "pairs/s: forward plus backward flow of one frame pair per second, what `render` needs per frame "
        f"(median of {job.repeats} timed calls after {job.warmup} warm-up call(s); DA-Flow rows time one "
        "3-frame window, 2 pairs, as a render does; RAFT rows batch both directions). "
        f"vs {REFERENCE}: pairs/s over {REFERENCE}'s at the same size (above 1 is faster). "
        f"{job.iters} refinement iterations for DA-Flow and RAFT. {memory}; Δ MiB is the peak above the "
        f"memory in use after the model was built; {isolation}. Random weights time the same "
        "architectures as trained ones. Δ flow vs float32 (reduced-precision DA-Flow rows): mean (max) "
        "endpoint distance between the row's flow and float32's on a fixed 3-frame window of "
        f"{NUMERICS_SIZE[1]}x{NUMERICS_SIZE[0]} (or the row's size if smaller; "
        "`daflow_vfx.numerics.autocast_epe`), same weights and device.",
        "",
        format_table(report.rows),
    ]
    if report.reuse is not None:
        lines += ["", format_reuse(report.reuse, iters=job.iters)]
    if report.renders:
        peak = "GPU memory (`torch.cuda.max_memory_allocated`)" if kind == "CUDA" else "the peak resident set"
        lines += [
            "",
            f"End-to-end `render`, what a user waits for: a generated plate of {job.render_frames} frames "
            "(half-float EXR, zip) rendered to motion-vector EXRs by `daflow_vfx.jobs.render.render`, "
            "decoding, colour conversion and EXR encoding included; one render timed from call to return, "
            f"model loading included, after {job.warmup} warm-up render(s) of the first 3 frames. Model-only "
            "pairs/s: the same model, size and dtype in the table above. Peak MiB: "
            f"{peak} during the timed render.",
            "",
            format_render_table(report.renders, report.rows),
        ]
    lines += ["", f"Run took {report.minutes:.1f} min."]
    return "\n".join(lines)
