"""`daflow-vfx stabilize`: a plate in; stabilized frames, the ``.stabilize.json`` sidecar, a Nuke node and
STMaps out.

Flows come from the engine or from rendered vectors; the camera maths is :mod:`daflow_vfx.vfx.stabilization`.
The sidecar holds, per frame, the matrix from an output pixel to the plate pixel it samples (conventions
in the document itself); it is written last, after every frame, next to the output
(:func:`~daflow_vfx.jobs.outputs.sidecar_path`) unless ``json_path`` names it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from daflow_vfx.errors import InputError, MissingFramesError, SequenceTooShortError, UsageError, check_choice
from daflow_vfx.jobs.options import EngineOptions, VideoOptions, build_engine
from daflow_vfx.jobs.outputs import (
    Progress,
    ProgressCounter,
    output_kind,
    sidecar_path,
    write_in_background,
    write_text,
)
from daflow_vfx.jobs.safety import check_outputs, input_files
from daflow_vfx.jobs.vectors import check_vector_files, vector_pattern
from daflow_vfx.vfx.camera_motion import apply_matrix, estimate_camera_motion, frame_centre, normalise
from daflow_vfx.vfx.stabilization import (
    StabilizePlan,
    StabilizeSettings,
    check_settings,
    parse_crop,
    plan_stabilization,
    stmap,
    warp_frame,
)

__all__ = ["StabilizeJob", "StabilizeReport", "run_stabilize"]


@dataclass(frozen=True, kw_only=True)
class StabilizeJob:
    """Everything `daflow-vfx stabilize` needs; the CLI fills it from its options."""

    input: str
    output: str  # image pattern with a frame token (EXR/PNG/TIFF/...) or a video file
    settings: StabilizeSettings = field(default_factory=StabilizeSettings)
    fps: float | None = None  # None: the video's rate, else 24
    frames: str | None = None  # a contiguous Deadline range such as 1001-1100; None = the whole plate
    vectors: str | None = None  # rendered motion-vector EXR pattern to reuse instead of computing flow
    stmap: str | None = None  # STMap EXR pattern to write
    nk: str | None = None  # Nuke snippet file to write
    json_path: str | None = None  # sidecar; None = OUTPUT base + ".stabilize.json"
    input_colorspace: str = "auto"  # short name, OCIO colour space name, or auto (see daflow_vfx.color)
    ocio_config: str | None = None  # OCIO config file or URI; None: $OCIO, else the built-in studio config
    layer: str | None = None
    start_frame: int = 1
    half: bool = True  # EXR output channels
    compression: str = "zip"
    engine: EngineOptions = field(default_factory=EngineOptions)
    video: VideoOptions = field(default_factory=VideoOptions)  # codec etc. of a video output


@dataclass(kw_only=True)
class StabilizeReport:
    output: str
    frames: list[int]
    json_path: str
    nk_path: str | None = None
    stmap: str | None = None
    crop: float = 1.0
    crop_limited: bool = False
    shake_before: float = 0.0  # rms frame-to-frame jerk of the frame centre, source pixels
    shake_after: float = 0.0
    estimator: str = ""  # flow model, or "vectors"
    seconds: float = 0.0


def _centre_shake(matrices: np.ndarray, size: tuple[int, int]) -> float:
    """rms second difference of where the frame centre goes: the frame-to-frame jerk people see."""
    centre = np.array([frame_centre(size)])
    track = np.stack([apply_matrix(m, centre)[0] for m in matrices])  # [N, 2]
    if len(track) < 3:
        return 0.0
    return float(np.sqrt((np.diff(track, n=2, axis=0) ** 2).sum(axis=1).mean()))


def _json_document(job: StabilizeJob, plan: StabilizePlan, frames: list[int], size: tuple[int, int],
                   fps: float) -> dict:
    h, w = size
    s = job.settings

    def mat(m: np.ndarray) -> list[list[float]]:
        return [[float(f"{v:.10g}") for v in row] for row in m]

    return {
        "tool": "daflow-vfx stabilize",
        "version": 1,
        "source": os.path.abspath(job.input),
        "output": job.output,
        "width": w,
        "height": h,
        "fps": fps,
        "mode": s.mode,
        "fit": s.fit,
        "method": "lock" if s.lock else s.method,
        "smooth_seconds": s.smooth,
        "strength": s.strength,
        "crop": {"request": str(parse_crop(s.crop)), "scale": plan.crop, "limited": plan.crop_limited},
        "fill": s.fill,
        "conventions": {
            "coordinates": "pixel indices: +x right, +y down, top-left pixel centre at (0, 0)",
            "matrix": "3x3 row-major homography on column vectors [x, y, 1] with a homogeneous divide",
            "frames": "frame -> matrix mapping an OUTPUT pixel of the stabilized frame to the SOURCE pixel "
                      "of the plate frame it is sampled from: out(q) = plate(M @ q)",
            "motion": "frame n -> matrix mapping a pixel of plate frame n to plate frame n+1 (camera motion)",
            "nuke": "Nuke coordinates are X = x + 0.5, Y = height - 0.5 - y (origin bottom-left, +Y up)",
        },
        "frames": {str(f): mat(m) for f, m in zip(frames, plan.transforms, strict=True)},
        "motion": {str(f): mat(m) for f, m in zip(frames[:-1], plan.motions, strict=True)},
    }


def _check_frames(spec: str | None, first: int, last: int, source: str) -> list[int]:
    from daflow_vfx.frames import format_frame_spec, parse_frames_option

    if spec is None:  # an empty spec (a farm substitution that gave nothing) is an error, not "all"
        return list(range(first, last + 1))
    wanted = parse_frames_option(spec)
    outside = [f for f in wanted if not first <= f <= last]
    if outside:
        raise MissingFramesError(f"{source}: frames {format_frame_spec(outside)} are outside the plate's "
                                 f"range {first}-{last}; fix `frames`", missing=outside, param="frames")
    if wanted != list(range(wanted[0], wanted[-1] + 1)):
        raise UsageError(f"`frames` {spec}: stabilizing needs a contiguous range such as "
                         f"{wanted[0]}-{wanted[-1]}, not a list or a stepped range", param="frames")
    if len(wanted) < 2:
        raise SequenceTooShortError(f"{source}: `frames` {spec} is one frame; stabilizing needs at least two",
                                    param="frames")
    return wanted


def _motions_from_vectors(pattern_text: str, wanted: list[int], size: tuple[int, int],
                          settings: StabilizeSettings, tick: Callable[[], None]) -> list[np.ndarray]:
    """Camera motions from rendered motion-vector EXRs, one file at a time (never all flows in memory)."""
    from daflow_vfx.frames import format_frame_spec
    from daflow_vfx.io import is_complete_exr
    from daflow_vfx.jobs.vectors import read_vector_flows

    pattern = vector_pattern(pattern_text)
    needed = wanted[:-1]
    missing = [f for f in needed if not is_complete_exr(pattern.path(f))]
    if missing:
        raise MissingFramesError(f"{pattern_text}: vectors for frames {format_frame_spec(missing)} are "
                                 "missing or unreadable; render them (daflow-vfx render --skip-existing)",
                                 missing=missing)
    motions = []
    for f in needed:
        flows = read_vector_flows(pattern_text, [f], size=size)[f]
        if flows.forward is not None:
            motion = estimate_camera_motion(flows.forward, confidence=flows.confidence_forward,
                                            mode=settings.mode, method=settings.fit)
        else:
            # A pass with no forward flow (rendered as a plate's last frame): use frame f+1's backward one.
            if not is_complete_exr(pattern.path(f + 1)):
                raise MissingFramesError(f"{pattern.path(f)}: has no forward vectors and frame {f + 1} has "
                                         "no vectors; render the range again", missing=[f + 1])
            nxt = read_vector_flows(pattern_text, [f + 1], size=size)[f + 1]
            if nxt.backward is None:
                raise InputError(f"{pattern.path(f)}: no forward vectors, and {pattern.path(f + 1)} no "
                                 "backward vectors; render the vectors over the whole range")
            back = estimate_camera_motion(nxt.backward, confidence=nxt.confidence_backward,
                                          mode=settings.mode, method=settings.fit)
            motion = normalise(np.linalg.inv(back))
        motions.append(motion)
        tick()
    return motions


def _write_stmap(path: str, data: np.ndarray, compression: str) -> None:
    from daflow_vfx.io.images import write_oiio_image

    # float32: half has 11 bits of mantissa, which is more than a pixel of error across a 4K frame.
    write_oiio_image(path, data, channel_names=("R", "G", "B", "A"), pixel_type="float",
                     attributes={"compression": compression, "daflow/stmap": "s=(x+0.5)/W, t=1-(y+0.5)/H"})


def _check_job(job: StabilizeJob) -> str:
    """Everything about ``job`` that can be refused before the plate is opened; the output's kind."""
    from daflow_vfx.color import check_colorspace
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io.exr import LOSSLESS_COMPRESSIONS
    from daflow_vfx.jobs.video_out import check_video_output

    check_settings(job.settings)
    check_colorspace(job.input_colorspace, job.ocio_config)
    check_choice(job.compression, LOSSLESS_COMPRESSIONS, "compression")
    if job.fps is not None and not (math.isfinite(job.fps) and job.fps > 0):
        raise UsageError(f"`fps` {job.fps} must be a positive frame rate such as 24 or 23.976", param="fps")
    kind = output_kind(job.output)
    if kind == "video":
        check_video_output(job.video, job.output, ocio_config=job.ocio_config)
    if job.stmap:
        pattern = SequencePattern.parse(job.stmap)
        if pattern is None or not pattern.suffix.lower().endswith(".exr"):
            raise UsageError(f"`stmap` {job.stmap!r} must be an EXR pattern with a frame token, such as "
                             "stmap/sh010.####.exr", param="stmap")
    return kind


def run_stabilize(job: StabilizeJob, *, progress: Progress | None = None) -> StabilizeReport:
    """`daflow-vfx stabilize`: flows (engine or vectors) -> motions -> plan -> frames, JSON, .nk, STMaps.

    Everything that can be refused (options, plate, frames, gaps, vectors, outputs against inputs, output
    folders, device, model) is checked before any folder is made or any flow computed. Two passes over
    the plate: flows and motions first (one pair in memory at a time), then the warp; EXR output keeps
    the plate's values, 8/16-bit images and video get the display-referred values the flows were
    computed on.
    """
    from daflow_vfx.color import resolve_colorspace, sanitize, to_display
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io import PrefetchReader, open_plate, write_image

    started = time.perf_counter()
    kind = _check_job(job)
    stmap_pattern = SequencePattern.parse(job.stmap) if job.stmap else None
    out_pattern = SequencePattern.parse(job.output) if kind == "sequence" else None
    json_path = job.json_path or sidecar_path(job.output, "stabilize")

    # gaps are checked over the frames this job reads, so a range is not failed by a gap outside it
    with open_plate(job.input, layer=job.layer, start_frame=job.start_frame, allow_gaps=True) as plate:
        info = plate.info
        first, last = info.require_span(needs="stabilizing")
        wanted = _check_frames(job.frames, first, last, job.input)
        info.check_gaps(wanted, allow_gaps=False)
        fps = float(job.fps or info.fps or 24.0)
        settings = check_settings(replace(job.settings, fps=fps))
        colorspace = resolve_colorspace(job.input_colorspace, info, ocio_config=job.ocio_config)
        size = (info.height, info.width)
        if kind == "video":
            from daflow_vfx.jobs.video_out import check_video_output, write_plate_video

            check_video_output(job.video, job.output, ocio_config=job.ocio_config,
                               size=(info.width, info.height))
        if job.vectors:
            check_vector_files(vector_pattern(job.vectors), wanted[:-1], info)
        plan_outputs = check_outputs({
            "output": [out_pattern.path(f) for f in wanted] if out_pattern else [job.output],
            "json_path": [json_path],
            "stmap": [stmap_pattern.path(f) for f in wanted] if stmap_pattern is not None else [],
            "nk": [job.nk] if job.nk else [],
        }, [*plate.source_files(), *input_files(job.vectors),
            *(input_files(job.engine.weights) if not job.vectors else [])])
        engine = None if job.vectors else build_engine(job.engine)
        plan_outputs.prepare()  # the job can run: only now are folders made (and stale temps removed)
        counter = ProgressCounter(2 * len(wanted), progress)

        if engine is None:
            estimator_name = "vectors"
            motions = _motions_from_vectors(job.vectors, wanted, size, settings, counter.tick)
        else:
            estimator_name = engine.estimator.name

            def read_display(frame: int) -> np.ndarray:
                return to_display(sanitize(plate.read(frame)).image, colorspace)  # [H, W, 3] display

            motions = []
            for flows in engine.flows(read_display, wanted[:-1], first=wanted[0], last=wanted[-1]):
                motions.append(estimate_camera_motion(flows.forward, confidence=flows.confidence_forward,
                                                      mode=settings.mode, method=settings.fit))
                counter.tick()
        counter.tick()  # the last frame needs no flow

        plan = plan_stabilization(motions, size=size, settings=settings)
        report = StabilizeReport(output=job.output, frames=list(wanted), json_path=json_path,
                                 crop=plan.crop, crop_limited=plan.crop_limited, estimator=estimator_name,
                                 shake_before=_centre_shake(plan.path, size),
                                 shake_after=_centre_shake(plan.smoothed, size))

        # Plate values stay as they are in EXR; integer images hold display values, video those of
        # `video.output_colorspace` (write_plate_video converts).
        display_out = kind != "video" and not out_pattern.suffix.lower().endswith(".exr")
        transforms = dict(zip(wanted, plan.transforms, strict=True))

        def read_raw(frame: int) -> np.ndarray:
            raw = plate.read(frame)
            # NaN/Inf would smear through the filter; negatives are legitimate linear values and stay.
            return np.nan_to_num(raw, nan=0.0, posinf=np.finfo(np.float32).max, neginf=0.0)

        def warped() -> Iterator[tuple[int, np.ndarray]]:
            with PrefetchReader(read_raw, wanted, depth=4) as reader:
                for frame, raw in reader:
                    image = warp_frame(raw, transforms[frame], fill=settings.fill,
                                       interpolation=settings.interpolation)
                    yield frame, (to_display(image, colorspace) if display_out else image)

        def write_stmap(frame: int) -> None:
            if stmap_pattern is not None:
                _write_stmap(stmap_pattern.path(frame), stmap(transforms[frame], size), job.compression)

        def write_frame(frame: int, image: np.ndarray) -> None:
            write_image(out_pattern.path(frame), image, half=job.half, compression=job.compression)
            write_stmap(frame)
            counter.tick()

        if kind == "video":

            def frames_for_video() -> Iterator[np.ndarray]:
                for frame, image in warped():
                    write_stmap(frame)
                    counter.tick()
                    yield image

            write_plate_video(job.output, frames_for_video(), fps=fps, space=colorspace, video=job.video)
        else:
            write_in_background(functools.partial(write_frame, frame, image) for frame, image in warped())

    document = _json_document(job, plan, wanted, size, fps)
    document["flow"] = estimator_name
    document["inputColorspace"] = colorspace
    write_text(json_path, json.dumps(document, indent=1) + "\n")
    if job.nk:
        from daflow_vfx.vfx.nuke_snippet import nuke_snippet

        node = "CornerPin2D" if settings.mode in ("affine", "perspective") else "Transform"
        text = nuke_snippet(wanted, plan.transforms, width=size[1], height=size[0], node=node,
                            label=f"daflow-vfx stabilize {settings.mode}")
        write_text(job.nk, text)
        report.nk_path = job.nk
    report.stmap = job.stmap
    report.seconds = time.perf_counter() - started
    return report
