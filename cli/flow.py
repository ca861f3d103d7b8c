"""`daflow-vfx flow`: the flow between two images, as .flo or a motion EXR."""

from __future__ import annotations

import click

from daflow_vfx.cli._common import (
    colorspace_option,
    config_option,
    engine_options,
    exr_options,
    layer_option,
    layout_option,
)
from daflow_vfx.cli._signals import stops_cleanly_on_signals
from daflow_vfx.jobs.options import EngineOptions


@click.command("flow")
@click.argument("image1")
@click.argument("image2")
@click.option("-o", "--output", required=True, metavar="OUT.flo|OUT.exr",
              help=".flo: Middlebury forward flow (+v down); .exr: forward and backward vectors.")
@layout_option()
@engine_options
@colorspace_option
@layer_option
@exr_options
@config_option
@stops_cleanly_on_signals
def command(image1: str, image2: str, output: str, layout: str, engine: EngineOptions,
            input_colorspace: str, ocio_config: str | None, layer: str | None, compression: str,
            float32: bool) -> None:
    """Estimate the optical flow from IMAGE1 to IMAGE2."""
    from daflow_vfx.jobs.flow import FlowJob, flow_pair

    job = FlowJob(
        image1=image1, image2=image2, output=output, input_colorspace=input_colorspace,
        ocio_config=ocio_config, layer=layer, layout=layout, half=not float32, compression=compression,
        engine=engine,
    )
    report = flow_pair(job)
    click.echo(f"Wrote {report.output} ({report.width}x{report.height}, {report.estimator} "
               f"{report.estimator_version}, mean |flow| {report.mean_magnitude:.2f} px)")
