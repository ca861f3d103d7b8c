"""Plates in, passes out: image sequences, video, motion-vector EXRs, ``.flo`` and plain images.

No torch here, and OpenImageIO / PyAV are imported only when a file is actually read or written, so
``import daflow_vfx.io`` is cheap.
"""

from __future__ import annotations

from daflow_vfx.io._atomic import prepare_output_folder
from daflow_vfx.io.exr import (
    LAYOUTS,
    LOSSLESS_COMPRESSIONS,
    MotionPass,
    is_complete_exr,
    read_motion_exr,
    write_motion_exr,
)
from daflow_vfx.io.flo import read_flo, write_flo
from daflow_vfx.io.images import write_image
from daflow_vfx.io.plate import VIDEO_EXTENSIONS, Plate, PlateInfo, open_plate
from daflow_vfx.io.threads import BackgroundWriter, PrefetchReader
from daflow_vfx.io.video import write_video

__all__ = [
    "LAYOUTS",
    "LOSSLESS_COMPRESSIONS",
    "VIDEO_EXTENSIONS",
    "BackgroundWriter",
    "MotionPass",
    "Plate",
    "PlateInfo",
    "PrefetchReader",
    "is_complete_exr",
    "open_plate",
    "prepare_output_folder",
    "read_flo",
    "read_motion_exr",
    "write_flo",
    "write_image",
    "write_motion_exr",
    "write_video",
]
