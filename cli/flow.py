"""`daflow-vfx flow`: the flow between two images, as .flo or a motion EXR."""

from __future__ import annotations

import click

from daflow_vfx.cli._common import (
    colorspace_option,
    config_option,
    device_option,
    dtype_option,
    exr_options,
    layer_option,
    layout_option,
    model_option,
    performance_options,
    tile_options,
    weights_options,
)


@click.command("flow")
@click.argument("image1")
@click.argument("image2")
@click.option("-o", "--output", required=True, metavar="OUT.flo|OUT.exr",
              help=".flo: Middlebury forward flow (+v down); .exr: forward and backward vectors.")
@layout_option()
@model_option
@weights_options
@device_option
@dtype_option
@colorspace_option
@layer_option
@exr_options
@tile_options
@performance_options
@config_option
def command(image1: str, image2: str, output: str, layout: str, model: str, device: str, dtype: str,
            input_colorspace: str, layer: str | None, compression: str, float32: bool, tile: int | None,
            tile_pad: int,
            weights: str | None = None, iters: int | None = None, max_memory: str | None = None,
            threads: int | None = None, compile_model: bool = False) -> None:
    """Estimate the optical flow from IMAGE1 to IMAGE2."""
    from daflow_vfx.engine import FlowJob, flow_pair

    job = FlowJob(
        weights=weights, iters=iters,
        image1=image1, image2=image2, output=output, model=model, device=device, dtype=dtype,
        input_colorspace=input_colorspace, layer=layer, layout=layout, half=not float32,
        compression=compression, tile=tile, tile_pad=tile_pad,
        max_memory=max_memory, threads=threads, compile=compile_model,
    )
    report = flow_pair(job)
    click.echo(f"Wrote {report.output} ({report.width}x{report.height}, {report.estimator} "
               f"{report.estimator_version}, mean |flow| {report.mean_magnitude:.2f} px)")
