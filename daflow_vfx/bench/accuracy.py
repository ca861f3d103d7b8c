"""Accuracy benchmark: EPE and outlier rates per model and degradation level.

``daflow-vfx bench accuracy --data DIR`` reads the pairs listed in ``DIR/pairs.csv`` (columns
``name,img1,img2,flow``, paths relative to DIR, ``.flo`` ground truth), degrades each pair at the
levels clean, mild, severe and extreme with :mod:`daflow_vfx.degrade` and a fixed seed per
(pair, level), and runs every model on the same degraded frames. Everything the models see goes
through the same colour boundary and the same engine padding as a render.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..color import resolve_colorspace, to_display
from ..errors import DaflowError, InputError, MissingInputError, UsageError, WeightsError
from ..io import open_plate, read_flo
from .markdown import update_markdown

log = logging.getLogger(__name__)

LEVELS = ("clean", "mild", "severe", "extreme")
DEFAULT_MODELS = ("daflow-compact", "daflow-compact-cnn", "dis", "farneback", "deepflow")
# Middlebury marks unknown flow with values above 1e9.
UNKNOWN_FLOW = 1e9


@dataclass(frozen=True)
class Pair:
    name: str
    img1: Path
    img2: Path
    flow: Path


@dataclass(frozen=True)
class Row:
    model: str
    level: str
    epe: float
    outliers_1px: float  # % of valid pixels with EPE > 1
    outliers_3px: float  # % of valid pixels with EPE > 3
    ms_per_pair: float
    pairs: int


def load_pairs(data_dir: str | Path) -> list[Pair]:
    root = Path(data_dir)
    index = root / "pairs.csv"
    if not index.is_file():
        raise MissingInputError(f"{index}: no pairs.csv; give a folder laid out like shared/data/flow-dev")
    pairs = []
    with index.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                pairs.append(Pair(row["name"], root / row["img1"], root / row["img2"], root / row["flow"]))
            except KeyError as exc:
                raise InputError(f"{index}: missing column {exc}; expected name,img1,img2,flow") from None
    if not pairs:
        raise InputError(f"{index}: lists no pairs")
    return pairs


def read_display(path: Path, colorspace: str = "auto", ocio_config: str | None = None) -> np.ndarray:
    """A single image through the same reader and colour boundary as a render (``--input-colorspace``)."""
    with open_plate(path) as plate:
        img = plate.read(plate.info.frames[0])
        return to_display(img, resolve_colorspace(colorspace, plate.info, ocio_config=ocio_config))


def check_levels(levels: Sequence[str]) -> None:
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad:
        raise UsageError(f"unknown degradation level {bad[0]!r} in `levels`; use {', '.join(LEVELS)}",
                         param="levels")


def read_pair(pair: Pair, colorspace: str = "auto",
              ocio_config: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A pair's frames [2, H, W, 3] (display, [0, 1]) and its ground truth [H, W, 2]."""
    frames = [read_display(p, colorspace, ocio_config) for p in (pair.img1, pair.img2)]
    return np.stack(frames), read_flo(pair.flow)


def level_seed(seed: int, index: int, level: str) -> int:
    """The degradation seed of pair ``index`` at ``level``: by the level's place in LEVELS, not in the
    request, so a level degrades the same whichever other levels (or benchmark) ask for it."""
    return seed * 100_003 + index * 101 + LEVELS.index(level)


def timed_errors(engine, frames: np.ndarray, gt: np.ndarray) -> tuple[float, float, float, int, float]:
    """Run ``engine`` on a degraded pair: :func:`flow_errors` plus the wall time in seconds."""
    t0 = time.perf_counter()
    flow = engine.estimate_pair(frames[0], frames[1])
    dt = time.perf_counter() - t0
    return (*flow_errors(flow, gt), dt)


def degrade_pair(frames: np.ndarray, gt: np.ndarray, level: str, seed: int) -> np.ndarray:
    """frames: [2, H, W, 3] display [0, 1]; gt: [H, W, 2] used for motion blur along the true motion."""
    if level == "clean":
        return frames
    from ..degrade import degrade_clip

    motion = np.where(np.abs(gt) < UNKNOWN_FLOW, gt, 0.0).astype(np.float32)[None]  # [1, H, W, 2]
    return degrade_clip(frames, preset=level, seed=seed, flows_forward=motion)


def flow_errors(flow: np.ndarray, gt: np.ndarray) -> tuple[float, float, float, int]:
    """Sum of EPE, count > 1 px, count > 3 px, and the number of valid pixels."""
    valid = np.all(np.abs(gt) < UNKNOWN_FLOW, axis=-1)
    err = np.linalg.norm(flow - gt, axis=-1)[valid]
    return float(err.sum()), float((err > 1).sum()), float((err > 3).sum()), int(valid.sum())


def parse_model_spec(spec: str) -> tuple[str, str | None, str]:
    """``NAME`` or ``NAME=WEIGHTS`` -> (registry name, weights path or None, row label).

    ``NAME=WEIGHTS`` evaluates a weights file of that variant (a checkpoint exported by
    ``daflow-vfx train export``) beside the shipped ones; its row is labelled ``NAME@<file stem>``.
    """
    name, sep, weights = spec.partition("=")
    name, weights = name.strip(), weights.strip()
    if not sep:
        return name, None, name
    if not name or not weights:
        example = "daflow-compact=runs/x/weights.safetensors"
        raise UsageError(f"model {spec!r} in `models`: write NAME=WEIGHTS, e.g. {example}", param="models")
    return name, weights, f"{name}@{Path(weights).stem}"


def run_accuracy(
    data_dir: str | Path,
    *,
    models: Sequence[str] = DEFAULT_MODELS,
    levels: Sequence[str] = LEVELS,
    seed: int = 0,
    device: str = "cpu",
    limit: int | None = None,
    iters: int | None = None,
    detail: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
    colorspace: str = "auto",
    ocio_config: str | None = None,
    dtype: str = "float32",
) -> tuple[list[Row], list[str]]:
    """Evaluate ``models`` at ``levels``; return the rows and the models skipped (with the reason).

    ``iters`` sets the DA-Flow models' refinement iterations (None: each model's registry value).
    ``detail`` is the engine's vector detail: flow at that fraction of the pair's size, upsampled.
    ``colorspace`` is how the pair images are read (``--input-colorspace``, as a render would).
    ``dtype`` is the DA-Flow models' compute dtype (as ``render --dtype``).
    """
    from ..color import check_colorspace
    from ..detail import check_detail
    from ..engine import FlowEngine
    from ..estimators import load_estimator

    check_levels(levels)
    check_detail(detail)  # here: below, an engine's usage error would only skip its model
    check_colorspace(colorspace, ocio_config)
    pairs = load_pairs(data_dir)[:limit]
    engines: dict[str, FlowEngine] = {}
    skipped: list[str] = []
    for spec in models:
        name, weights, label = parse_model_spec(spec)
        try:
            engines[label] = FlowEngine(load_estimator(name, device=device, dtype=dtype, iters=iters,
                                                       weights=weights),
                                        device=device, dtype=dtype, detail=detail)
        except DaflowError as exc:
            if weights is not None:  # the user named this file: a bad one is an error, not a skipped row
                raise
            if isinstance(exc, WeightsError):
                log.warning("skipping %s: no trained weights", label)
                skipped.append(f"{label} (no trained weights)")
            else:
                log.warning("skipping %s: %s", label, exc)
                skipped.append(f"{label}: {exc}")
    # acc[(model, level)] = [epe_sum, n1, n3, valid, seconds, pairs]
    acc: dict[tuple[str, str], np.ndarray] = {(m, lv): np.zeros(6) for m in engines for lv in levels}
    total, done = len(pairs) * len(levels), 0
    for i, pair in enumerate(pairs):
        clean, gt = read_pair(pair, colorspace, ocio_config)  # [2, H, W, 3], [H, W, 2]
        for level in levels:
            frames = degrade_pair(clean, gt, level, seed=level_seed(seed, i, level))
            for name, engine in engines.items():
                acc[(name, level)] += (*timed_errors(engine, frames, gt), 1)
            done += 1
            if progress is not None:
                progress(done, total)
    rows = []
    for (name, level), (e, n1, n3, nv, secs, n) in acc.items():
        rows.append(
            Row(
                model=name,
                level=level,
                epe=e / max(nv, 1),
                outliers_1px=100 * n1 / max(nv, 1),
                outliers_3px=100 * n3 / max(nv, 1),
                ms_per_pair=1000 * secs / max(n, 1),
                pairs=int(n),
            )
        )
    return rows, skipped


def format_table(rows: Sequence[Row]) -> str:
    """Markdown: one row per model, EPE / >3px per level, then ms per pair."""
    levels = [lv for lv in LEVELS if any(r.level == lv for r in rows)]
    models = list(dict.fromkeys(r.model for r in rows))
    by = {(r.model, r.level): r for r in rows}
    head = (
        "| model | " + " | ".join(f"{lv} EPE | {lv} >1px % | {lv} >3px %" for lv in levels) + " | ms/pair |"
    )
    sep = "|---" * (1 + 3 * len(levels) + 1) + "|"
    lines = [head, sep]
    for m in models:
        cells = []
        for lv in levels:
            r = by[(m, lv)]
            cells.append(f"{r.epe:.2f} | {r.outliers_1px:.1f} | {r.outliers_3px:.1f}")
        ms = np.mean([by[(m, lv)].ms_per_pair for lv in levels])
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {ms:.0f} |")
    return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class AccuracyJob:
    """What `daflow-vfx bench accuracy` runs."""

    data: str
    models: tuple[str, ...] = DEFAULT_MODELS
    levels: tuple[str, ...] = LEVELS
    seed: int = 0
    device: str = "cpu"
    limit: int | None = None
    iters: int | None = None
    detail: float = 1.0  # vector detail of the engine (1: full resolution)
    input_colorspace: str = "auto"  # how the pair images are read, as `render --input-colorspace`
    ocio_config: str | None = None
    dtype: str = "float32"  # compute dtype of the DA-Flow models, as `render --dtype`
    output: str | None = None  # markdown file whose accuracy section is replaced; None: none
    command: str = ""


def bench_accuracy(job: AccuracyJob, *, progress: Callable[[int, int], None] | None = None) -> str:
    """Run the benchmark, write it into ``job.output`` (if any), return the markdown section."""
    import platform

    import cv2
    import torch

    from .. import __version__

    t0 = time.perf_counter()
    rows, skipped = run_accuracy(job.data, models=job.models, levels=job.levels, seed=job.seed,
                                 device=job.device, limit=job.limit, iters=job.iters, detail=job.detail,
                                 progress=progress, colorspace=job.input_colorspace,
                                 ocio_config=job.ocio_config, dtype=job.dtype)
    minutes = (time.perf_counter() - t0) / 60
    npairs = rows[0].pairs if rows else 0
    lines = [
        "## Accuracy on degraded footage",
        "",
        f"Command: `{job.command}`" if job.command else "",
        "",
        f"{npairs} pairs from `{Path(job.data).name}`, degraded per (pair, level) with fixed seeds (seed "
        f"{job.seed}). EPE in pixels over valid ground-truth pixels; >1px / >3px are outlier rates in %. "
        f"ms/pair is wall time per pair on `{job.device}` averaged over levels."
        + (f" Flow computed at vector detail {job.detail:g} of each pair's size and upsampled (`--detail`)."
           if job.detail != 1 else "")
        + (f" Images read as `{job.input_colorspace}`." if job.input_colorspace != "auto" else "")
        + (f" DA-Flow models computed in `{job.dtype}`." if job.dtype != "float32" else ""),
        "",
        format_table(rows),
        "",
        f"daflow-vfx {__version__}, torch {torch.__version__}, OpenCV {cv2.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
        f"run took {minutes:.1f} min.",
    ]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped)]
    body = "\n".join(lines)
    if job.output:
        update_markdown(job.output, "accuracy", body)
    return body
