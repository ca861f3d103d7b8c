"""`daflow-vfx info`: what a plate holds, gaps and empty frame files included."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["PlateSummary", "plate_summary"]


@dataclass(kw_only=True)
class PlateSummary:
    """What `daflow-vfx info` shows."""

    info: object  # daflow_vfx.io.PlateInfo
    first: int
    last: int
    missing: list[int]  # frames with no usable file between first and last: absent, or empty (0 bytes)
    empty: list[int] = field(default_factory=list)  # the frames of ``missing`` whose file is 0 bytes
    colorspace: object = None  # daflow_vfx.color.ColorSpace a job would read the plate in, with its reason
    ocio_config: str = ""  # the OCIO config that name is resolved in
    ocio_config_source: str = ""  # why that config: --ocio-config, $OCIO or the built-in default


def _empty_frames(path: str, frames: list[int]) -> list[int]:
    """Frames whose file exists but holds nothing: a render killed before it wrote a byte, a full disk.
    Such a file is listed by a directory scan yet is no frame at all."""
    from daflow_vfx.frames import SequencePattern

    pattern = SequencePattern.parse(path) if not os.path.exists(path) else None
    if pattern is None:
        return [f for f in frames[:1] if os.path.isfile(path) and os.path.getsize(path) == 0]
    return [f for f in frames if os.path.isfile(pattern.path(f)) and os.path.getsize(pattern.path(f)) == 0]


def plate_summary(path: str, *, layer: str | None = None, start_frame: int = 1,
                  input_colorspace: str = "auto", ocio_config: str | None = None) -> PlateSummary:
    """Open a plate without failing on gaps, so `info` can name the missing frames; also resolve the colour
    space a job given ``input_colorspace`` would read it in, and why."""
    from daflow_vfx.color import check_colorspace, resolve_colorspace
    from daflow_vfx.io import open_plate
    from daflow_vfx.ocio import config_source

    check_colorspace(input_colorspace, ocio_config)

    with open_plate(path, layer=layer, start_frame=start_frame, allow_gaps=True) as plate:
        info = plate.info
    first, last = min(info.frames), max(info.frames)
    # with allow_gaps the reader lists the full range and names the held frames in info.missing
    present = set(info.frames) - set(info.missing)
    empty = _empty_frames(path, sorted(present)) if info.kind == "sequence" else []
    missing = [f for f in range(first, last + 1) if f not in present or f in empty]
    uri, why = config_source(ocio_config)
    return PlateSummary(info=info, first=first, last=last, missing=missing, empty=empty,
                        colorspace=resolve_colorspace(input_colorspace, info, ocio_config=ocio_config),
                        ocio_config=uri, ocio_config_source=why)
