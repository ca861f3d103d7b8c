"""`daflow-vfx propagate`: paint once, and the paint follows the surface through the shot."""

from __future__ import annotations

import click

from daflow_vfx.cli._common import (
    ProgressPrinter,
    colorspace_option,
    config_option,
    engine_options,
    exr_options,
    layer_option,
)
from daflow_vfx.cli._signals import stops_cleanly_on_signals
from daflow_vfx.jobs.options import EngineOptions
from daflow_vfx.vfx.correspondence import METHODS


@click.command("propagate")
@click.argument("input_path", metavar="PLATE")
@click.option("--paint", required=True, metavar="IMAGE",
              help="RGBA paint (premultiplied; EXR, PNG or TIFF) made on plate frame --at, at the plate's "
              "size.")
@click.option("--at", "at", required=True, type=int, metavar="FRAME", help="The plate frame the paint is on.")
@click.option("-o", "--output", required=True, metavar="PATTERN",
              help="Output sequence, e.g. paint/sh010.####.exr: the paint with its alpha on every frame "
              "(or, with --comp, comped over the plate).")
@click.option("--comp", is_flag=True, default=False,
              help="Write the paint over the plate instead of the paint alone (EXR: linear in, linear out).")
@click.option("--stmap", default=None, metavar="PATTERN",
              help="Also write, per frame k, the STMap from k to frame --at (EXR; s, t normalised, origin "
              "bottom-left, pixel centres, as Nuke's STMap node reads them; A = where the surface is seen).")
@click.option("--frames", default=None, metavar="SPEC",
              help="Frames to write, Deadline syntax (default: the whole plate).")
@click.option("--method", type=click.Choice(METHODS), default="anchored", show_default=True,
              help="anchored: direct matches to --at, keyframes when they stop matching; chain: naive "
              "frame-to-frame chaining (for comparison).")
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0), default=0.6, show_default=True,
              help="Match score under which a new keyframe is taken.")
@click.option("--steady", type=float, default=32.0, show_default=True, metavar="PX",
              help="Hold the paint steady with a local affine fit of the vectors over this radius (Gaussian "
              "sigma, pixels): noise from grain and compression averages out. 0: the raw vectors (for "
              "paint right at the edge of an object that moves differently).")
@click.option("--start-frame", type=int, default=None,
              help="Plate frame number of a video's first frame (needed with a video plate).")
@engine_options
@colorspace_option
@layer_option
@exr_options
@config_option
@stops_cleanly_on_signals
def command(input_path: str, paint: str, at: int, output: str, comp: bool, stmap: str | None,
            frames: str | None, method: str, min_confidence: float, steady: float, start_frame: int | None,
            engine: EngineOptions, input_colorspace: str, ocio_config: str | None, layer: str | None,
            compression: str, float32: bool) -> None:
    """Carry PAINT, made on frame --at of PLATE, along the surface to every frame.

    Hidden parts of the surface get alpha 0 and get their paint back when they reappear. See the
    README for how each frame finds its way back to frame --at.
    """
    from daflow_vfx.jobs.propagate import PropagateJob, run_propagate
    from daflow_vfx.vfx.correspondence import TrackSettings

    job = PropagateJob(
        input=input_path, paint=paint, at=at, output=output, comp=comp, stmap=stmap, frames=frames,
        settings=TrackSettings(method=method, min_confidence=min_confidence, steady=steady),
        input_colorspace=input_colorspace, ocio_config=ocio_config, layer=layer, start_frame=start_frame,
        half=not float32, compression=compression, engine=engine,
    )
    with ProgressPrinter("frame") as progress:
        report = run_propagate(job, progress=progress)
    from daflow_vfx.frames import format_frame_spec

    line = f"Propagated the paint of frame {at} to {len(report.frames)} frame(s) " \
           f"({format_frame_spec(report.frames)}) in {report.output}"
    if report.stmap:
        line += f", STMaps {report.stmap}"
    line += f"; keyframes: {', '.join(map(str, report.keyframes)) or 'none'}; flow: {report.estimator}"
    click.echo(f"{line} ({report.seconds:.1f} s)")
