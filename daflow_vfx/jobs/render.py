"""`daflow-vfx render`: motion-vector EXRs for a plate, one file per frame, farm-friendly."""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from daflow_vfx.engine import FrameFlows, plan_windows
from daflow_vfx.errors import FrameSizeError, MissingFramesError, check_choice
from daflow_vfx.estimators import model_window
from daflow_vfx.jobs.options import EngineOptions, build_engine
from daflow_vfx.jobs.outputs import (
    Progress,
    ProgressCounter,
    exr_pattern,
    prepare_folders,
    write_in_background,
)

log = logging.getLogger(__name__)

__all__ = ["RenderJob", "RenderReport", "render"]


@dataclass(frozen=True, kw_only=True)
class RenderJob:
    """Everything `daflow-vfx render` needs; the CLI fills it from options and presets."""

    input: str
    output: str  # pattern with a frame token, e.g. vectors/sh010.####.exr
    frames: str | None = None  # Deadline frame spec; None = the whole plate
    layout: str = "nuke"
    input_colorspace: str = "auto"
    layer: str | None = None
    start_frame: int = 1
    compression: str = "zip"
    half: bool = True  # False = float32 channels (--float)
    skip_existing: bool = False
    allow_gaps: bool = False
    engine: EngineOptions = field(default_factory=EngineOptions)


@dataclass(kw_only=True)
class RenderReport:
    output: str
    frames: list[int]  # frames asked for
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # complete outputs left alone (--skip-existing)
    bad_pixels: int = 0  # NaN/Inf/negative pixels sanitised in the frames read
    estimator: str = ""
    estimator_version: str = ""
    device: str = ""
    colorspace: str = ""
    seconds: float = 0.0


def _check_sequence_headers(path: str, info, frames: list[int], *, window: int) -> None:
    """Read the header of every sequence file the job will touch, before any output is written.

    A size change or an unreadable header mid-sequence would otherwise surface only when that frame
    is reached, after earlier outputs were written. Headers cost a few hundred bytes each; pixels
    that are truncated behind a valid header are still caught, later, by the reader.
    """
    if info.kind != "sequence" or len(info.frames) < 2:
        return
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io.sequence import read_image_header

    pattern = SequencePattern.parse(path)
    if pattern is None:
        return
    first, last = min(info.frames), max(info.frames)
    held = set(info.missing)
    needed = sorted({f for win in plan_windows(frames, first=first, last=last, window=window) for f in win})
    for frame in needed:
        if frame in held:
            continue
        header = read_image_header(pattern.path(frame))
        if (header.width, header.height) != (info.width, info.height):
            raise FrameSizeError(f"{pattern.path(frame)}: frame {frame} is {header.width}x{header.height} "
                                 f"but frame {first} is {info.width}x{info.height}; reformat the plate to "
                                 "one size")


def render(job: RenderJob, *, progress: Progress | None = None) -> RenderReport:
    """Render motion-vector EXRs for ``job``: the whole of `daflow-vfx render`.

    Order matters for farm use: everything that can be refused (options, plate, frame list, output
    folder) is checked before the estimator loads and before any frame is computed.
    """
    from daflow_vfx.color import COLORSPACES, resolve_colorspace, sanitize, to_display
    from daflow_vfx.frames import format_frame_spec, parse_frame_spec
    from daflow_vfx.io import open_plate
    from daflow_vfx.io.exr import LAYOUTS, LOSSLESS_COMPRESSIONS, is_complete_exr, write_motion_exr

    started = time.perf_counter()
    check_choice(job.layout, LAYOUTS, "layout")
    check_choice(job.compression, LOSSLESS_COMPRESSIONS, "compression")
    check_choice(job.input_colorspace, COLORSPACES, "input_colorspace")
    pattern = exr_pattern(job.output)
    requested = parse_frame_spec(job.frames) if job.frames else None

    opened = open_plate(job.input, layer=job.layer, start_frame=job.start_frame, allow_gaps=job.allow_gaps)
    with opened as plate:
        info = plate.info
        first, last = info.require_span(needs="flow")
        wanted = requested if requested is not None else list(range(first, last + 1))
        outside = [f for f in wanted if not first <= f <= last]
        if outside:
            raise MissingFramesError(f"{job.input}: frames {format_frame_spec(outside)} are outside the "
                                     f"plate's range {first}-{last}; fix `frames`", missing=outside,
                                     param="frames")
        colorspace = resolve_colorspace(job.input_colorspace, info)
        outputs = {f: pattern.path(f) for f in wanted}
        _check_sequence_headers(job.input, info, wanted, window=model_window(job.engine.model))
        prepare_folders(outputs.values())
        # after the file checks: "auto" may import torch, which a bad task should not wait for
        device = job.engine.resolved_device()

        report = RenderReport(output=job.output, frames=list(wanted), device=device, colorspace=colorspace)
        if job.skip_existing:
            report.skipped = [f for f in wanted if is_complete_exr(outputs[f])]
            if report.skipped:
                log.info("skipping %d complete output(s): %s", len(report.skipped),
                         format_frame_spec(report.skipped))
        skipped = set(report.skipped)
        todo = [f for f in wanted if f not in skipped]
        counter = ProgressCounter(len(wanted), progress)
        counter.tick(len(skipped))
        if not todo:
            report.seconds = time.perf_counter() - started
            return report

        engine = build_engine(job.engine, device=device)
        estimator = engine.estimator
        report.estimator, report.estimator_version = estimator.name, estimator.version
        bad_pixels = 0  # only the prefetch thread writes it

        def read_display(frame: int) -> np.ndarray:
            nonlocal bad_pixels
            clean = sanitize(plate.read(frame))
            if clean.bad_pixels:
                log.info("frame %d: sanitised %d NaN/Inf/negative pixel(s)", frame, clean.bad_pixels)
                bad_pixels += clean.bad_pixels
            return to_display(clean.image, colorspace)  # [H, W, 3] display [0, 1]

        base_meta: dict[str, str | int | float] = {
            "estimator": estimator.name,
            "estimatorVersion": estimator.version,
            "sourcePlate": os.path.abspath(job.input),  # patterns too: farm logs need the full path
            "inputColorspace": colorspace,
        }
        if estimator.weights_sha256:
            base_meta["weightsSha256"] = estimator.weights_sha256

        def write(flows: FrameFlows) -> None:
            prev, cur, nxt = flows.source_frames
            meta = dict(base_meta)
            meta["frame"] = cur
            meta["sourceFrames"] = ",".join("none" if f is None else str(f) for f in (prev, cur, nxt))
            write_motion_exr(
                outputs[cur],
                forward=flows.forward,
                backward=flows.backward,
                layout=job.layout,
                confidence=flows.confidence_forward,
                half=job.half,
                compression=job.compression,
                metadata=meta,
            )
            report.written.append(cur)
            counter.tick()

        flows = engine.flows(read_display, todo, first=first, last=last)
        write_in_background(functools.partial(write, f) for f in flows)
        report.bad_pixels = bad_pixels

    if report.bad_pixels:
        log.warning("%s: sanitised %d NaN/Inf/negative pixel(s) in the frames read", job.input,
                    report.bad_pixels)
    report.seconds = time.perf_counter() - started
    return report
