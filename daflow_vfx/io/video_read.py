"""Video plates read through PyAV (FFmpeg): H.264, HEVC, ProRes, DNxHD, ... in mp4/mov/mkv/mxf/avi/webm.

Frame k of the video stream (in presentation order) is plate frame ``start_frame + k``.

Frame count and addressing. ``stream.frames`` is 0 for many containers and a frame's number is not in
the packet, so at open we build an exact map from presentation timestamp to frame number:
- mp4/mov with a constant frame duration: the container's sample table gives the count and the
  timestamp step; no packet is read (a truncated file is caught by comparing the table with the file size);
- anything else: the packets are demuxed once (read, not decoded) and their timestamps sorted;
- a stream without timestamps: frames are counted by decoding once at open and read sequentially.
Reading keeps one decoder running, so sequential reads decode each frame once; a backward or long
forward jump seeks to the nearest keyframe before the frame (backing off further when the seek lands
late) and decodes forward. Frames decoded before the first keyframe after a seek are never used, since
their references are missing.

Pixels. Frames are converted to RGB with the stream's tagged matrix (untagged: BT.709 for HD, BT.601 for
SD, as players do) into rgb24, or rgb48le for sources deeper than 8 bits, then divided by the integer
type's maximum, so 8 and 10-bit sources both land in [0, 1]. Video is display-referred: the colour
guess is ``"srgb"``, and a tagged transfer characteristic (BT.709, sRGB, PQ, HLG, linear) is reported as
the file's own colour space for ``--input-colorspace auto``. Rotation and anamorphic metadata are not
applied.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from daflow_vfx.errors import CorruptFileError, InputError, MissingInputError
from daflow_vfx.frames import format_frame_spec
from daflow_vfx.io.plate import Plate, PlateInfo

__all__ = ["VideoPlate"]

logger = logging.getLogger(__name__)

# A forward jump longer than this many frames seeks instead of decoding through (about two GOPs).
_SEEK_AHEAD = 48
# After a seek that lands past the wanted frame, retry this many frames earlier (then 4x, 16x, ... , 0).
_BACKOFF = 16

# AVColorSpace values -> names swscale's reformatter knows.
_MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}

# H.273 transfer characteristics -> the colour space they name (short names of daflow_vfx.color or OCIO
# aliases of the built-in configs). Unspecified (2) and the rest name nothing: auto keeps its guess.
_TRANSFERS = {1: ("rec709", "bt709"), 6: ("rec709", "smpte170m"), 14: ("rec709", "bt2020-10"),
              15: ("rec709", "bt2020-12"), 13: ("srgb", "iec61966-2-1"), 8: ("linear", "linear"),
              16: ("rec2100_pq_display", "smpte2084"), 18: ("rec2100_hlg_display", "arib-std-b67")}


def _transfer_tag(frame: Any) -> dict[str, str]:
    found = _TRANSFERS.get(int(frame.color_trc or 0))
    if found is None:
        return {}
    return {"colorspace_tag": found[0], "colorspace_tag_source": f"transfer characteristics ({found[1]})"}

def _av() -> Any:
    # Imported here so `import daflow_vfx` does not pay for FFmpeg's start-up.
    import av

    return av


def _one_line(exc: BaseException) -> str:
    from daflow_vfx.io.sequence import one_line

    return one_line(str(exc))


class VideoPlate(Plate):
    """A video file read through PyAV; see the module docstring for how frames are addressed."""

    def __init__(self, path: str | os.PathLike, *, start_frame: int = 1) -> None:
        self._path = os.fspath(path)
        self._start = int(start_frame)
        if not os.path.isfile(self._path):
            raise MissingInputError(f"{self._path}: no such video file; check the path")
        self._container: Any = None
        self._cache: tuple[int, np.ndarray] | None = None
        try:
            self._open_container()
            self._pts_map: dict[int, int] | None = None   # pts -> frame index, from demuxed packets
            self._pts_list: list[int] = []                 # frame index -> pts (same source)
            self._step: int | None = None                  # constant pts step (mov sample table)
            self._first_pts = 0
            count = self._index_from_sample_table()
            if count is None:
                count = self._index_from_packets()
            if count is None:
                count = self._count_by_decoding()
            if count <= 0:
                raise CorruptFileError(f"{self._path}: the video stream holds no frames; re-export the file")
            first = self._first_frame()
            self._reopen()
            self._count = count
            bits = max(c.bits for c in first.format.components)
            stream = self._stream   # the reopened container's stream: the first one is closed
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            ext = os.path.splitext(self._path)[1].lower().lstrip(".")
            self.info = PlateInfo(
                path=self._path, kind="video", frames=list(range(self._start, self._start + count)),
                width=int(first.width), height=int(first.height), channels=["R", "G", "B"], layers=[""],
                pixel_type=f"uint{8 if bits <= 8 else bits}",
                file_format=ext or str(self._container.format.name),
                colorspace_guess="srgb", fps=float(rate) if rate else None,
                **_transfer_tag(first))
        except Exception:
            self.close()
            raise

    # -- opening and indexing ---------------------------------------------------------------------

    def _open_container(self) -> None:
        av = _av()
        try:
            self._container = av.open(self._path)
        except av.error.FFmpegError as exc:
            raise CorruptFileError(f"{self._path}: cannot open the video ({_one_line(exc)}); the file is "
                                   "truncated or corrupt, re-export or re-copy it") from exc
        if not self._container.streams.video:
            raise InputError(f"{self._path}: no video stream in this file; give a file with picture")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"   # frame threads: decoding is the cost of reading a video
        self._decoder: Iterator[Any] | None = None
        self._next_index: int | None = 0     # index of the frame the decoder yields next, when known
        self._trusted_from: int | None = 0   # frames below this index after a seek lack their references
        self._from_start = True              # decoding from the first frame (no seek since opening)

    def _reopen(self) -> None:
        """Start decoding again from the very first frame (a fresh demuxer, no seek to trust)."""
        if self._container is not None:
            self._container.close()
        self._open_container()

    def _index_from_sample_table(self) -> int | None:
        """mp4/mov: frame count and pts step from the sample table, when every frame lasts the same."""
        stream = self._stream
        if "mov" not in self._container.format.name.split(",") or stream.frames <= 0:
            return None
        entries = [e for e in stream.index_entries if not e.is_discard]
        if len(entries) != stream.frames or len(entries) == 0:
            return None
        end = max(e.pos + e.size for e in entries)
        size = os.path.getsize(self._path)
        if end > size:
            raise CorruptFileError(f"{self._path}: the video is truncated ({size} bytes, its index needs "
                                   f"{end}); re-export or re-copy it")
        if len(entries) > 1:
            steps = {b.timestamp - a.timestamp for a, b in zip(entries, entries[1:], strict=False)}
            if len(steps) != 1:
                return None   # variable frame rate: let the packets tell
            step = steps.pop()
            if step <= 0:
                return None
            self._step = step
        else:
            self._step = 1
        return len(entries)

    def _index_from_packets(self) -> int | None:
        """Demux (not decode) every packet: exact count and pts -> index. None when pts are missing."""
        av = _av()
        pts: list[int] = []
        end = 0
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                if packet.pts is None:
                    self._reopen()
                    return None
                pts.append(int(packet.pts))
                end = max(end, int(packet.pts) + int(packet.duration or 0))
        except av.error.FFmpegError as exc:
            raise CorruptFileError(f"{self._path}: the video cannot be read to the end ({_one_line(exc)}); "
                                   "it is truncated or corrupt, re-export or re-copy it") from exc
        declared = self._declared_duration()
        if pts and declared is not None:
            # A truncated Matroska/WebM file demuxes cleanly up to the cut; its header still knows the length.
            time_base = float(self._stream.time_base)
            found = (end - min(pts)) * time_base
            rate = self._stream.average_rate or self._stream.guessed_rate
            slack = 1.5 / float(rate) if rate else 0.1
            if found < declared - slack:
                raise CorruptFileError(f"{self._path}: the video is truncated ({found:.2f} s of the "
                                       f"{declared:.2f} s its header declares); re-export or re-copy it")
        self._reopen()
        ordered = sorted(set(pts))
        if len(ordered) != len(pts):
            return None   # repeated timestamps: a broken mux; count by decoding instead
        self._pts_list = ordered
        self._pts_map = {p: i for i, p in enumerate(ordered)}
        return len(ordered)

    def _declared_duration(self) -> float | None:
        """The video stream's length in seconds as its header states it, when it states it."""
        stream = self._stream
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        tag = str(stream.metadata.get("DURATION", ""))   # Matroska per-track tag, "HH:MM:SS.nnnnnnnnn"
        match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", tag.strip())
        if match is None:
            return None
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)

    def _count_by_decoding(self) -> int:
        av = _av()
        count = 0
        try:
            for _frame in self._container.decode(self._stream):
                count += 1
        except av.error.FFmpegError as exc:
            raise CorruptFileError(f"{self._path}: frame {self._start + count} cannot be decoded "
                                   f"({_one_line(exc)}); the video is truncated or corrupt, re-export it"
                                   ) from exc
        self._reopen()
        self._pts_map = None
        self._step = None
        return count

    def _first_frame(self) -> Any:
        """Decode frame 0 (proves the codec works, gives the size, anchors the pts step)."""
        av = _av()
        try:
            frame = next(iter(self._container.decode(self._stream)), None)
        except av.error.FFmpegError as exc:
            raise CorruptFileError(f"{self._path}: the first frame cannot be decoded ({_one_line(exc)}); the "
                                   "video is corrupt or its codec is not supported, re-export it") from exc
        if frame is None:
            raise CorruptFileError(f"{self._path}: no frame can be decoded; the video is truncated or "
                                   "corrupt, re-export it")
        if self._step is not None:
            if frame.pts is None:
                self._step = None
            else:
                self._first_pts = int(frame.pts)
        return frame

    # -- decoding -----------------------------------------------------------------------------------

    def _index_of(self, frame: Any) -> int | None:
        if frame.pts is None:
            return None
        if self._pts_map is not None:
            return self._pts_map.get(int(frame.pts))
        if self._step is not None:
            offset = int(frame.pts) - self._first_pts
            if offset % self._step == 0:
                return offset // self._step
        return None

    def _seekable(self) -> bool:
        return self._pts_map is not None or self._step is not None

    def _pts_of(self, index: int) -> int:
        if self._pts_map is not None:
            return self._pts_list[index]
        assert self._step is not None
        return self._first_pts + index * self._step

    def _seek(self, index: int) -> None:
        """Position the decoder so the frames it yields next lead to ``index``."""
        if index <= 0 or not self._seekable():
            self._reopen()
            return
        self._container.seek(self._pts_of(index), stream=self._stream, backward=True, any_frame=False)
        self._decoder = None
        self._next_index = None
        self._trusted_from = None
        self._from_start = False

    def _decode_next(self, plate_frame: int) -> tuple[int | None, Any] | None:
        av = _av()
        if self._decoder is None:
            self._decoder = iter(self._container.decode(self._stream))
        try:
            frame = next(self._decoder)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:
            raise CorruptFileError(f"{self._path}: frame {plate_frame} cannot be decoded ({_one_line(exc)}); "
                                   "the video is corrupt, re-export it") from exc
        index = self._index_of(frame)
        if index is None and self._from_start and self._next_index is not None:
            index = self._next_index   # decoding from the first frame: counting is exact
        if index is not None:
            self._next_index = index + 1
            if self._trusted_from is None and frame.key_frame:
                self._trusted_from = index
        return index, frame

    def _decode_to(self, k: int, frame_number: int) -> Any:
        """Decode forward to frame index ``k``, seeking when that is cheaper or needed."""
        near = self._next_index is not None and self._next_index <= k <= self._next_index + _SEEK_AHEAD
        if not near:
            self._seek(k)
        attempt = 0
        while True:
            result = self._decode_next(frame_number)
            if result is None:
                raise CorruptFileError(f"{self._path}: frame {frame_number} is missing: the video stream "
                                       "ended before it; the file is truncated, re-export or re-copy it")
            index, frame = result
            if index is not None and index < k:
                continue
            trusted = self._trusted_from is not None and index is not None and index >= self._trusted_from
            if index == k and trusted:
                return frame
            # The decoder is past k, or reached it without a keyframe before it: start further back.
            if self._from_start:
                raise CorruptFileError(f"{self._path}: frame {frame_number} cannot be located in the video "
                                       "stream; re-export the file with regular timestamps")
            attempt += 1
            self._seek(max(k - _BACKOFF * 4 ** (attempt - 1), 0))

    def _to_array(self, frame: Any) -> np.ndarray:
        fmt = frame.format
        bits = max(c.bits for c in fmt.components)
        target = "rgb48le" if bits > 8 else "rgb24"
        kwargs: dict[str, Any] = {}
        if not fmt.is_rgb:
            matrix = _MATRICES.get(int(frame.colorspace))
            if matrix is None:
                matrix = "ITU709" if frame.height >= 720 else "ITU601"
            full = int(frame.color_range) == 2 or fmt.name.startswith("yuvj")
            kwargs = {"src_colorspace": matrix, "src_color_range": "JPEG" if full else "MPEG"}
        rgb = frame.to_ndarray(format=target, **kwargs)   # [H, W, 3] uint8 or uint16
        scale = np.float32(np.iinfo(rgb.dtype).max)
        return rgb.astype(np.float32) / scale

    def read(self, frame: int) -> np.ndarray:
        if self._container is None:
            raise InputError(f"{self._path}: plate is closed; open it again to read frame {frame}")
        k = int(frame) - self._start
        if not 0 <= k < self._count:
            raise InputError(f"{self._path}: frame {frame} is outside the video "
                             f"({format_frame_spec(self.info.frames)}); ask for frames inside that range "
                             "or set `start_frame`", param="start_frame")
        if self._cache is not None and self._cache[0] == k:
            return self._cache[1].copy()
        decoded = self._decode_to(k, int(frame))
        image = self._to_array(decoded)   # [H, W, 3] float32 in [0, 1]
        if image.shape[:2] != (self.info.height, self.info.width):
            from daflow_vfx.errors import FrameSizeError

            raise FrameSizeError(f"{self._path}: frame {frame} is {image.shape[1]}x{image.shape[0]} but "
                                 f"frame {self._start} is {self.info.width}x{self.info.height}; re-export "
                                 "the video at one size")
        self._cache = (k, image)
        return image.copy()

    def source_files(self) -> list[str]:
        return [self._path]

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._decoder = None
        self._cache = None
