"""Plates: what a reader knows about its input (:class:`PlateInfo`) and how frames come out (:class:`Plate`).

:func:`open_plate` picks the reader from the path: a frame token (``####``, ``%04d``, ``$F4``) means an
image sequence through OpenImageIO, a video extension means PyAV, any other existing file is a one-frame
sequence. Frames come out as float32 ``[H, W, 3]`` in the plate's own colour space, unclamped.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from daflow_vfx.errors import MissingFramesError, MissingInputError, SequenceTooShortError

__all__ = ["PlateInfo", "Plate", "open_plate", "VIDEO_EXTENSIONS"]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".avi", ".mxf", ".webm", ".m4v")


@dataclass(frozen=True)
class PlateInfo:
    """What a plate holds, as ``daflow-vfx info`` reports it."""

    path: str                 # pattern or file as given
    kind: str                 # "sequence" | "video"
    frames: list[int]         # plate frame numbers available (with allow_gaps: the full range, gaps held)
    width: int
    height: int
    channels: list[str]       # channel names of the first frame
    layers: list[str]         # layer prefixes found ("" for the unnamed RGBA layer)
    pixel_type: str           # "half", "float", "uint8", "uint10", "uint16", ...
    file_format: str          # "openexr", "dpx", "tiff", "png", "jpeg", "mp4", "mov", ...
    colorspace_guess: str     # what `--input-colorspace auto` picks: "linear" for float EXR, else "srgb"
    fps: float | None
    missing: list[int] = field(default_factory=list)   # frames absent on disk (only with allow_gaps)
    colorspace_tag: str = ""          # the colour space the file itself names ("" when it names none)
    colorspace_tag_source: str = ""   # where: "colorspace attribute", "transfer characteristics (bt709)"

    def check_gaps(self, needed: Iterable[int], *, allow_gaps: bool, allow_param: str | None = None) -> None:
        """Refuse the job when a frame it reads (``needed``) is a gap on disk, unless ``allow_gaps``.

        Only the frames a job reads count: a farm chunk is not failed by a gap elsewhere in the plate.
        With ``allow_gaps`` the held frames are logged once. ``allow_param`` names the parameter that
        would allow them, for the message (None when the job has no such option).
        """
        gaps = sorted(set(needed) & set(self.missing))
        if not gaps:
            return
        from daflow_vfx.frames import frames_phrase

        if allow_gaps:
            logger.warning("%s: holding the previous frame over %s", self.path, frames_phrase(gaps))
            return
        remedy = f" or pass `{allow_param}` to hold the previous frame" if allow_param else ""
        raise MissingFramesError(f"{self.path}: {frames_phrase(gaps, 'is missing', 'are missing')}; render "
                                 f"{'it' if len(gaps) == 1 else 'them'}{remedy}", missing=gaps,
                                 param=allow_param)

    def require_span(self, *, needs: str) -> tuple[int, int]:
        """(first, last) plate frames; SequenceTooShortError naming ``needs`` for a one-frame plate."""
        first, last = min(self.frames), max(self.frames)
        if first == last:
            raise SequenceTooShortError(f"{self.path}: the plate has one frame ({first}); {needs} needs at "
                                        "least two frames")
        return first, last


class Plate(ABC):
    """Base class of the plate readers; use as a context manager or call :meth:`close`.

    A reader sets :attr:`info` and implements :meth:`read`, :meth:`close` and :meth:`source_files`; a
    reader missing one cannot be instantiated.
    """

    info: PlateInfo

    @abstractmethod
    def read(self, frame: int) -> np.ndarray:
        """Frame ``frame`` as float32 ``[H, W, 3]`` in the plate's own colour space, raw values."""

    @abstractmethod
    def close(self) -> None:
        """Release files and decoders; reading after close is an error."""

    @abstractmethod
    def source_files(self) -> list[str]:
        """Every file on disk this plate reads, so a job can refuse outputs that would overwrite one."""

    def __enter__(self) -> Plate:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.info
        return (f"{type(self).__name__}({info.path!r}, frames={len(info.frames)}, "
                f"{info.width}x{info.height}, {info.pixel_type})")


def open_plate(path: str | os.PathLike, *, layer: str | None = None, start_frame: int = 1,
               allow_gaps: bool = False) -> Plate:
    """Open an image sequence, a single image or a video file as a :class:`Plate`.

    ``layer`` picks an EXR layer (``"diffuse"`` -> ``diffuse.R/G/B``); ``None`` picks RGB.
    ``start_frame`` is the plate frame number of a video's first frame (and of a single image).
    ``allow_gaps`` holds the last existing frame over missing ones instead of raising
    :class:`~daflow_vfx.errors.MissingFramesError`.
    """
    from daflow_vfx.frames import SequencePattern

    text = os.fspath(path)
    if not text:
        raise MissingInputError("no input given; pass an image sequence, image or video path")
    pattern = SequencePattern.parse(text)
    if pattern is not None and not os.path.exists(text):
        from daflow_vfx.io.sequence import SequencePlate

        return SequencePlate(pattern, layer=layer, allow_gaps=allow_gaps)
    if not os.path.exists(text):
        raise MissingInputError(f"{text}: no such file; check the path (sequences need a frame token such as "
                                "name.####.exr)")
    if os.path.isdir(text):
        raise MissingInputError(f"{text}: is a folder; give an image sequence pattern such as "
                                f"{os.path.join(text, 'name.####.exr')} or a video file")
    if os.path.splitext(text)[1].lower() in VIDEO_EXTENSIONS:
        from daflow_vfx.io.video_read import VideoPlate

        if layer:
            raise _no_layers_error(text, layer)
        return VideoPlate(text, start_frame=start_frame)
    from daflow_vfx.io.sequence import SequencePlate

    return SequencePlate.single(text, frame=start_frame, layer=layer)


def _no_layers_error(path: str, layer: str) -> Exception:
    from daflow_vfx.errors import InputError

    return InputError(f"{path}: a video has no layers but layer {layer!r} was asked for; drop the layer "
                      "option")
