"""`daflow-vfx render`: motion-vector EXRs for a plate, one file per frame, farm-friendly."""

from __future__ import annotations

import click

from daflow_vfx.cli._common import (
    ProgressPrinter,
    config_option,
    engine_options,
    exr_options,
    layout_option,
    plate_options,
)
from daflow_vfx.cli._signals import stops_cleanly_on_signals
from daflow_vfx.jobs.options import EngineOptions


@click.command("render")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, metavar="OUTPUT_PATTERN",
              help="Output EXR pattern with a frame token, e.g. vectors/sh010.####.exr.")
@click.option("--frames", default=None, metavar="SPEC",
              help="Frames to render in Deadline syntax: 1001-1100, 1-100x5, 1,5,10-20 (default: all).")
@layout_option()
@engine_options
@plate_options
@exr_options
@click.option("--skip-existing", is_flag=True, default=False,
              help="Leave complete outputs alone (truncated or unreadable ones are redone).")
@click.option("--allow-gaps", is_flag=True, default=False,
              help="Hold the last frame over missing frames instead of failing.")
@config_option
@stops_cleanly_on_signals
def command(input_path: str, output: str, frames: str | None, layout: str, engine: EngineOptions,
            input_colorspace: str, ocio_config: str | None, layer: str | None, start_frame: int,
            compression: str, float32: bool, skip_existing: bool, allow_gaps: bool) -> None:
    """Render motion-vector EXRs for INPUT (image sequence such as plate.####.exr, image or video)."""
    from daflow_vfx.frames import format_frame_spec
    from daflow_vfx.jobs.render import RenderJob, render

    job = RenderJob(
        input=input_path, output=output, frames=frames, layout=layout, input_colorspace=input_colorspace,
        ocio_config=ocio_config, layer=layer, start_frame=start_frame, compression=compression,
        half=not float32, skip_existing=skip_existing, allow_gaps=allow_gaps, engine=engine,
    )
    with ProgressPrinter("frame") as progress:
        report = render(job, progress=progress)
    done = format_frame_spec(report.written) or "none"
    line = f"Wrote {len(report.written)} EXR(s) (frames {done}) to {report.output}"
    if report.estimator:
        line += f" with {report.estimator} {report.estimator_version} on {report.device}"
    if report.skipped:
        line += f"; skipped {len(report.skipped)} complete"
    if report.bad_pixels:
        line += f"; sanitised {report.bad_pixels} bad pixel(s)"
    click.echo(f"{line} ({report.seconds:.1f} s)")
