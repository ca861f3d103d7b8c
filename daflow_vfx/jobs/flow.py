"""`daflow-vfx flow IMG1 IMG2 -o OUT.flo|OUT.exr`: the flow between two images."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from daflow_vfx.errors import FrameSizeError, UsageError
from daflow_vfx.jobs.options import EngineOptions, build_engine
from daflow_vfx.jobs.safety import check_outputs, input_files

log = logging.getLogger(__name__)

__all__ = ["FlowJob", "FlowReport", "flow_pair"]


@dataclass(frozen=True, kw_only=True)
class FlowJob:
    """`daflow-vfx flow IMG1 IMG2 -o OUT.flo|OUT.exr`."""

    image1: str
    image2: str
    output: str
    input_colorspace: str = "auto"
    ocio_config: str | None = None  # OCIO config file or URI; None: $OCIO, else the built-in studio config
    layer: str | None = None
    layout: str = "nuke"
    half: bool = True
    compression: str = "zip"
    engine: EngineOptions = field(default_factory=EngineOptions)


@dataclass(kw_only=True)
class FlowReport:
    output: str
    width: int
    height: int
    estimator: str
    estimator_version: str
    mean_magnitude: float  # mean forward flow length in pixels, a quick sanity number


def _read_single(path: str, *, layer: str | None, colorspace: str,
                 ocio_config: str | None = None) -> tuple[np.ndarray, str, int, list[str]]:
    """The first frame of ``path`` in display values, its colour space, its sanitised pixel count and the
    files it came from (which the output must not overwrite)."""
    from daflow_vfx.color import resolve_colorspace, sanitize, to_display
    from daflow_vfx.io import open_plate

    with open_plate(path, layer=layer, allow_gaps=True) as plate:
        space = resolve_colorspace(colorspace, plate.info, ocio_config=ocio_config)
        clean = sanitize(plate.read(plate.info.frames[0]))
        files = plate.source_files()
    return to_display(clean.image, space), space, clean.bad_pixels, files


def flow_pair(job: FlowJob) -> FlowReport:
    """Flow between two images, written as Middlebury ``.flo`` (forward) or a motion EXR (both ways)."""
    from daflow_vfx.color import check_colorspace

    ext = os.path.splitext(job.output)[1].lower()
    if ext not in (".flo", ".exr"):
        raise UsageError(f"`output` {job.output!r} must end in .flo or .exr", param="output")
    check_colorspace(job.input_colorspace, job.ocio_config)
    device = job.engine.resolved_device()
    first, _, bad1, files1 = _read_single(job.image1, layer=job.layer, colorspace=job.input_colorspace,
                                          ocio_config=job.ocio_config)
    second, _, bad2, files2 = _read_single(job.image2, layer=job.layer, colorspace=job.input_colorspace,
                                           ocio_config=job.ocio_config)
    if first.shape != second.shape:
        raise FrameSizeError(f"{job.image2} is {second.shape[1]}x{second.shape[0]} but {job.image1} is "
                             f"{first.shape[1]}x{first.shape[0]}; both images must have the same size")
    if bad1 or bad2:
        log.warning("sanitised %d NaN/Inf/negative pixel(s) in the inputs", bad1 + bad2)
    plan = check_outputs({"output": [job.output]}, [*files1, *files2, *input_files(job.engine.weights)])
    engine = build_engine(job.engine, device=device)
    plan.prepare()  # only now, with the model loaded, is a folder made
    result = engine.estimate_window(np.stack([first, second]), label=f"{job.image1} -> {job.image2}")
    forward, backward = result.forward[0], result.backward[0]  # [H, W, 2] each
    estimator = engine.estimator
    if ext == ".flo":
        from daflow_vfx.io.flo import write_flo

        write_flo(job.output, forward)
    else:
        from daflow_vfx.io.exr import write_motion_exr

        meta: dict[str, str | int | float] = {
            "estimator": estimator.name,
            "estimatorVersion": estimator.version,
            "sourceFrames": f"{job.image1},{job.image2}",
            "detail": repr(float(job.engine.detail)),
        }
        if estimator.weights_sha256:
            meta["weightsSha256"] = estimator.weights_sha256
        confidence = None if result.confidence_forward is None else result.confidence_forward[0]
        write_motion_exr(job.output, forward=forward, backward=backward, layout=job.layout,
                         confidence=confidence, half=job.half, compression=job.compression, metadata=meta)
    return FlowReport(
        output=job.output,
        width=forward.shape[1],
        height=forward.shape[0],
        estimator=estimator.name,
        estimator_version=estimator.version,
        mean_magnitude=float(np.linalg.norm(forward, axis=-1).mean()),
    )
