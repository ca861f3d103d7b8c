"""The Blender extension's Propagate action without Blender: panel values -> `daflow-vfx propagate` argv.

The operator (``plugins/blender/ops_propagate.py``) resolves the source as the other actions do, turns
the timeline frame the paint was made on into a plate frame, and runs the command built here as the same
background job; the propagated paint comes back as an alpha-over strip above the source.
"""

from __future__ import annotations

import os

from daflow_vfx.errors import InputError, UsageError

__all__ = ["plate_frame", "propagate_action_args", "propagate_output"]


def plate_frame(scene_frame: int, *, timeline_start: int, first_frame: int) -> int:
    """The plate frame shown at ``scene_frame`` by a source whose first frame sits at ``timeline_start``."""
    return int(first_frame) + int(scene_frame) - int(timeline_start)


def propagate_output(output_folder: str, name: str) -> str:
    """``output_folder/<name>.propagate.####.exr``."""
    folder = output_folder.strip()
    if not folder:
        raise UsageError("propagate: the output folder is empty; set it in the DAFlow panel")
    base = name.strip() or "daflow"
    if "/" in base or os.sep in base:
        raise UsageError(f"propagate: name {base!r} must be a file name; put folders in the output folder")
    return os.path.join(os.path.abspath(os.path.expanduser(folder)), f"{base}.propagate.####.exr")


def propagate_action_args(*, input: str, paint: str, at: int, output: str, start_frame: int = 1,
                          model: str = "default", device: str = "auto", input_colorspace: str = "auto",
                          frame_range: str = "") -> list[str]:
    """The arguments after the executable: ``propagate INPUT --paint PAINT --at F -o OUT ...``.

    ``start_frame`` is always given (a movie's frames are numbered from it; a sequence ignores it)."""
    if not input.strip():
        raise InputError("propagate: no source; select a clip or an image/movie strip")
    if not paint.strip():
        raise UsageError("propagate: no paint image; set Paint in the DAFlow panel to an RGBA image painted "
                         "on one frame of the source", param="paint")
    args = ["propagate", input, "--paint", paint, "--at", str(int(at)), "-o", output,
            "--start-frame", str(int(start_frame)), "--device", device,
            "--input-colorspace", input_colorspace]
    if model.strip() and model.strip() != "default":
        args += ["--model", model.strip()]
    if frame_range.strip():
        args += ["--frames", frame_range.strip()]
    return args
