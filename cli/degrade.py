"""`daflow-vfx degrade`: put a plate through the real-world degradation model (stress-test a comp)."""

from __future__ import annotations

import click

from daflow_vfx.cli._common import colorspace_option, video_options
from daflow_vfx.cli._signals import stops_cleanly_on_signals
from daflow_vfx.jobs.options import VideoOptions


@click.command("degrade")
@click.argument("input")
@click.option("-o", "--output", required=True, metavar="PATTERN",
              help="Output sequence, e.g. bad.####.exr, or a video such as bad.mov.")
@click.option("--preset", type=click.Choice(["mild", "severe", "extreme", "random"]), default="severe",
              show_default=True, help="Strength of blur, noise, JPEG and video compression.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same degradation.")
@click.option("--frames", default=None, metavar="SPEC", help="Frame spec (Deadline syntax); default all.")
@click.option("--no-motion-blur", is_flag=True, help="Skip motion blur along the estimated motion.")
@colorspace_option
@video_options
@stops_cleanly_on_signals
def command(input: str, output: str, preset: str, seed: int, frames: str | None, no_motion_blur: bool,
            input_colorspace: str, ocio_config: str | None, video: VideoOptions) -> None:
    """Degrade INPUT (sequence or video) into OUTPUT with blur, noise, JPEG and codec artifacts."""
    from daflow_vfx.degrade import DegradeJob, run_degrade

    written = run_degrade(DegradeJob(input=input, output=output, preset=preset, seed=seed, frames=frames,
                                     colorspace=input_colorspace, ocio_config=ocio_config,
                                     motion_blur=not no_motion_blur, video=video))
    click.echo(f"Wrote {len(written)} frames to {output}")
