"""`daflow-vfx stabilize`: remove camera shake using the flow; frames, a matrix JSON, a Nuke node, STMaps."""

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
from daflow_vfx.vfx.camera_motion import FITS, MODES
from daflow_vfx.vfx.stabilization import FILLS, INTERPOLATIONS, METHODS


@click.command("stabilize")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, metavar="OUTPUT_PATTERN",
              help="Stabilized frames: a pattern such as stab/sh010.####.exr (EXR keeps the plate's values; "
              "PNG/TIFF/JPEG get display values) or a video file (.mp4, .mov, ...).")
@click.option("--mode", type=click.Choice(MODES), default="similarity", show_default=True,
              help="Camera motion model fitted to the flow of each frame pair.")
@click.option("--fit", type=click.Choice(FITS), default="irls", show_default=True,
              help="Robust fit that ignores moving foreground: IRLS (Huber/Tukey) or RANSAC.")
@click.option("--method", type=click.Choice(METHODS), default="gaussian", show_default=True,
              help="Path smoothing: gaussian (see --smooth) or l1 (Grundmann et al. 2011: holds, constant "
              "pans and eases).")
@click.option("--smooth", type=float, default=0.5, show_default=True, metavar="SECONDS",
              help="Gaussian smoothing of the camera path: sigma in seconds (needs the frame rate).")
@click.option("--lock", is_flag=True, default=False, help="Locked-off camera: hold the average framing.")
@click.option("--strength", type=float, default=1.0, show_default=True,
              help="0 keeps the original camera, 1 is fully stabilized; in between is partial.")
@click.option("--crop", default="auto", show_default=True, metavar="auto|none|RATIO",
              help="auto: largest centred crop free of borders over the shot; RATIO: kept fraction of the "
              "frame (0.9 keeps 90%); none: no crop.")
@click.option("--margin", type=float, default=0.1, show_default=True,
              help="--method l1: how far the virtual camera may leave the real one (fraction of the frame; "
              "a RATIO crop sets it to (1 - RATIO) / 2).")
@click.option("--fill", type=click.Choice(FILLS), default="black", show_default=True,
              help="Outside the plate: black, or repeat the edge pixels.")
@click.option("--filter", "interpolation", type=click.Choice(INTERPOLATIONS), default="linear",
              show_default=True, help="Resampling filter.")
@click.option("--fps", type=float, default=None,
              help="Frame rate for --smooth and video output (default: the video's rate, else 24).")
@click.option("--stmap", default=None, metavar="PATTERN",
              help="Also write STMap EXRs (R, G = source s, t; t from the bottom, as Nuke's STMap node).")
@click.option("--nk", default=None, metavar="FILE",
              help="Also write a Nuke snippet: animated Transform, or CornerPin2D for affine/perspective.")
@click.option("--json", "json_path", default=None, metavar="FILE",
              help="Per-frame matrix JSON (default: OUTPUT base + .stabilize.json).")
@click.option("--vectors", default=None, metavar="PATTERN",
              help="Reuse motion-vector EXRs rendered by `daflow-vfx render` instead of computing flow.")
@click.option("--frames", default=None, metavar="SPEC",
              help="A contiguous frame range such as 1001-1100 (default: the whole plate).")
@engine_options
@plate_options
@exr_options
@video_options
@config_option
@stops_cleanly_on_signals
def command(input_path: str, output: str, mode: str, fit: str, method: str, smooth: float, lock: bool,
            strength: float, crop: str, margin: float, fill: str, interpolation: str, fps: float | None,
            stmap: str | None, nk: str | None, json_path: str | None, vectors: str | None,
            frames: str | None, engine: EngineOptions, input_colorspace: str, ocio_config: str | None,
            layer: str | None, start_frame: int, compression: str, float32: bool,
            video: VideoOptions) -> None:
    """Stabilize INPUT (image sequence such as plate.####.exr, or video) using its optical flow."""
    from daflow_vfx.frames import format_frame_spec
    from daflow_vfx.jobs.stabilize import StabilizeJob, run_stabilize
    from daflow_vfx.vfx.stabilization import StabilizeSettings, parse_crop

    settings = StabilizeSettings(mode=mode, fit=fit, method=method, smooth=smooth, fps=fps or 24.0, lock=lock,
                                 strength=strength, crop=parse_crop(crop), fill=fill, margin=margin,
                                 interpolation=interpolation)
    job = StabilizeJob(
        input=input_path, output=output, settings=settings, fps=fps, frames=frames, vectors=vectors,
        stmap=stmap, nk=nk, json_path=json_path, input_colorspace=input_colorspace,
        ocio_config=ocio_config, layer=layer, start_frame=start_frame, half=not float32,
        compression=compression, engine=engine, video=video,
    )
    with ProgressPrinter("frame") as progress:
        report = run_stabilize(job, progress=progress)
    smoothing = "locked" if lock else ("L1 path" if method == "l1" else f"gaussian {smooth:g} s")
    line = (f"Stabilized {len(report.frames)} frame(s) (frames {format_frame_spec(report.frames)}) to "
            f"{report.output}: {mode}, {smoothing}, crop {100 * report.crop:.1f}%")
    if report.crop_limited:
        line += " (limited: borders filled)"
    line += f"; shake {report.shake_before:.2f} -> {report.shake_after:.2f} px; wrote {report.json_path}"
    if report.nk_path:
        line += f", {report.nk_path}"
    if report.stmap:
        line += f", STMaps {report.stmap}"
    click.echo(f"{line} ({report.seconds:.1f} s)")
