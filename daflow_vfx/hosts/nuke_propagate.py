"""The DAFlow_Propagate toolset's "Propagate" button, without Nuke: knobs -> `daflow-vfx propagate` argv.

The toolset (``plugins/nuke/toolsets/DAFlow_Propagate.nk``) holds a Read of the plate, a RotoPaint to
paint on, a Premult (the paint alone, premultiplied), the DAFlow node with the propagate knobs below, and
an STMap node that reads the STMaps this command writes. The plugin writes the Premult's output on the
reference frame to ``paint_file``, runs the command built here in the background and then points the
STMap's Read at the result. Like :mod:`.nuke`, this module imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daflow_vfx.errors import UsageError

__all__ = ["PROPAGATE_KNOBS", "PropagateSettings", "propagate_args", "propagate_paths"]

# the user knobs the toolset adds to its DAFlow node (besides the gizmo's own model/device/... knobs)
PROPAGATE_KNOBS = ("propagate_at", "paint_node", "stmap_file", "propagate_button")


@dataclass(frozen=True, kw_only=True)
class PropagateSettings:
    input: str  # the plate on disk (the Read's file pattern)
    output_folder: str
    at: int  # reference frame: where the paint was made
    node_name: str = "DAFlow_Propagate1"
    model: str = "default"
    device: str = "auto"
    input_colorspace: str = "auto"
    executable: str = ""

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any], *, input: str, node_name: str) -> PropagateSettings:
        def text(name: str, default: str) -> str:
            value = knobs.get(name)
            return default if value is None or str(value).strip() == "" else str(value).strip()

        try:
            at = int(float(knobs.get("propagate_at")))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UsageError(f"{node_name}: set `propagate_at` to the frame you painted on",
                             param="propagate_at") from None
        return cls(input=input, output_folder=text("output_folder", ""), at=at, node_name=node_name,
                   model=text("model", "default"), device=text("device", "auto"),
                   input_colorspace=text("input_colorspace", "auto"), executable=text("executable", ""))


def propagate_paths(settings: PropagateSettings) -> dict[str, str]:
    """Where the button writes: the paint image, the propagated paint and the STMaps (``####`` patterns)."""
    if not settings.output_folder:
        raise UsageError(f"{settings.node_name}: set the output folder knob first", param="output_folder")
    base = os.path.join(os.path.expanduser(settings.output_folder), f"{settings.node_name}_propagate")
    return {
        "paint": os.path.join(base, f"paint.{settings.at}.exr"),
        "output": os.path.join(base, "paint.####.exr"),
        "stmap": os.path.join(base, "stmap.####.exr"),
    }


def propagate_args(settings: PropagateSettings) -> list[str]:
    """The arguments after the executable: ``propagate PLATE --paint P --at F -o OUT --stmap ST ...``."""
    paths = propagate_paths(settings)
    args = [
        "propagate", settings.input,
        "--paint", paths["paint"],
        "--at", str(settings.at),
        "-o", paths["output"],
        "--stmap", paths["stmap"],
        "--device", settings.device,
        "--input-colorspace", settings.input_colorspace,
    ]
    if settings.model != "default":
        args += ["--model", settings.model]
    return args
