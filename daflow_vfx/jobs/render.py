"""`daflow-vfx render`: motion-vector EXRs for a plate, one file per frame, farm-friendly."""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from daflow_vfx.engine import FrameFlows
from daflow_vfx.errors import FrameSizeError, MissingFramesError, check_choice
from daflow_vfx.jobs.options import EngineOptions, build_engine, frames_read
from daflow_vfx.jobs.outputs import Progress, ProgressCounter, exr_pattern, write_in_background
from daflow_vfx.jobs.resume import RenderStamp, plate_fingerprint, settings_text
from daflow_vfx.jobs.safety import check_outputs, input_files

log = logging.getLogger(__name__)

__all__ = ["RenderJob", "RenderReport", "render"]


@dataclass(frozen=True, kw_only=True)
class RenderJob:
    """Everything `daflow-vfx render` needs; the CLI fills it from options and presets."""

    input: str
    output: str  # pattern with a frame token, e.g. vectors/sh010.####.exr
    frames: str | None = None  # Deadline frame spec; None = the whole plate
    layout: str = "nuke"
    input_colorspace: str = "auto"  # short name, OCIO colour space name, or auto (see daflow_vfx.color)
    ocio_config: str | None = None  # OCIO config file or URI; None: $OCIO, else the built-in studio config
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


def _check_sequence_headers(path: str, info, needed: list[int]) -> None:
    """Read the header of every sequence file the job will read, before any output is written.

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
    first = min(info.frames)
    held = set(info.missing)
    for frame in needed:
        if frame in held:
            continue
        header = read_image_header(pattern.path(frame))
        if (header.width, header.height) != (info.width, info.height):
            raise FrameSizeError(f"{pattern.path(frame)}: frame {frame} is {header.width}x{header.height} "
                                 f"but frame {first} is {info.width}x{info.height}; reformat the plate to "
                                 "one size")


def _stamp(job: RenderJob, plate, colorspace: str) -> RenderStamp:
    """What this render records in each header and what ``skip_existing`` compares (see :mod:`.resume`)."""
    from daflow_vfx.devices import dtype_that_runs, parse_memory_size
    from daflow_vfx.estimators import DEFAULT_MODEL, resolve_default_model

    engine = job.engine
    model = resolve_default_model() if engine.model == DEFAULT_MODEL else engine.model
    settings = {
        "model": model,
        "weights": os.path.abspath(engine.weights) if engine.weights else None,
        "iters": engine.iters,
        # the precision that runs (auto resolves per machine), so a resume elsewhere sees the difference
        "dtype": dtype_that_runs(model, engine.dtype, engine.device),
        "tile": engine.tile,
        "tilePad": engine.tile_pad,
        "maxMemory": parse_memory_size(engine.max_memory),
        "layout": job.layout,
        "float": not job.half,
        "compression": job.compression,
        "colorspace": colorspace,
        "layer": job.layer,
        "allowGaps": job.allow_gaps,
    }
    if engine.detail != 1:
        # only when reduced: outputs rendered before `detail` existed were computed at full detail, are
        # bit-identical to a detail-1 render and stay complete; any other detail is another render
        settings["detail"] = float(engine.detail)
    info = plate.info
    source_id = plate_fingerprint(plate.source_files(), extra={"startFrame": job.start_frame})
    return RenderStamp(width=info.width, height=info.height, layout=job.layout,
                       source_plate=os.path.abspath(job.input), source_id=source_id,
                       settings=settings_text(settings))


def _split_existing(outputs: dict[int, str], stamp: RenderStamp) -> tuple[list[int], dict[int, str]]:
    """Existing outputs -> (frames that are complete for this job, {frame: why another one is not})."""
    kept: list[int] = []
    stale: dict[int, str] = {}
    for frame, path in outputs.items():
        if not os.path.lexists(path):
            continue
        reason = stamp.mismatch(path, frame)
        if reason is None:
            kept.append(frame)
        else:
            stale[frame] = reason
    return kept, stale


def _log_stale(stale: dict[int, str]) -> None:
    from daflow_vfx.frames import frames_phrase

    by_reason: dict[str, list[int]] = {}
    for frame, reason in stale.items():
        by_reason.setdefault(reason, []).append(frame)
    for reason, frames in by_reason.items():
        log.warning("redoing the output of %s: it %s", frames_phrase(frames), reason)


def render(job: RenderJob, *, progress: Progress | None = None) -> RenderReport:
    """Render motion-vector EXRs for ``job``: the whole of `daflow-vfx render`.

    Order matters for farm use: everything that can be refused (options, plate, frame list, gaps,
    outputs against inputs, output folders, device, model) is checked before any folder is created or
    any frame is computed, so a task that fails early leaves nothing behind.
    """
    from daflow_vfx.color import check_colorspace, resolve_colorspace, sanitize, to_display
    from daflow_vfx.frames import format_frame_spec, parse_frames_option
    from daflow_vfx.io import open_plate
    from daflow_vfx.io.exr import LAYOUTS, LOSSLESS_COMPRESSIONS, write_motion_exr

    started = time.perf_counter()
    check_choice(job.layout, LAYOUTS, "layout")
    check_choice(job.compression, LOSSLESS_COMPRESSIONS, "compression")
    check_colorspace(job.input_colorspace, job.ocio_config)
    pattern = exr_pattern(job.output)
    # `is not None`: an empty spec (a farm substitution that gave nothing) is an error, not "all frames"
    requested = parse_frames_option(job.frames) if job.frames is not None else None

    # Gaps are checked below, only over the frames this job reads: a chunk is not failed by a gap elsewhere.
    with open_plate(job.input, layer=job.layer, start_frame=job.start_frame, allow_gaps=True) as plate:
        info = plate.info
        first, last = info.require_span(needs="flow")
        wanted = requested if requested is not None else list(range(first, last + 1))
        outside = [f for f in wanted if not first <= f <= last]
        if outside:
            raise MissingFramesError(f"{job.input}: frames {format_frame_spec(outside)} are outside the "
                                     f"plate's range {first}-{last}; fix `frames`", missing=outside,
                                     param="frames")
        needed = frames_read(job.engine, wanted, first=first, last=last)
        info.check_gaps(needed, allow_gaps=job.allow_gaps, allow_param="allow_gaps")
        colorspace = resolve_colorspace(job.input_colorspace, info, ocio_config=job.ocio_config)
        outputs = {f: pattern.path(f) for f in wanted}
        _check_sequence_headers(job.input, info, needed)
        plan = check_outputs({"output": outputs.values()},
                             [*plate.source_files(), *input_files(job.engine.weights)])
        # after the file checks: "auto" may import torch, which a bad task should not wait for
        device = job.engine.resolved_device()
        stamp = _stamp(job, plate, colorspace)

        report = RenderReport(output=job.output, frames=list(wanted), device=device, colorspace=colorspace)
        if job.skip_existing:
            report.skipped, stale = _split_existing(outputs, stamp)
            if report.skipped:
                log.info("skipping %d complete output(s): %s", len(report.skipped),
                         format_frame_spec(report.skipped))
            _log_stale(stale)
        skipped = set(report.skipped)
        todo = [f for f in wanted if f not in skipped]
        engine = build_engine(job.engine, device=device) if todo else None
        plan.prepare()  # the job can run: only now are folders made (and a killed run's temps removed)
        counter = ProgressCounter(len(wanted), progress)
        counter.tick(len(skipped))
        if engine is None:
            report.seconds = time.perf_counter() - started
            return report

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
            "inputColorspace": colorspace,
            "detail": repr(float(job.engine.detail)),  # the vector detail, also at 1 (settings omit it there)
            **stamp.attributes(),  # sourcePlate (the full path: farm logs need it), sourceId, settings
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
