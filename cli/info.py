"""`daflow-vfx info`: what a plate holds (frames, size, channels, colour guess)."""

from __future__ import annotations

import json

import click

from daflow_vfx.cli._common import start_frame_option


def _missing_text(missing: list[int], empty: list[int]) -> str:
    from daflow_vfx.frames import format_frame_spec

    if not missing:
        return "none"
    if not empty:
        return format_frame_spec(missing)
    return f"{format_frame_spec(missing)} ({format_frame_spec(empty)}: empty file, 0 bytes)"


@click.command("info")
@click.argument("input_path", metavar="INPUT")
@click.option("--layer", default=None, help="EXR layer to inspect (default: RGB).")
@start_frame_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def command(input_path: str, layer: str | None, start_frame: int, as_json: bool) -> None:
    """Describe the plate INPUT: frames, size, channels and colour-space guess."""
    from daflow_vfx.jobs.info import plate_summary

    summary = plate_summary(input_path, layer=layer, start_frame=start_frame)
    info = summary.info
    count = summary.last - summary.first + 1
    if as_json:
        click.echo(json.dumps({
            "path": info.path, "kind": info.kind, "format": info.file_format, "pixel_type": info.pixel_type,
            "first": summary.first, "last": summary.last, "frames": count, "missing": summary.missing,
            "empty": summary.empty,
            "width": info.width, "height": info.height, "channels": list(info.channels),
            "layers": list(info.layers), "colorspace_guess": info.colorspace_guess, "fps": info.fps,
        }, indent=2))
        return
    rows = [
        ("input", info.path),
        ("kind", f"{info.kind} ({info.file_format}, {info.pixel_type})"),
        ("frames", f"{summary.first}-{summary.last} ({count} frame{'s' if count != 1 else ''})"),
        ("missing", _missing_text(summary.missing, summary.empty)),
        ("size", f"{info.width}x{info.height}"),
        ("channels", ", ".join(info.channels)),
        ("layers", ", ".join(layer_name or "(rgba)" for layer_name in info.layers) or "-"),
        ("colour", f"{info.colorspace_guess} (what --input-colorspace auto picks)"),
        ("fps", f"{info.fps:g}" if info.fps else "-"),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':<10}{value}")
