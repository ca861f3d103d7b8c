"""What makes a rendered vector EXR "complete" for this job: the one definition ``--skip-existing`` uses.

A file that merely reads is not enough: a farm folder also holds outputs of an earlier render at another
size, in the other layout, from another plate or a re-delivered one, or with other settings. Each render
records in the EXR header what made it (:meth:`RenderStamp.attributes`):

- ``daflow/sourcePlate``: the plate's absolute path;
- ``daflow/sourceId``: a fingerprint of every file of the plate (name, size, modification time), so a
  re-delivered or edited plate at the same path is a different source;
- ``daflow/settings``: the settings that change the vectors (model, weights, iterations, precision,
  tiling, vector detail below 1, layout, channels' type, compression, colour space, layer, start frame,
  gap handling).

:meth:`RenderStamp.mismatch` accepts a file only when it reads in full (every pixel), is the plate's
size, carries exactly the layout's channels, is the frame it is named for, and records this plate and
these settings. Anything else is redone, and the log says why.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RenderStamp", "plate_fingerprint", "settings_text"]

# Channels a vector pass may carry besides its layout's vectors.
_OPTIONAL = ("flow.confidence", "flow.occlusion")


def plate_fingerprint(files: Iterable[str], *, extra: Mapping[str, Any] | None = None) -> str:
    """A short hash of ``files`` (each one's name, size and modification time) and ``extra``: what
    identifies a plate on disk without reading its pixels. Any file replaced, added or removed changes it."""
    digest = hashlib.sha256()
    for path in sorted(files):
        st = os.stat(path)
        digest.update(f"{os.path.basename(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    digest.update(json.dumps(dict(extra or {}), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def settings_text(settings: Mapping[str, Any]) -> str:
    """``settings`` as the compact, key-sorted JSON stored in the header (readable in Nuke's metadata)."""
    return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"))


def _file_layout(channels: set[str]) -> str:
    from daflow_vfx.io.exr import BLENDER_CHANNELS, NUKE_CHANNELS

    nuke = all(c in channels for c in NUKE_CHANNELS)
    blender = all(c in channels for c in BLENDER_CHANNELS)
    names = {(True, True): "both", (True, False): "nuke", (False, True): "blender"}
    return names.get((nuke, blender), "none")


@dataclass(frozen=True)
class RenderStamp:
    """What this render writes into each EXR header, and the test a file on disk must pass to be kept."""

    width: int
    height: int
    layout: str
    source_plate: str  # absolute path of the plate as given
    source_id: str  # plate_fingerprint of its files
    settings: str  # settings_text of what changes the vectors

    def attributes(self) -> dict[str, str]:
        """The header attributes (``daflow/<key>``) that record this stamp."""
        return {"sourcePlate": self.source_plate, "sourceId": self.source_id, "settings": self.settings}

    def mismatch(self, path: str, frame: int) -> str | None:
        """None when ``path`` is a complete output of this job for ``frame``; otherwise why it is not,
        as a phrase for the log (``"was rendered from another plate"``)."""
        from daflow_vfx.errors import InputError
        from daflow_vfx.io.exr import BLENDER_CHANNELS, NUKE_CHANNELS, is_complete_exr, read_exr_metadata
        from daflow_vfx.io.sequence import read_image_header

        if not is_complete_exr(path):
            return "is incomplete or unreadable"
        try:
            header = read_image_header(path)
            meta = read_exr_metadata(path)
        except InputError:
            return "is unreadable"
        if (header.width, header.height) != (self.width, self.height):
            return f"is {header.width}x{header.height} but the plate is {self.width}x{self.height}"
        channels = set(header.channels)
        layout = _file_layout(channels)
        if layout == "none":
            return "has no motion-vector channels"
        if layout != self.layout or meta.get("layout", layout) != self.layout:
            return f"has the {layout} layout, not {self.layout}"
        expected = {*(NUKE_CHANNELS if layout in ("nuke", "both") else ()),
                    *(BLENDER_CHANNELS if layout in ("blender", "both") else ()), *_OPTIONAL}
        if channels - expected:
            return f"has other channels ({', '.join(sorted(channels - expected))})"
        if meta.get("frame") != str(frame):
            return f"holds frame {meta.get('frame', '(unrecorded)')}"
        if meta.get("sourcePlate") != self.source_plate:
            return "was rendered from another plate"
        if meta.get("sourceId") != self.source_id:
            return "was rendered from another version of the plate (its files changed)"
        if meta.get("settings") != self.settings:
            return "was rendered with other settings"
        return None
