"""`daflow-vfx propagate`: a plate and a paint made on one of its frames in; the paint on every frame (or
comped over the plate) and the STMaps that carry it, out.

The correspondence is :mod:`daflow_vfx.vfx.correspondence` (direct matches to the reference frame, then
keyframes); this module reads the paint and the plate, checks everything that can be refused before
anything is written, and writes each frame atomically on the writer thread.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from daflow_vfx.errors import UsageError, check_choice
from daflow_vfx.jobs.options import EngineOptions, build_engine
from daflow_vfx.jobs.outputs import Progress, ProgressCounter, output_kind, write_in_background
from daflow_vfx.jobs.safety import check_outputs, input_files
from daflow_vfx.vfx.correspondence import TrackSettings, check_track_settings

__all__ = ["PropagateJob", "PropagateReport", "read_paint", "run_propagate"]


@dataclass(frozen=True, kw_only=True)
class PropagateJob:
    """Everything `daflow-vfx propagate` needs; the CLI and the host adapters fill it."""

    input: str  # the plate: image sequence pattern or video
    paint: str  # RGBA image (premultiplied; EXR, PNG or TIFF) painted on plate frame `at`
    at: int  # the plate frame the paint was made on
    output: str  # image pattern with a frame token: the paint (RGBA) or, with `comp`, the comp (RGB)
    comp: bool = False  # write the paint over the plate instead of the paint alone
    stmap: str | None = None  # EXR pattern: per frame, the STMap from that frame to frame `at`
    frames: str | None = None  # output frames (Deadline spec); None = the whole plate
    settings: TrackSettings = field(default_factory=TrackSettings)
    input_colorspace: str = "auto"
    ocio_config: str | None = None
    layer: str | None = None
    start_frame: int | None = None  # plate frame number of a video's first frame; required for a video
    half: bool = True
    compression: str = "zip"
    engine: EngineOptions = field(default_factory=EngineOptions)


@dataclass(kw_only=True)
class PropagateReport:
    output: str
    frames: list[int]
    stmap: str | None = None
    keyframes: list[int] = field(default_factory=list)  # frames other than `at` that anchored others
    estimator: str = ""
    seconds: float = 0.0


def read_paint(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """The paint at ``path`` as float32 ``[H, W, 4]`` premultiplied RGBA (OpenImageIO premultiplies PNG
    and TIFF alpha on reading). A UsageError naming ``paint`` when it has no alpha or is not ``size``."""
    from daflow_vfx.io.sequence import read_image_channels, read_image_header
    from daflow_vfx.vfx.propagation import check_paint

    header = read_image_header(path)
    if "A" not in header.channels:
        raise UsageError(f"`paint` {path} has no alpha channel (it has {', '.join(header.channels)}); "
                         "save the paint as RGBA so its alpha says where it is", param="paint")
    if not {"R", "G", "B"} <= set(header.channels):
        raise UsageError(f"`paint` {path} has no R, G, B channels (it has {', '.join(header.channels)})",
                         param="paint")
    if size is not None and (header.height, header.width) != tuple(size):
        raise UsageError(f"`paint` {path} is {header.width}x{header.height} but the plate is "
                         f"{size[1]}x{size[0]}; paint on a frame of the plate at its own size", param="paint")
    pixels = read_image_channels(path, ["R", "G", "B", "A"], what="paint")  # [H, W, 4]
    return check_paint(pixels, (header.height, header.width))


def _check_job(job: PropagateJob) -> None:
    """Everything about ``job`` that can be refused before the plate is opened."""
    from daflow_vfx.color import check_colorspace
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io.exr import LOSSLESS_COMPRESSIONS

    check_track_settings(job.settings)
    check_colorspace(job.input_colorspace, job.ocio_config)
    check_choice(job.compression, LOSSLESS_COMPRESSIONS, "compression")
    if output_kind(job.output) != "sequence":
        raise UsageError(f"`output` {job.output!r}: propagate writes an image sequence (the paint has an "
                         "alpha); use a pattern such as paint/sh010.####.exr", param="output")
    if job.stmap:
        pattern = SequencePattern.parse(job.stmap)
        if pattern is None or not pattern.suffix.lower().endswith(".exr"):
            raise UsageError(f"`stmap` {job.stmap!r} must be an EXR pattern with a frame token, such as "
                             "stmap/sh010.####.exr", param="stmap")


def _wanted(job: PropagateJob, first: int, last: int) -> list[int]:
    from daflow_vfx.frames import format_frame_spec, parse_frames_option

    if not first <= job.at <= last:
        raise UsageError(f"`at` {job.at} is outside the plate's frames {first}-{last}; give the frame the "
                         "paint was made on", param="at")
    if job.frames is None:
        return list(range(first, last + 1))
    wanted = parse_frames_option(job.frames)
    outside = [f for f in wanted if not first <= f <= last]
    if outside:
        raise UsageError(f"`frames` {job.frames}: frames {format_frame_spec(outside)} are outside the "
                         f"plate's range {first}-{last}", param="frames")
    return wanted


def _write_stmap(path: str, data: np.ndarray, compression: str) -> None:
    from daflow_vfx.io.images import write_oiio_image

    # float32: half has 11 bits of mantissa, more than a pixel of error across a 4K frame
    write_oiio_image(path, data, channel_names=("R", "G", "B", "A"), pixel_type="float",
                     attributes={"compression": compression,
                                 "daflow/stmap": "s=(x+0.5)/W, t=1-(y+0.5)/H; A=visibility"})


def run_propagate(job: PropagateJob, *, progress: Progress | None = None) -> PropagateReport:
    """Carry the paint along the surface to every frame asked for: the whole of `daflow-vfx propagate`.

    Everything that can be refused (options, paint, plate, `at`, frames, gaps, outputs against inputs,
    output folders, device, model) is checked before any folder is made or any flow computed; every
    file is written atomically.
    """
    from daflow_vfx.color import is_scene_linear, resolve_colorspace, sanitize, to_display
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io import open_plate, write_image
    from daflow_vfx.vfx.correspondence import track
    from daflow_vfx.vfx.paint_maps import map_to_stmap, over
    from daflow_vfx.vfx.propagation import carry_paint, engine_pair, focus_of

    started = time.perf_counter()
    _check_job(job)
    paint = read_paint(job.paint)  # no alpha: refused before the plate is even opened
    out_pattern = SequencePattern.parse(job.output)
    stmap_pattern = SequencePattern.parse(job.stmap) if job.stmap else None
    with open_plate(job.input, layer=job.layer, start_frame=job.start_frame or 1, allow_gaps=True) as plate:
        info = plate.info
        if info.kind == "video" and job.start_frame is None:
            raise UsageError(f"{job.input} is a video, whose frames have no numbers of their own: give "
                             "`start_frame` (the plate frame number of its first frame) so `at` names a "
                             "frame", param=("at", "start_frame"))
        first, last = info.require_span(needs="propagating paint")
        wanted = _wanted(job, first, last)
        read_paint(job.paint, (info.height, info.width))  # the size, now that the plate's is known
        walked = range(min(job.at, *wanted), max(job.at, *wanted) + 1)  # every frame the walk reads
        info.check_gaps(walked, allow_gaps=False)
        colorspace = resolve_colorspace(job.input_colorspace, info, ocio_config=job.ocio_config)
        outputs = check_outputs({
            "output": [out_pattern.path(f) for f in wanted],
            "stmap": [stmap_pattern.path(f) for f in wanted] if stmap_pattern is not None else [],
        }, [*plate.source_files(), *input_files(job.paint, job.engine.weights)])
        engine = build_engine(job.engine)
        outputs.prepare()  # the job can run: only now are folders made (and a killed run's temps removed)
        report = PropagateReport(output=job.output, frames=sorted(wanted), stmap=job.stmap,
                                 estimator=f"{engine.estimator.name} {engine.estimator.version}")
        counter = ProgressCounter(len(wanted), progress)
        integer_out = not out_pattern.suffix.lower().endswith(".exr")

        def display(frame: int) -> np.ndarray:
            return to_display(sanitize(plate.read(frame)).image, colorspace)  # [H, W, 3] display [0, 1]

        def image_of(frame: int, rgba: np.ndarray) -> np.ndarray:
            if not job.comp:
                return rgba  # [H, W, 4] the paint's own values
            raw = np.nan_to_num(plate.read(frame), nan=0.0, posinf=0.0, neginf=0.0)  # [H, W, 3] plate values
            comp = over(rgba, raw)  # linear in, linear out for EXR
            if integer_out and is_scene_linear(colorspace):
                return to_display(comp, colorspace)  # integer files hold display values
            return comp

        def results() -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
            maps = track(display, job.at, wanted, engine_pair(engine), settings=job.settings,
                         focus=focus_of(paint))
            for item in maps:
                if item.anchor not in (job.at, item.frame) and job.settings.method != "chain":
                    report.keyframes.append(item.anchor)
                st = map_to_stmap(item.where, item.alpha, paint.shape[:2]) if stmap_pattern else None
                yield item.frame, image_of(item.frame, carry_paint(paint, item)), st

        def write(frame: int, image: np.ndarray, st: np.ndarray | None) -> None:
            write_image(out_pattern.path(frame), image, half=job.half, compression=job.compression)
            if st is not None:
                _write_stmap(stmap_pattern.path(frame), st, job.compression)
            counter.tick()

        write_in_background(functools.partial(write, *item) for item in results())
    report.keyframes = sorted(set(report.keyframes))
    report.seconds = time.perf_counter() - started
    return report

