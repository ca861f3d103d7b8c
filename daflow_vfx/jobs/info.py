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


def _empty_frames(path: str, frames: list[int]) -> list[int]:
    """Frames whose file exists but holds nothing: a render killed before it wrote a byte, a full disk.
    Such a file is listed by a directory scan yet is no frame at all."""
    from daflow_vfx.frames import SequencePattern

    pattern = SequencePattern.parse(path) if not os.path.exists(path) else None
    if pattern is None:
        return [f for f in frames[:1] if os.path.isfile(path) and os.path.getsize(path) == 0]
    return [f for f in frames if os.path.isfile(pattern.path(f)) and os.path.getsize(pattern.path(f)) == 0]


def plate_summary(path: str, *, layer: str | None = None, start_frame: int = 1) -> PlateSummary:
    """Open a plate without failing on gaps, so `info` can name the missing frames."""
    from daflow_vfx.io import open_plate

    with open_plate(path, layer=layer, start_frame=start_frame, allow_gaps=True) as plate:
        info = plate.info
    first, last = min(info.frames), max(info.frames)
    # with allow_gaps the reader lists the full range and names the held frames in info.missing
    present = set(info.frames) - set(info.missing)
    empty = _empty_frames(path, sorted(present)) if info.kind == "sequence" else []
    missing = [f for f in range(first, last + 1) if f not in present or f in empty]
    return PlateSummary(info=info, first=first, last=last, missing=missing, empty=empty)
