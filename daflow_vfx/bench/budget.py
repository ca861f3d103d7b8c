"""Backbone token budget: accuracy of a DA-Flow model on large frames against its attention budget.

The lifted MM-DiT attends jointly over every token of a window, so its cost is quadratic in tokens.
Above ``DAFlow.max_backbone_tokens`` tokens per frame the backbone sees a downscaled window (the CNN
branch still sees full resolution). ``daflow-vfx bench budget`` measures what a budget costs in
accuracy where it matters, on frames larger than the budget: the pairs of ``--data`` are upscaled
by ``--scale`` (frames bicubic, ground truth nearest and multiplied by the scale, so it stays exact
for the upscaled frames), degraded with the same seeds as ``bench accuracy``, and run at each budget.
DIS on the same frames is the reference row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .accuracy import (
    LEVELS,
    UNKNOWN_FLOW,
    check_levels,
    degrade_pair,
    level_seed,
    load_pairs,
    read_pair,
    timed_errors,
)
from .markdown import update_markdown

__all__ = ["BudgetJob", "BudgetRow", "bench_budget", "parse_budgets", "run_budget", "upscale_pair"]


@dataclass(frozen=True)
class BudgetRow:
    label: str  # "1024" (tokens per frame) or a reference model's name
    level: str
    epe: float
    ms_per_pair: float
    pairs: int


def parse_budgets(text: str) -> tuple[int, ...]:
    """``"2048,1024"`` -> (2048, 1024): backbone budgets in tokens per frame, each at least 1."""
    try:
        budgets = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        example = "2048,1024,512"
        raise UsageError(f"`budgets` {text!r}: give comma-separated whole numbers, e.g. {example}",
                         param="budgets") from None
    if not budgets or min(budgets) < 1:
        raise UsageError(f"`budgets` {text!r}: give at least one budget, each at least 1", param="budgets")
    return budgets


def upscale_pair(frames: np.ndarray, gt: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """frames [2, H, W, 3] in [0, 1] and gt [H, W, 2] -> both at ``scale`` x the size (gt in new pixels)."""
    import cv2

    h, w = gt.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2: (width, height)
    up = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames]).clip(0.0, 1.0)
    g = cv2.resize(gt, size, interpolation=cv2.INTER_NEAREST)
    # unknown flow (Middlebury's > 1e9) stays unknown; known flow is in pixels of the new frame
    g = np.where(np.abs(g) < UNKNOWN_FLOW, g * scale, g)
    return up.astype(np.float32), g.astype(np.float32)


def run_budget(
    data_dir: str | Path,
    *,
    model: str = "daflow-compact",
    weights: str | None = None,
    budgets: Sequence[int] = (2048, 1024, 512),
    scale: float = 2.0,
    levels: Sequence[str] = ("clean", "severe"),
    reference: str | None = "dis",
    seed: int = 0,
    device: str = "cpu",
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[BudgetRow]:
    from ..engine import FlowEngine
    from ..estimators import load_estimator

    check_levels(levels)
    if scale <= 0:
        raise UsageError(f"`scale` {scale}: must be above 0", param="scale")
    pairs = load_pairs(data_dir)[:limit]
    estimator = load_estimator(model, device=device, weights=weights)
    net = getattr(estimator, "model", None)
    if net is None or getattr(net, "backbone", None) is None:
        raise UsageError(f"model {model!r} has no diffusion backbone, so no token budget to measure")
    engine = FlowEngine(estimator, device=device)
    # (label, engine, budget): each budget through the one model, then the reference as it is
    runs: list[tuple[str, FlowEngine, int | None]] = [(str(b), engine, b) for b in budgets]
    if reference:
        runs.append((reference, FlowEngine(load_estimator(reference, device=device), device=device), None))
    # acc[(label, level)] = [epe_sum, valid, seconds, pairs]
    acc = {(label, lv): np.zeros(4) for label, _, _ in runs for lv in levels}
    total, done = len(pairs) * len(levels), 0
    for i, pair in enumerate(pairs):
        clean, gt = upscale_pair(*read_pair(pair), scale)
        for level in levels:
            frames = degrade_pair(clean, gt, level, seed=level_seed(seed, i, level))
            for label, eng, budget in runs:
                if budget is not None:
                    # The budget is an inference setting of this benchmark's own model instance,
                    # read by every forward call.
                    net.max_backbone_tokens = budget
                e, _, _, nv, dt = timed_errors(eng, frames, gt)
                acc[(label, level)] += (e, nv, dt, 1)
            done += 1
            if progress is not None:
                progress(done, total)
    return [
        BudgetRow(label=lb, level=lv, epe=e / max(nv, 1), ms_per_pair=1000 * s / max(n, 1), pairs=int(n))
        for (lb, lv), (e, nv, s, n) in acc.items()
    ]


def format_table(rows: Sequence[BudgetRow]) -> str:
    levels = [lv for lv in LEVELS if any(r.level == lv for r in rows)]
    labels = list(dict.fromkeys(r.label for r in rows))
    by = {(r.label, r.level): r for r in rows}
    lines = [
        "| backbone tokens per frame | " + " | ".join(f"{lv} EPE" for lv in levels) + " | ms/pair |",
        "|---" * (len(levels) + 2) + "|",
    ]
    for lb in labels:
        ms = np.mean([by[(lb, lv)].ms_per_pair for lv in levels])
        cells = " | ".join(f"{by[(lb, lv)].epe:.3f}" for lv in levels)
        lines.append(f"| {lb if lb.isdigit() else f'{lb} (reference)'} | {cells} | {ms:.0f} |")
    return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class BudgetJob:
    """What `daflow-vfx bench budget` runs."""

    data: str
    model: str = "daflow-compact"
    weights: str | None = None
    budgets: tuple[int, ...] = (2048, 1024, 512)
    scale: float = 2.0
    levels: tuple[str, ...] = ("clean", "severe")
    seed: int = 0
    device: str = "cpu"
    limit: int | None = None
    output: str | None = None  # markdown file whose section is replaced (bench/markdown.py); None: none
    command: str = ""


def bench_budget(job: BudgetJob, *, progress: Callable[[int, int], None] | None = None) -> str:
    """Run the benchmark, write it into ``job.output`` (if any), return the markdown section."""
    import torch

    from .. import __version__

    t0 = time.perf_counter()
    rows = run_budget(job.data, model=job.model, weights=job.weights, budgets=job.budgets, scale=job.scale,
                      levels=job.levels, seed=job.seed, device=job.device, limit=job.limit, progress=progress)
    minutes = (time.perf_counter() - t0) / 60
    npairs = rows[0].pairs if rows else 0
    body = "\n".join([
        "## Backbone token budget on large frames",
        "",
        f"Command: `{job.command}`" if job.command else "",
        "",
        f"{npairs} pairs from `{Path(job.data).name}` upscaled {job.scale:g}x (frames bicubic, ground truth "
        f"nearest x{job.scale:g}), degraded with the seeds of `bench accuracy` (seed {job.seed}), through "
        f"`{job.model}`{f' ({job.weights})' if job.weights else ''} with the backbone limited to each number "
        "of tokens per frame (above it the backbone sees a downscaled window). Mean EPE in pixels of the "
        f"upscaled frames; ms/pair is wall time per pair on `{job.device}`.",
        "",
        format_table(rows),
        "",
        f"daflow-vfx {__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"run took {minutes:.1f} min.",
    ])
    if job.output:
        update_markdown(Path(job.output), "budget", body)
    return body
