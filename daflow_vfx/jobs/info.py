"""`daflow-vfx info`: what a plate holds, gaps included."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PlateSummary", "plate_summary"]


@dataclass(kw_only=True)
class PlateSummary:
    """What `daflow-vfx info` shows."""

    info: object  # daflow_vfx.io.PlateInfo
    first: int
    last: int
    missing: list[int]  # frames absent from disk between first and last


def plate_summary(path: str, *, layer: str | None = None, start_frame: int = 1) -> PlateSummary:
    """Open a plate without failing on gaps, so `info` can name the missing frames."""
    from daflow_vfx.io import open_plate

    with open_plate(path, layer=layer, start_frame=start_frame, allow_gaps=True) as plate:
        info = plate.info
    first, last = min(info.frames), max(info.frames)
    # with allow_gaps the reader lists the full range and names the held frames in info.missing
    present = set(info.frames) - set(info.missing)
    missing = [f for f in range(first, last + 1) if f not in present]
    return PlateSummary(info=info, first=first, last=last, missing=missing)
