"""`daflow-vfx demo`: generate the demo plate and render its motion vectors."""

from __future__ import annotations

import click

from daflow_vfx.cli._common import ProgressPrinter, device_option, layout_option, model_option
from daflow_vfx.cli._signals import stops_cleanly_on_signals


@click.command("demo")
@click.option("-o", "--output", "output_dir", required=True, metavar="DIR",
              help="Folder for plate/, gt/ and vectors/.")
@model_option
@device_option
@layout_option(default="both")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated plate.")
@stops_cleanly_on_signals
def command(output_dir: str, model: str, device: str, layout: str, seed: int) -> None:
    """Make a degraded demo plate with known motion and render its vectors into DIR/vectors/."""
    from daflow_vfx.demo import DemoJob, run_demo

    job = DemoJob(output_dir=output_dir, model=model, device=device, layout=layout, seed=seed)
    with ProgressPrinter("frame") as progress:
        report = run_demo(job, progress=progress)
    click.echo(f"Plate:   {report.plate} and {report.video} ({report.frames} frames, "
               f"{report.width}x{report.height})")
    click.echo(f"Vectors: {report.vectors} ({report.render.estimator} {report.render.estimator_version}, "
               f"{report.render.seconds:.1f} s)")
    if report.mean_epe is not None:
        click.echo(f"Forward flow vs ground truth: mean endpoint error {report.mean_epe:.2f} px")
