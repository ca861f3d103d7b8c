"""Plain image writing through OpenImageIO (EXR, PNG, TIFF, JPEG, DPX), atomic.

Every file is read back in full (:func:`reads_back`) before it is renamed into place: on a full disk
OpenImageIO's writers can report success and leave an empty or short file.

Integer formats are quantised by OpenImageIO from float data (it clamps and rounds by the pixel type's
range), so nothing here divides or multiplies by 255.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from daflow_vfx.errors import OutputError, UsageError
from daflow_vfx.io._atomic import atomic_path

__all__ = ["write_image", "write_oiio_image", "reads_back", "EXR_COMPRESSIONS"]

# OpenEXR compressions OpenImageIO knows; exr.py restricts motion vectors to the lossless ones.
EXR_COMPRESSIONS: tuple[str, ...] = (
    "zip", "zips", "piz", "rle", "none", "pxr24", "b44", "b44a", "dwaa", "dwab",
)

# Default integer depth per extension, and the depths each accepts.
_INT_FORMATS: dict[str, tuple[int, tuple[int, ...]]] = {
    ".png": (8, (8, 16)),
    ".tif": (16, (8, 16)),
    ".tiff": (16, (8, 16)),
    ".jpg": (8, (8,)),
    ".jpeg": (8, (8,)),
    ".dpx": (10, (8, 10, 12, 16)),
}


def write_oiio_image(path: str | os.PathLike, pixels: np.ndarray, *, channel_names: Sequence[str],
                     pixel_type: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Write float32 ``pixels`` [H, W, C] with the given channel names and stored type, atomically.

    ``pixel_type`` is an OpenImageIO type name ("half", "float", "uint8", "uint16"); a ``uint10``/``uint12``
    is stored as uint16 with ``oiio:BitsPerSample``. Raises OutputError naming the file on failure.
    """
    import OpenImageIO as oiio

    target = os.fspath(path)
    data = np.ascontiguousarray(pixels, dtype=np.float32)
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3 or data.shape[2] != len(channel_names):
        raise ValueError(f"pixels {data.shape} do not match channels {list(channel_names)}")
    height, width, nchannels = data.shape
    bits = 0
    stored = pixel_type
    if pixel_type in ("uint10", "uint12"):
        bits, stored = int(pixel_type[4:]), "uint16"
    spec = oiio.ImageSpec(width, height, nchannels, oiio.TypeDesc(stored))
    spec.channelnames = tuple(channel_names)
    if bits:
        spec.attribute("oiio:BitsPerSample", bits)
    for key, value in (attributes or {}).items():
        spec.attribute(key, value)
    with atomic_path(target) as tmp:
        out = oiio.ImageOutput.create(tmp)
        if out is None:
            raise OutputError(f"{target}: no writer for this extension ({_one_line(oiio.geterror())}); "
                              "use .exr, .png, .tif, .jpg or .dpx")
        errors: list[str] = []
        try:
            if not out.open(tmp, spec):
                raise _write_error(target, "cannot open for writing", out.geterror())
            written = out.write_image(data)
            errors.append(out.geterror())
        finally:
            closed = out.close()
        errors.append(out.geterror())
        # Writers buffer: on a full disk a PNG or EXR can report success and leave an empty or short
        # file (OpenImageIO only notes it in geterror). The file read back is the only proof.
        if not (written and closed and reads_back(tmp)):
            raise _write_error(target, "could not write the whole file", "; ".join(e for e in errors if e))


def _write_error(target: str, what: str, detail: str) -> OutputError:
    folder = os.path.dirname(os.path.abspath(target))
    try:
        full = os.statvfs(folder).f_bavail == 0
    except OSError:
        full = False
    hint = "the disk is full; free some space and run the task again" if full else "check free disk space"
    reason = f" ({_one_line(detail)})" if detail else ""
    return OutputError(f"{target}: {what}{reason}; {hint}")


def reads_back(path: str | os.PathLike, *, format_name: str | None = None) -> bool:
    """True when the image at ``path`` opens and every part reads in full without an error (and, with
    ``format_name``, is that format, e.g. ``"openexr"``). False for a missing, empty, truncated or corrupt
    file. Reads all pixels, because a truncated file's header is still intact."""
    import OpenImageIO as oiio

    from daflow_vfx.errors import CorruptFileError
    from daflow_vfx.io.sequence import check_declared_size

    target = os.fspath(path)
    if not os.path.isfile(target) or os.path.getsize(target) == 0:
        return False
    inp = oiio.ImageInput.open(target)
    if inp is None:
        oiio.geterror()  # clear the thread's error so it does not leak into the next message
        return False
    try:
        found = inp.format_name()
        if format_name is not None and found != format_name:
            return False
        if found in ("dpx", "cineon"):
            try:
                check_declared_size(target, "image")  # some builds read short DPX files as zeros
            except CorruptFileError:
                return False
        subimage = 0
        while subimage == 0 or inp.seek_subimage(subimage, 0):
            spec = inp.spec()
            pixels = inp.read_image(subimage, 0, 0, spec.nchannels, "float")
            if pixels is None or inp.geterror():
                return False
            subimage += 1
        inp.geterror()
        return True
    finally:
        inp.close()


def _one_line(message: str) -> str:
    from daflow_vfx.io.sequence import one_line

    return one_line(message)


def write_image(path: str | os.PathLike, rgb: np.ndarray, *, half: bool = True, compression: str = "zip",
                bits: int | None = None) -> None:
    """Write an image by extension, atomically.

    ``rgb``: float ``[H, W, 3]`` (also ``[H, W]`` grey or ``[H, W, 4]`` RGBA).
    ``.exr``: values as given (linear stays linear), half or float, ``compression`` from OpenEXR's list.
    ``.png``/``.tif``/``.jpg``/``.dpx``: values clipped to [0, 1] and quantised by OpenImageIO to ``bits``
    (default 8 for PNG/JPEG, 16 for TIFF, 10 for DPX).
    """
    target = os.fspath(path)
    data = np.asarray(rgb, dtype=np.float32)
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3 or data.shape[2] not in (1, 3, 4):
        raise ValueError(f"write_image expects [H, W], [H, W, 3] or [H, W, 4], got {data.shape}")
    names = {1: ("Y",), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}[data.shape[2]]
    ext = os.path.splitext(target)[1].lower()
    attributes: dict[str, Any] = {}
    if ext == ".exr":
        if compression not in EXR_COMPRESSIONS:
            raise UsageError(f"{target}: unknown EXR compression {compression!r}; use one of "
                             f"{', '.join(EXR_COMPRESSIONS)}")
        attributes["compression"] = compression
        pixel_type = "half" if half else "float"
    elif ext in _INT_FORMATS:
        default_bits, allowed = _INT_FORMATS[ext]
        depth = default_bits if bits is None else int(bits)
        if depth not in allowed:
            raise UsageError(f"{target}: {ext} cannot hold {depth}-bit pixels; use {allowed}")
        pixel_type = f"uint{depth}"
        # Integer formats hold display values: clip here so NaN/out-of-range never wrap around.
        data = np.clip(np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        if ext in (".jpg", ".jpeg"):
            attributes["compression"] = "jpeg:95"
        elif ext in (".tif", ".tiff"):
            attributes["compression"] = "zip"
    else:
        raise UsageError(f"{target}: unsupported image extension {ext!r}; use .exr, .png, .tif, .jpg or .dpx")
    write_oiio_image(target, data, channel_names=names, pixel_type=pixel_type, attributes=attributes)
