"""`daflow-vfx bench propagate`: how well paint stays on the surface, against naive chaining.

On the plate of :mod:`.propagate_plate` (known geometry, severe degradation by default) a grey disc is
painted on frame 0 and carried to every frame, once through anchors (:mod:`daflow_vfx.vfx.correspondence`)
and once by chaining frame-to-frame flows. For frames +12, +24, +48 (those the plate has):

- **drift**: over the pixels where the paint truly is and is not hidden, the mean distance (frame-k
  pixels) between a pixel and the true frame-k position of the paint sample it shows;
- **kept**: the mean alpha the method gives those pixels (a method that hid everything would show no
  drift and keep nothing);

and over all frames, **occlusion**: the share of truly hidden paint pixels given alpha <= 0.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from daflow_vfx.bench.propagate_plate import TestPlate, apply_homography, make_test_plate, paint_disc

__all__ = ["PropagateBenchJob", "PropagateRow", "bench_propagate", "format_markdown", "ground_truth",
           "measure", "run_propagate_bench"]

OFFSETS = (12, 24, 48)

Progress = Callable[[int, int], None]


@dataclass(frozen=True, kw_only=True)
class PropagateBenchJob:
    model: str = "daflow-compact"
    device: str = "cpu"
    frames: int = 49
    width: int = 320
    height: int = 192
    preset: str | None = "severe"  # degrade preset; None: clean plate
    seed: int = 0
    methods: tuple[str, ...] = ("anchored", "chain")
    threads: int | None = None
    output: str | None = None  # markdown file whose section is replaced (bench/markdown.py); None: none
    command: str = ""


@dataclass(kw_only=True)
class PropagateRow:
    method: str
    drift: dict[int, float] = field(default_factory=dict)  # offset -> mean px
    kept: dict[int, float] = field(default_factory=dict)  # offset -> mean alpha on visible paint
    occluded_cleared: float = float("nan")  # share of truly hidden paint pixels with alpha <= 0.1
    occluded_pixels: int = 0
    keyframes: list[int] = field(default_factory=list)
    seconds: float = 0.0


def ground_truth(plate: TestPlate, k: int,
                 paint_alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame k -> reference (true) map [H, W, 2], the true paint mask [H, W] and frame-k positions' map."""
    from daflow_vfx.vfx.paint_maps import identity_map, inside, sample

    h, w = paint_alpha.shape
    grid = identity_map(h, w).astype(np.float64)
    to_ref = plate.homographies[0] @ np.linalg.inv(plate.homographies[k])
    true_where = apply_homography(to_ref, grid).astype(np.float32)  # [H, W, 2]
    painted = (sample(paint_alpha, true_where, border="zero") > 0.5) & inside(true_where, h, w)
    return true_where, painted, grid


def measure(plate: TestPlate, maps: np.ndarray, alpha: np.ndarray, paint_alpha: np.ndarray,
            row: PropagateRow) -> PropagateRow:
    """Fill ``row`` from the maps ``[N, H, W, 2]`` a method gave and the alpha ``[N, H, W]`` of the paint
    it carried (the paint's own alpha through the map, times visibility)."""
    hidden_total = 0
    hidden_cleared = 0
    for k in range(1, len(maps)):
        _, painted, grid = ground_truth(plate, k, paint_alpha)
        visible = painted & ~plate.occluder[k]
        hidden = painted & plate.occluder[k]
        hidden_total += int(hidden.sum())
        hidden_cleared += int((alpha[k][hidden] <= 0.1).sum())
        if k in OFFSETS and visible.any():
            # where the paint sample shown at each pixel truly is on frame k
            shown_at = apply_homography(plate.homographies[k] @ np.linalg.inv(plate.homographies[0]),
                                        maps[k].astype(np.float64))
            err = np.linalg.norm(shown_at - grid, axis=-1)[visible]
            row.drift[k] = float(err.mean())
            row.kept[k] = float(alpha[k][visible].mean())
    row.occluded_pixels = hidden_total
    row.occluded_cleared = hidden_cleared / hidden_total if hidden_total else float("nan")
    return row


def run_propagate_bench(job: PropagateBenchJob, *, progress: Progress | None = None) -> list[PropagateRow]:
    from daflow_vfx.engine import FlowEngine
    from daflow_vfx.vfx.correspondence import TrackSettings
    from daflow_vfx.vfx.propagation import propagate

    plate = make_test_plate(frames=job.frames, width=job.width, height=job.height, seed=job.seed,
                            preset=job.preset)
    paint = paint_disc(job.height, job.width, plate.paint_centre, radius=0.1 * job.height)
    engine = FlowEngine(job.model, device=job.device, threads=job.threads)
    rows = []
    for done, method in enumerate(job.methods):
        if progress is not None:
            progress(done, len(job.methods))
        started = time.perf_counter()
        result = propagate(plate.frames, paint, 0, engine=engine, settings=TrackSettings(method=method))
        keyframes = sorted({a for a in result.anchors if a != 0}) if method != "chain" else []
        row = PropagateRow(method=method, seconds=time.perf_counter() - started, keyframes=keyframes)
        rows.append(measure(plate, result.maps, result.rgba[..., 3], paint[..., 3], row))
    if progress is not None:
        progress(len(job.methods), len(job.methods))
    return rows


def bench_propagate(job: PropagateBenchJob, *, progress: Progress | None = None) -> str:
    """Run the benchmark, write its section into ``job.output`` (if any), return the markdown."""
    from daflow_vfx.bench.markdown import update_markdown

    body = format_markdown(job, run_propagate_bench(job, progress=progress), job.command)
    if job.output:
        update_markdown(job.output, "propagate", body)
    return body


def format_markdown(job: PropagateBenchJob, rows: list[PropagateRow], command: str) -> str:
    offsets = [k for k in OFFSETS if k < job.frames]
    head = ["method", *[f"drift +{k} (px)" for k in offsets], *[f"kept +{k}" for k in offsets],
            "occluded paint cleared", "keyframes", "seconds"]
    lines = [
        "## Paint propagation",
        "",
        f"Plate: {job.width}x{job.height}, {job.frames} frames, textured plane under perspective motion "
        f"crossed by a disc, degrade preset `{job.preset or 'none'}` (seed {job.seed}); paint: a disc of "
        f"radius {0.1 * job.height:g} px on frame 0; model `{job.model}` on {job.device}.",
        "Drift: mean distance from each visible paint pixel to where the paint it shows truly is (frame-k "
        "pixels). Kept: mean alpha there. Cleared: truly hidden paint pixels given alpha <= 0.1, all frames.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for row in rows:
        cells = [row.method]
        cells += [f"{row.drift[k]:.2f}" if k in row.drift else "-" for k in offsets]
        cells += [f"{row.kept[k]:.2f}" if k in row.kept else "-" for k in offsets]
        cells.append(f"{100 * row.occluded_cleared:.1f} % of {row.occluded_pixels}"
                     if row.occluded_pixels else "-")
        cells.append(", ".join(str(k) for k in row.keyframes) or "-")
        cells.append(f"{row.seconds:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if command:
        lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"
