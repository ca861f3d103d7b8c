"""`daflow-vfx retime`: a plate in, retimed frames (an image sequence or a video) and a JSON sidecar out.

The timing comes from :mod:`daflow_vfx.vfx.timing`, the frames from the loop in
:mod:`daflow_vfx.vfx.retiming`; this module opens the plate, streams flows from the engine (or from
rendered vectors) into that loop, writes the frames and, last, the ``.retime.json`` sidecar that records
which source time, method and cut flag made each output frame.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from daflow_vfx.errors import UsageError
from daflow_vfx.jobs.options import EngineOptions, VideoOptions, build_engine, frames_read
from daflow_vfx.jobs.outputs import Progress, output_kind, sidecar_path, write_in_background
from daflow_vfx.jobs.safety import check_outputs, input_files
from daflow_vfx.vfx.retiming import (
    FrameSources,
    RetimeFrame,
    check_retime_options,
    make_plan,
    render_frames,
    shutter_spans,
)
from daflow_vfx.vfx.timing import FrameMap, curve_map, fps_map, load_curve, parse_rate, speed_map, speed_phase

if TYPE_CHECKING:
    from daflow_vfx.color import ColorSpace

log = logging.getLogger(__name__)

__all__ = ["RetimeJob", "RetimeReport", "retime_frames", "run_retime"]


@dataclass(frozen=True, kw_only=True)
class RetimeJob:
    """Everything `daflow-vfx retime` needs; exactly one of ``speed``, ``fps``, ``curve``."""

    input: str
    output: str  # image pattern with a frame token (.exr/.png/.tif/...) or a video file (.mp4/.mov/...)
    speed: float | None = None
    fps: str | None = None  # "SRC:DST"
    curve: str | None = None  # YAML file, see load_curve
    phase: float | None = None  # speed mode only; None = automatic (speed_phase)
    method: str = "motion"  # motion | blend | nearest
    splat: str = "softmax"  # softmax | average
    shutter: float = 0.0  # motion blur: open fraction of the output frame interval (0.5 = 180 degrees)
    shutter_samples: int = 8
    cuts: str = "auto"  # auto | none | frame spec of the first frames of new shots
    vectors: str | None = None  # rendered motion-vector EXR pattern to reuse instead of computing flow
    frames: str | None = None  # output frames to write (Deadline spec); None = all
    input_colorspace: str = "auto"  # short name, OCIO colour space name, or auto (see daflow_vfx.color)
    ocio_config: str | None = None  # OCIO config file or URI; None: $OCIO, else the built-in studio config
    layer: str | None = None
    start_frame: int = 1
    half: bool = True
    compression: str = "zip"
    engine: EngineOptions = field(default_factory=EngineOptions)
    video: VideoOptions = field(default_factory=VideoOptions)  # codec etc. of a video output


@dataclass(kw_only=True)
class RetimeReport:
    output: str
    sidecar: str
    mode: str  # speed | fps | curve
    frames: list[RetimeFrame] = field(default_factory=list)  # the frames written, in output order
    cuts: list[int] = field(default_factory=list)  # n: a cut between plate frames n and n + 1
    estimator: str = ""
    device: str = ""
    colorspace: str = ""
    seconds: float = 0.0


def retime_frames(job: RetimeJob, first: int, last: int) -> tuple[str, FrameMap]:
    """The timing mode and full frame map of ``job`` on a plate spanning ``first..last``."""
    modes = ("speed", "fps", "curve")
    given = [name for name in modes if getattr(job, name) is not None]
    if len(given) != 1:
        if not given:
            raise UsageError("give one timing mode: `speed` S, `fps` SRC:DST or `curve` curve.yaml",
                             param=modes)
        raise UsageError(f"give one timing mode, not {' and '.join(f'`{g}`' for g in given)}", param=given)
    mode = given[0]
    if job.phase is not None and mode != "speed":
        raise UsageError("`phase` applies to `speed` only", param=("phase", "speed"))
    if mode == "speed":
        frame_map = speed_map(first, last, job.speed, phase=job.phase)  # type: ignore[arg-type]
    elif mode == "fps":
        frame_map = fps_map(first, last, str(job.fps))
    else:
        frame_map = curve_map(load_curve(str(job.curve)), first, last)
    if not frame_map:
        raise UsageError(f"{job.input}: the timing gives no output frame on frames {first}-{last}")
    return mode, frame_map


def _parse_cuts(spec: str, first: int, last: int) -> set[int] | None:
    """``auto`` -> None (detect); ``none`` -> empty; a frame spec of new-shot frames -> intervals n."""
    from daflow_vfx.frames import parse_frames_option

    key = spec.strip().lower()
    if key == "auto":
        return None
    if key == "none":
        return set()
    starts = parse_frames_option(spec, "cuts")
    outside = [f for f in starts if not first < f <= last]
    if outside:
        raise UsageError(f"`cuts` {spec!r}: frames {outside[:5]} are not inside the plate "
                         f"({first + 1}-{last}); name the first frame of each new shot", param="cuts")
    return {f - 1 for f in starts}


def _chunk(job: RetimeJob, frame_map: FrameMap, spans: list[float]) -> tuple[FrameMap, list[float]]:
    """The part of the map ``job.frames`` asks for (a farm chunk), shutter spans kept from the whole map."""
    from daflow_vfx.frames import format_frame_spec, parse_frames_option

    if job.frames is None:
        return frame_map, spans
    wanted = set(parse_frames_option(job.frames))
    known = {f for f, _ in frame_map}
    outside = sorted(wanted - known)
    if outside:
        raise UsageError(f"`frames` {job.frames}: output frames {format_frame_spec(outside)} are not "
                         f"in the retime's output range {format_frame_spec(sorted(known))}", param="frames")
    keep = [i for i, (f, _) in enumerate(frame_map) if f in wanted]
    return [frame_map[i] for i in keep], [spans[i] for i in keep]


def run_retime(job: RetimeJob, *, progress: Progress | None = None) -> RetimeReport:
    """Retime a plate to files: the whole of `daflow-vfx retime`. See :mod:`daflow_vfx.vfx.timing`.

    Everything that can be refused (options, plate, timing, curve range, gaps, vectors, outputs against
    inputs, output folders, device, model) is checked before any folder is made, any flow is computed or
    any frame written. Every file is written atomically; the JSON sidecar comes last, after every frame.
    """
    from daflow_vfx.color import check_colorspace, resolve_colorspace
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io import open_plate
    from daflow_vfx.jobs.vectors import check_vector_files, vector_lookup, vector_pattern

    started = time.perf_counter()
    check_retime_options(job.method, job.splat, job.shutter, job.shutter_samples)
    check_colorspace(job.input_colorspace, job.ocio_config)
    is_video = output_kind(job.output) == "video"
    if is_video:
        from daflow_vfx.jobs.video_out import check_video_output

        check_video_output(job.video, job.output, ocio_config=job.ocio_config)
    out_pattern = None if is_video else SequencePattern.parse(job.output)
    if is_video and job.frames is not None:
        raise UsageError("`frames` splits image-sequence outputs across a farm; a video is written whole",
                         param="frames")
    vectors = None if job.vectors is None else vector_pattern(job.vectors)

    # gaps are checked below over the frames this job reads, so a chunk is not failed by one elsewhere
    with open_plate(job.input, layer=job.layer, start_frame=job.start_frame, allow_gaps=True) as plate:
        info = plate.info
        first, last = info.require_span(needs="retiming")
        mode, frame_map = retime_frames(job, first, last)
        # spans from the whole map: a chunk blurs like the whole
        frame_map, spans = _chunk(job, frame_map, shutter_spans(frame_map, job.shutter))
        fixed_cuts = _parse_cuts(job.cuts, first, last)
        colorspace = resolve_colorspace(job.input_colorspace, info, ocio_config=job.ocio_config)
        if is_video:
            check_video_output(job.video, job.output, ocio_config=job.ocio_config,
                               size=(info.width, info.height))
        plan = make_plan(frame_map, spans, job.shutter_samples, first, last)
        needs_flow = job.method == "motion" and bool(plan.interval_use)
        flow_frames = sorted({f for n in plan.interval_use for f in (n, n + 1)}) if needs_flow else []
        computes_flow = needs_flow and vectors is None
        reads = set(plan.last_use)
        if computes_flow:
            reads.update(frames_read(job.engine, flow_frames, first=first, last=last))
        info.check_gaps(reads, allow_gaps=False)
        if needs_flow and vectors is not None:
            check_vector_files(vectors, flow_frames, info)

        sidecar = sidecar_path(job.output, "retime")
        frame_paths = [job.output] if is_video else [out_pattern.path(f) for f, _ in frame_map]
        outputs = check_outputs({"output": [*frame_paths, sidecar]}, [
            *plate.source_files(), *input_files(job.vectors, job.curve),
            *(input_files(job.engine.weights) if computes_flow else []),
        ])

        report = RetimeReport(output=job.output, sidecar=sidecar, mode=mode, colorspace=colorspace)
        sources = FrameSources(read=plate.read, colorspace=colorspace, last_use=plan.last_use,
                               interval_use=plan.interval_use)
        stream = None
        engine = None
        if computes_flow:
            device = job.engine.resolved_device()
            engine = build_engine(job.engine, device=device)
            report.estimator, report.device = f"{engine.estimator.name} {engine.estimator.version}", device
        outputs.prepare()  # the job can run: only now are folders made (and a killed run's temps removed)
        if engine is not None:
            stream = engine.flows(sources.display, flow_frames, first=first, last=last)
            sources.flow_stream = stream
        elif needs_flow:
            sources.flow_lookup = vector_lookup(vectors, size=(info.height, info.width), label=job.input)
            report.estimator = f"vectors {job.vectors}"

        try:
            frames_out = render_frames(frame_map, plan, sources, method=job.method, splat=job.splat,
                                       fixed_cuts=fixed_cuts, records=report.frames, progress=progress)
            if is_video:
                from daflow_vfx.jobs.video_out import write_plate_video

                fps = _video_fps(mode, job, info)
                write_plate_video(job.output, (image for _, image in frames_out), fps=fps, space=colorspace,
                                  video=job.video)
            else:
                _write_sequence(job, out_pattern, frames_out, colorspace)
        finally:
            if stream is not None:
                stream.close()  # stops the engine's prefetch thread
        if sources.bad_pixels:
            log.warning("%s: sanitised %d NaN/Inf/negative pixel(s) in the frames read", job.input,
                        sources.bad_pixels)
        if fixed_cuts is None:
            report.cuts = sorted(n for n, c in sources.cut_checks.items() if c.cut)
        else:
            report.cuts = sorted(fixed_cuts)

    _write_sidecar(job, report, first, last)
    report.seconds = time.perf_counter() - started
    return report


def _write_sequence(job: RetimeJob, pattern: Any, frames_out: Iterator[tuple[int, np.ndarray]],
                    colorspace: ColorSpace) -> None:
    from daflow_vfx.io import write_image

    ext = os.path.splitext(job.output)[1].lower()
    write_in_background(
        functools.partial(write_image, pattern.path(frame),
                          image if ext == ".exr" else _to_integer_file(image, colorspace),
                          half=job.half, compression=job.compression)
        for frame, image in frames_out
    )


def _to_integer_file(image: np.ndarray, colorspace: ColorSpace) -> np.ndarray:
    """Integer files hold display or log code values: scene-linear goes through the display transform."""
    from daflow_vfx.color import is_scene_linear, to_display

    if is_scene_linear(colorspace):
        return to_display(image, colorspace)
    return image


def _video_fps(mode: str, job: RetimeJob, info: Any) -> float:
    if mode == "fps":
        _, dst = parse_rate(str(job.fps))
        return float(dst)
    return float(info.fps) if info.fps else 24.0


def _write_sidecar(job: RetimeJob, report: RetimeReport, first: int, last: int) -> None:
    """``OUTPUT.retime.json``: the job's timing and, one line per output frame, how it was made."""
    from daflow_vfx.jobs.outputs import write_text

    mode = report.mode
    payload: dict[str, Any] = {
        "version": 1,
        "input": os.path.abspath(job.input),
        "output": job.output,
        "plate": {"first": first, "last": last},
        "mode": mode,
        "speed": job.speed,
        "phase": (speed_phase(job.speed) if job.phase is None else job.phase) if mode == "speed" else None,
        "fps": job.fps,
        "curve": job.curve,
        "method": job.method,
        "splat": job.splat if job.method == "motion" else None,
        "shutter": job.shutter,
        "flows": report.estimator or None,
        "colorspace": report.colorspace,
        "cuts": [[n, n + 1] for n in report.cuts],
        "frames": [
            {"frame": f.frame, "source": round(f.source, 9), "method": f.method, "cut": f.cut,
             "sources": list(f.sources), **({"samples": f.samples} if f.samples > 1 else {})}
            for f in report.frames
        ],
    }
    if job.frames is not None:
        payload["note"] = "partial render (--frames): 'frames' lists this chunk only"
    frames = payload.pop("frames")
    # one line per output frame: readable in a text editor and diff-friendly for long shots
    body = json.dumps(payload, indent=1)[:-2]
    rows = ",\n  ".join(json.dumps(f) for f in frames)
    text = f'{body},\n "frames": [\n  {rows}\n ]\n}}\n' if frames else f'{body},\n "frames": []\n}}\n'
    write_text(report.sidecar, text)
