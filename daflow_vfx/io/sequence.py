"""Image sequences (EXR, DPX, TIFF, PNG, JPEG, ...) read through OpenImageIO.

Every frame is read in full and checked: OpenImageIO can hand back partial pixels from a truncated file
and only say so through ``geterror()``, so a frame whose read reports any error is a
:class:`~daflow_vfx.errors.CorruptFileError` naming the file, never silently black rows.

EXR specifics: multi-part files are read part by part (channels of later parts without a layer prefix get
the part name as prefix), and pixels outside the display window are cropped while a data window
smaller than the display window is padded with zeros, so every frame comes out at the display size.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from daflow_vfx.errors import (
    CorruptFileError,
    FrameSizeError,
    InputError,
    MissingInputError,
)
from daflow_vfx.frames import SequencePattern, format_frame_spec
from daflow_vfx.io.plate import Plate, PlateInfo

__all__ = ["SequencePlate", "ImageHeader", "read_image_header", "read_image_channels", "select_rgb_channels",
           "layers_of"]

logger = logging.getLogger(__name__)

_RGB_NAMES: tuple[tuple[str, str, str], ...] = (("R", "G", "B"), ("r", "g", "b"), ("red", "green", "blue"))
_GREY_NAMES: tuple[str, ...] = ("Y",)


def _oiio() -> Any:
    # Imported here so `import daflow_vfx` stays fast and works where only flow maths is needed.
    import OpenImageIO

    return OpenImageIO


def one_line(message: str, limit: int = 200) -> str:
    """Collapse a library's (possibly multi-line) error text into one short line."""
    text = re.sub(r"\s+", " ", message or "").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ImageHeader:
    """The parts of an image header the readers use. ``channels`` are qualified across EXR parts."""

    path: str
    width: int                                   # display window
    height: int
    channels: list[str]
    locations: dict[str, tuple[int, int]]        # channel -> (subimage, channel index in that subimage)
    pixel_types: dict[str, str]                  # channel -> "half", "float", "uint8", "uint10", ...
    file_format: str
    transfer: str                                # "log" for printing-density DPX / Cineon, else ""
    fps: float | None
    colorspace_tag: str = ""                     # the colour space the file names, see _colorspace_tag
    colorspace_tag_source: str = ""


def _pixel_type(spec: Any, index: int) -> str:
    fmt = spec.channelformat(index)
    name = str(fmt)
    bits = spec.getattribute("oiio:BitsPerSample")
    if name.startswith("uint") and isinstance(bits, int) and 0 < bits < fmt.size() * 8:
        # A 10-bit DPX arrives as uint16; report what the file really holds.
        return f"uint{bits}"
    return name


def _open_input(path: str, what: str) -> Any:
    oiio = _oiio()
    if not os.path.exists(path):
        raise MissingInputError(f"{path}: {what} does not exist; check the path or render the missing frame")
    inp = oiio.ImageInput.open(path)
    if inp is None:
        err = one_line(oiio.geterror())
        raise CorruptFileError(f"{path}: {what} cannot be opened ({err}); the file is corrupt or not an "
                               "image, re-render or replace it")
    return inp


def _header_from_input(inp: Any, path: str) -> ImageHeader:
    oiio_spec = inp.spec()
    width, height = int(oiio_spec.full_width), int(oiio_spec.full_height)
    channels: list[str] = []
    locations: dict[str, tuple[int, int]] = {}
    pixel_types: dict[str, str] = {}
    subimage = 0
    while True:
        if subimage > 0 and not inp.seek_subimage(subimage, 0):
            inp.geterror()   # clear "no such subimage" so it is not mistaken for a read error later
            break
        spec = inp.spec()
        part = spec.getattribute("oiio:subimagename") or ""
        for index, name in enumerate(spec.channelnames):
            # Later EXR parts often hold bare "R,G,B" named by the part; qualify them so they stay apart.
            qualified = f"{part}.{name}" if subimage > 0 and part and "." not in name else name
            if qualified in locations:
                continue
            channels.append(qualified)
            locations[qualified] = (subimage, index)
            pixel_types[qualified] = _pixel_type(spec, index)
        subimage += 1
        if inp.format_name() != "openexr":
            # Only EXR parts are layers; other formats' subimages are pages or thumbnails.
            break
    if subimage > 1:
        inp.seek_subimage(0, 0)
    file_format = inp.format_name()
    transfer = ""
    dpx_transfer = str(oiio_spec.getattribute("dpx:Transfer") or "")
    if file_format == "cineon" or dpx_transfer.lower().startswith("printing density"):
        transfer = "log"
    fps_value = oiio_spec.getattribute("FramesPerSecond")
    fps: float | None = None
    if isinstance(fps_value, (int, float)) and fps_value > 0:
        fps = float(fps_value)
    tag, source = _colorspace_tag(oiio_spec, file_format)
    return ImageHeader(path=path, width=width, height=height, channels=channels, locations=locations,
                       pixel_types=pixel_types, file_format=file_format, transfer=transfer, fps=fps,
                       colorspace_tag=tag, colorspace_tag_source=source)


# Formats with no colour metadata at all, whose oiio:ColorSpace is OpenImageIO's fixed guess rather than
# anything the file says (PNM reads as "Rec709", which would turn every 8-bit PPM into gamma 2.4).
_UNTAGGED_FORMATS = frozenset({"pnm"})


def _colorspace_tag(spec: Any, file_format: str = "") -> tuple[str, str]:
    """(colour space, attribute) the file names: an EXR ``colorspace`` attribute (as OCIO-aware apps
    write it), else OpenImageIO's ``oiio:ColorSpace``. The latter is also the reader's default guess
    (lin_rec709 for EXR, sRGB for PNG), so the colour boundary uses it only where it differs from ours."""
    names = ("colorspace",) if file_format in _UNTAGGED_FORMATS else ("colorspace", "oiio:ColorSpace")
    for name in names:
        value = spec.getattribute(name)
        if isinstance(value, str) and value.strip():
            return value.strip(), f"{name} attribute"
    return "", ""


def read_image_header(path: str | os.PathLike) -> ImageHeader:
    """Read an image's header. MissingInputError / CorruptFileError naming the file."""
    text = os.fspath(path)
    inp = _open_input(text, "image")
    try:
        return _header_from_input(inp, text)
    finally:
        inp.close()


def layers_of(channels: list[str]) -> list[str]:
    """Layer prefixes in order of first appearance; ``""`` is the unnamed (R, G, B, A) layer."""
    layers: list[str] = []
    for name in channels:
        layer = name.rsplit(".", 1)[0] if "." in name else ""
        if layer not in layers:
            layers.append(layer)
    return layers


def _layer_rgb(channels: list[str], layer: str) -> list[str] | None:
    prefix = f"{layer}." if layer else ""
    available = set(channels)
    for names in _RGB_NAMES:
        picked = [prefix + n for n in names]
        if all(c in available for c in picked):
            return picked
    for name in _GREY_NAMES:
        if prefix + name in available:
            return [prefix + name] * 3
    return None


def select_rgb_channels(channels: list[str], layer: str | None, *, path: str) -> list[str]:
    """The three channel names that make the plate's RGB (a grey channel is repeated three times).

    ``layer=None``: R,G,B (or r,g,b / red,green,blue, or a single Y) of the unnamed layer, else of the first
    layer that has them, else the only channel of a one-channel image. ``layer="diffuse"``: that layer's
    RGB, or its only channel, or its first three channels. InputError listing the layers otherwise.
    """
    layers = layers_of(channels)
    if layer is None:
        for candidate in ([""] if "" in layers else []) + [lay for lay in layers if lay]:
            picked = _layer_rgb(channels, candidate)
            if picked is not None:
                return picked
        if len(channels) == 1:
            return [channels[0]] * 3
        raise InputError(f"{path}: no R,G,B channels (channels: {', '.join(channels)}); pick a layer with "
                         f"`layer` ({', '.join(repr(lay) for lay in layers)})", param="layer")
    if layer not in layers:
        raise InputError(f"{path}: no layer {layer!r}; available layers: "
                         f"{', '.join(repr(lay) for lay in layers)}; pass one of them as `layer`",
                         param="layer")
    picked = _layer_rgb(channels, layer)
    if picked is not None:
        return picked
    members = [c for c in channels if (c.rsplit(".", 1)[0] if "." in c else "") == layer]
    if len(members) == 1:
        return members * 3
    if len(members) >= 3:
        return members[:3]
    raise InputError(f"{path}: layer {layer!r} has channels {', '.join(members)}, not an RGB or single "
                     "channel; pick another layer")


# magic -> (byte order, offset of the header's "total file size" field)
_SIZED_HEADERS = {b"SDPX": (">", 16), b"XPDS": ("<", 16),
                  b"\x80\x2a\x5f\xd7": (">", 20), b"\xd7\x5f\x2a\x80": ("<", 20)}


def check_declared_size(path: str, what: str) -> None:
    """DPX and Cineon headers declare the total file size. Some OpenImageIO builds (e.g. 3.0) read a
    truncated file without an error and return the missing rows as zeros, so compare the sizes here."""
    import struct

    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
        actual = os.path.getsize(path)
    except OSError:
        return  # the read below reports it
    found = _SIZED_HEADERS.get(head[:4])
    if found is None or len(head) < found[1] + 4:
        return
    order, at = found
    (declared,) = struct.unpack(f"{order}I", head[at:at + 4])
    if declared > actual:
        raise CorruptFileError(f"{path}: {what} is truncated ({actual} of {declared} bytes); re-render or "
                               "replace the file")


def _read_subimage(inp: Any, path: str, what: str, subimage: int, chbegin: int, chend: int) -> np.ndarray:
    """Read channels [chbegin, chend) of one subimage at the display window size, error-checked."""
    if inp.format_name() in ("dpx", "cineon"):
        check_declared_size(path, what)
    if not inp.seek_subimage(subimage, 0):
        raise CorruptFileError(f"{path}: {what} has no part {subimage} ({one_line(inp.geterror())}); "
                               "re-render or replace the file")
    spec = inp.spec()
    pixels = inp.read_image(subimage, 0, chbegin, chend, "float")
    err = inp.geterror()
    if pixels is None or err:
        # OpenImageIO may return partial data for a truncated file and report it only here.
        raise CorruptFileError(f"{path}: {what} is truncated or corrupt ({one_line(err) or 'read failed'}); "
                               "re-render or replace the file")
    data = np.asarray(pixels, dtype=np.float32).reshape(spec.height, spec.width, chend - chbegin)
    window = (spec.x, spec.y, spec.width, spec.height)
    display = (spec.full_x, spec.full_y, spec.full_width, spec.full_height)
    if window == display:
        return data
    # Put the data window into the display window: crop overscan, pad a smaller data window with zeros.
    out = np.zeros((spec.full_height, spec.full_width, chend - chbegin), np.float32)  # [H, W, C]
    x0, y0 = max(spec.x, spec.full_x), max(spec.y, spec.full_y)
    x1 = min(spec.x + spec.width, spec.full_x + spec.full_width)
    y1 = min(spec.y + spec.height, spec.full_y + spec.full_height)
    if x1 > x0 and y1 > y0:
        out[y0 - spec.full_y:y1 - spec.full_y, x0 - spec.full_x:x1 - spec.full_x] = \
            data[y0 - spec.y:y1 - spec.y, x0 - spec.x:x1 - spec.x]
    return out


def read_image_channels(path: str | os.PathLike, names: list[str], *, what: str = "image",
                        expect_size: tuple[int, int] | None = None,
                        reference: str = "the plate") -> np.ndarray:
    """Read the named channels of an image as float32 ``[H, W, len(names)]`` (names may repeat).

    ``expect_size`` = (width, height) raises FrameSizeError when the image differs from ``reference``
    (e.g. ``"frame 1001"``). ``what`` names the image in messages (e.g. ``"frame 1004"``).
    """
    text = os.fspath(path)
    inp = _open_input(text, what)
    try:
        head = _header_from_input(inp, text)
        if expect_size is not None and (head.width, head.height) != tuple(expect_size):
            raise FrameSizeError(
                f"{text}: {what} is {head.width}x{head.height} but {reference} is "
                f"{expect_size[0]}x{expect_size[1]}; reformat the plate to one size")
        missing = [n for n in names if n not in head.locations]
        if missing:
            raise InputError(f"{text}: {what} has no channel(s) {', '.join(missing)} (it has "
                             f"{', '.join(head.channels)}); make every frame carry the same channels")
        # Group the wanted channels by part and read each part's smallest covering channel range once.
        by_part: dict[int, list[int]] = {}
        for n in names:
            sub, index = head.locations[n]
            by_part.setdefault(sub, []).append(index)
        columns: dict[tuple[int, int], np.ndarray] = {}
        for sub, indices in sorted(by_part.items()):
            lo, hi = min(indices), max(indices) + 1
            block = _read_subimage(inp, text, what, sub, lo, hi)   # [H, W, hi - lo]
            for index in set(indices):
                columns[(sub, index)] = block[..., index - lo]
        return np.stack([columns[head.locations[n]] for n in names], axis=-1).astype(np.float32, copy=False)
    finally:
        inp.close()


class SequencePlate(Plate):
    """An image sequence (or a single image as a one-frame sequence) read through OpenImageIO."""

    def __init__(self, pattern: SequencePattern, *, layer: str | None = None,
                 allow_gaps: bool = False) -> None:
        present = pattern.scan()
        if not present:
            raise MissingInputError(f"{pattern}: no files match this pattern; check the folder, name, "
                                    "padding and extension")
        missing = sorted(set(range(present[0], present[-1] + 1)) - set(present))
        self._path_for = pattern.path
        self._label = str(pattern)
        frames = list(range(present[0], present[-1] + 1))
        self._setup(frames, set(present), missing, layer)
        if not allow_gaps:
            # Jobs open with gaps allowed and check, and log, only the frames they read (check_gaps).
            self.info.check_gaps(missing, allow_gaps=False, allow_param="allow_gaps")

    @classmethod
    def single(cls, path: str | os.PathLike, *, frame: int = 1, layer: str | None = None) -> SequencePlate:
        """One image file as a one-frame plate numbered ``frame``."""
        text = os.fspath(path)
        self = cls.__new__(cls)
        self._path_for = lambda _frame: text
        self._label = text
        self._setup([frame], {frame}, [], layer)
        return self

    def _setup(self, frames: list[int], present: set[int], missing: list[int], layer: str | None) -> None:
        self._present = present
        self._closed = False
        first = frames[0]
        header = read_image_header(self._path_for(first))
        self._header = header
        self._names = select_rgb_channels(header.channels, layer, path=header.path)
        pixel_type = header.pixel_types[self._names[0]]
        if header.transfer == "log":
            guess = "log"
        elif header.file_format == "openexr" or pixel_type in ("half", "float", "double"):
            guess = "linear"
        else:
            guess = "srgb"
        self.info = PlateInfo(
            path=self._label, kind="sequence", frames=frames, width=header.width, height=header.height,
            channels=list(header.channels), layers=layers_of(header.channels), pixel_type=pixel_type,
            file_format=header.file_format, colorspace_guess=guess, fps=header.fps, missing=list(missing),
            colorspace_tag=header.colorspace_tag, colorspace_tag_source=header.colorspace_tag_source)

    def source_frame(self, frame: int) -> int:
        """The frame on disk that ``frame`` reads (the previous existing one for a missing frame)."""
        frames = self.info.frames
        if not frames or frame < frames[0] or frame > frames[-1]:
            raise InputError(f"{self._label}: frame {frame} is outside the plate "
                             f"({format_frame_spec(frames)}); ask for frames inside that range")
        held = frame
        while held not in self._present:
            held -= 1
        return held

    def read(self, frame: int) -> np.ndarray:
        if self._closed:
            raise InputError(f"{self._label}: plate is closed; open it again to read frame {frame}")
        source = self.source_frame(frame)
        what = f"frame {source}" if len(self.info.frames) > 1 else "image"
        return read_image_channels(self._path_for(source), self._names, what=what,
                                   expect_size=(self.info.width, self.info.height),
                                   reference=f"frame {self.info.frames[0]}")  # [H, W, 3]

    def source_files(self) -> list[str]:
        return [self._path_for(f) for f in sorted(self._present)]

    def close(self) -> None:
        self._closed = True
