"""`daflow-vfx info`: what a plate holds (frames, size, channels, colour guess)."""

from __future__ import annotations

import json

import click

from daflow_vfx.cli._common import colorspace_option, start_frame_option


def _missing_text(missing: list[int], empty: list[int]) -> str:
    from daflow_vfx.frames import format_frame_spec

    if not missing:
        return "none"
    if not empty:
        return format_frame_spec(missing)
    return f"{format_frame_spec(missing)} ({format_frame_spec(empty)}: empty file, 0 bytes)"


def _colour_text(space) -> str:
    """``ARRI LogC3 (EI800), log: --input-colorspace`` or ``linear = Linear Rec.709 (sRGB), ...``."""
    name = str(space)
    shown = name if not space.ocio or space.ocio == name else f"{name} = {space.ocio}"
    if not space.ocio:
        shown = f"{name} (Cineon)"
    return f"{shown}, {space.kind}: {space.reason}"


@click.command("info")
@click.argument("input_path", metavar="INPUT")
@click.option("--layer", default=None, help="EXR layer to inspect (default: RGB).")
@start_frame_option
@colorspace_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def command(input_path: str, layer: str | None, start_frame: int, input_colorspace: str,
            ocio_config: str | None, as_json: bool) -> None:
    """Describe the plate INPUT: frames, size, channels, and the colour space a job would read it in (with
    --input-colorspace as given here; auto by default) and why."""
    from daflow_vfx.jobs.info import plate_summary

    summary = plate_summary(input_path, layer=layer, start_frame=start_frame,
                            input_colorspace=input_colorspace, ocio_config=ocio_config)
    space = summary.colorspace
    info = summary.info
    count = summary.last - summary.first + 1
    if as_json:
        click.echo(json.dumps({
            "path": info.path, "kind": info.kind, "format": info.file_format, "pixel_type": info.pixel_type,
            "first": summary.first, "last": summary.last, "frames": count, "missing": summary.missing,
            "empty": summary.empty,
            "width": info.width, "height": info.height, "channels": list(info.channels),
            "layers": list(info.layers), "colorspace_guess": info.colorspace_guess, "fps": info.fps,
            "colorspace": {"name": str(space), "ocio": space.ocio, "kind": space.kind, "reason": space.reason,
                           "config": summary.ocio_config, "config_source": summary.ocio_config_source},
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
        ("colour", _colour_text(space)),
        ("ocio", f"{summary.ocio_config} ({summary.ocio_config_source})"),
        ("fps", f"{info.fps:g}" if info.fps else "-"),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':<10}{value}")
