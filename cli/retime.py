"""`daflow-vfx retime`: slow motion, speed changes, frame-rate conversion and timing curves from flow."""

from __future__ import annotations

import click

from daflow_vfx.cli._common import (
    ProgressPrinter,
    config_option,
    engine_options,
    exr_options,
    plate_options,
    video_options,
)
from daflow_vfx.cli._signals import stops_cleanly_on_signals
from daflow_vfx.jobs.options import EngineOptions, VideoOptions


@click.command("retime")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, metavar="OUTPUT",
              help="Image pattern with a frame token (out/sh010.####.exr, .png, .tif) or a video "
              "(.mp4, .mov).")
@click.option("--speed", type=float, default=None,
              help="Output speed: 0.25 is 4x slow motion, 2 double speed. Outputs never land on source "
              "frames when others are synthesised (no pulsing; see --phase).")
@click.option("--fps", "rate", default=None, metavar="SRC:DST",
              help="Frame-rate conversion, e.g. 24:60 or 24000/1001:25.")
@click.option("--curve", type=click.Path(dir_okay=False), default=None,
              help="YAML timing curve: keys output_frame: source_frame, interpolation linear|smooth.")
@click.option("--phase", type=float, default=None,
              help="With --speed: fraction of a frame to offset the first output by (default automatic).")
@click.option("--method", type=click.Choice(["motion", "blend", "nearest"]), default="motion",
              show_default=True, help="motion: flow-based synthesis; blend: frame mix; nearest: frame hold.")
@click.option("--splat", type=click.Choice(["softmax", "average"]), default="softmax", show_default=True,
              help="How overlapping motion-warped pixels are combined.")
@click.option("--shutter", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Motion blur: open fraction of the output frame (0.5 = 180 degrees); 0 = none.")
@click.option("--shutter-samples", type=click.IntRange(min=1), default=8, show_default=True,
              help="Sub-frames averaged for --shutter.")
@click.option("--cuts", default="auto", show_default=True,
              help="Scene cuts: auto (detect), none, or the first frames of new shots (e.g. 1025,1090).")
@click.option("--vectors", default=None, metavar="PATTERN",
              help="Reuse motion-vector EXRs from `daflow-vfx render` (e.g. vectors/sh010.####.exr).")
@engine_options
@click.option("--frames", default=None, metavar="SPEC",
              help="Output frames to write, Deadline syntax (image sequences only; default: all).")
@plate_options
@exr_options
@video_options
@config_option
@stops_cleanly_on_signals
def command(input_path: str, output: str, speed: float | None, rate: str | None, curve: str | None,
            phase: float | None, method: str, splat: str, shutter: float, shutter_samples: int, cuts: str,
            vectors: str | None, engine: EngineOptions, frames: str | None, input_colorspace: str,
            ocio_config: str | None, layer: str | None, start_frame: int, compression: str, float32: bool,
            video: VideoOptions) -> None:
    """Retime INPUT (image sequence, image or video): slow motion, speed-ups, fps conversion, curves.

    EXR output keeps the plate's values (linear in, linear out); a JSON sidecar OUTPUT.retime.json
    records which source time, method and cut flag made each output frame. Speed and fps outputs are
    numbered from the plate's first frame; curve outputs as keyed.
    """
    from daflow_vfx.jobs.retime import RetimeJob, run_retime

    job = RetimeJob(
        input=input_path, output=output, speed=speed, fps=rate, curve=curve, phase=phase, method=method,
        splat=splat, shutter=shutter, shutter_samples=shutter_samples, cuts=cuts, vectors=vectors,
        frames=frames, input_colorspace=input_colorspace, ocio_config=ocio_config, layer=layer,
        start_frame=start_frame, half=not float32, compression=compression, engine=engine, video=video,
    )
    with ProgressPrinter("frame") as progress:
        report = run_retime(job, progress=progress)
    written = report.frames
    span = f"{written[0].frame}-{written[-1].frame}" if written else "none"
    line = (f"Wrote {len(written)} frame(s) ({span}, {report.mode}) to {report.output}; "
            f"frame map in {report.sidecar}")
    if report.estimator:
        line += f"; flow: {report.estimator}"
    if report.cuts:
        line += f"; cut(s) after frame(s) {', '.join(str(n) for n in report.cuts)}"
    click.echo(f"{line} ({report.seconds:.1f} s)")
