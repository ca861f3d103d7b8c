"""Video through PyAV (FFmpeg): the reader is :class:`~daflow_vfx.io.video_read.VideoPlate` (re-exported
here); this module writes videos, including the delivery codecs of ``--codec`` (H.264, ProRes 422 HQ,
ProRes 4444, DNxHR) with their pixel formats.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import numpy as np

from daflow_vfx.errors import OutputError, UsageError
from daflow_vfx.io.video_read import VideoPlate, _av, _one_line

__all__ = ["VideoPlate", "write_video", "delivery_settings", "VIDEO_CODECS", "VIDEO_QUALITIES"]

logger = logging.getLogger(__name__)

_CRF_CODECS = ("libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")


VIDEO_CODECS: tuple[str, ...] = ("h264", "prores", "prores4444", "dnxhr")
VIDEO_QUALITIES: tuple[str, ...] = ("high", "medium", "low")

# --codec -> (FFmpeg encoder, containers, {--quality: (pixel format, encoder options)}).
# ProRes 422 HQ / 422 / LT are 10-bit 4:2:2; ProRes 4444 is 10-bit 4:4:4 plus alpha at every quality (its
# quantiser matrix drops); DNxHR HQX is 10-bit 4:2:2, HQ and SQ are 8-bit 4:2:2 as Avid defines them.
_DELIVERY: dict[str, tuple[str, tuple[str, ...], dict[str, tuple[str, dict[str, str]]]]] = {
    "h264": ("libx264", (".mp4", ".mov", ".mkv", ".m4v"), {
        "high": ("yuv420p", {"crf": "18"}), "medium": ("yuv420p", {"crf": "23"}),
        "low": ("yuv420p", {"crf": "28"})}),
    "prores": ("prores_ks", (".mov",), {
        "high": ("yuv422p10le", {"profile": "3"}), "medium": ("yuv422p10le", {"profile": "2"}),
        "low": ("yuv422p10le", {"profile": "1"})}),
    "prores4444": ("prores_ks", (".mov",), {
        "high": ("yuva444p10le", {"profile": "4"}),
        "medium": ("yuva444p10le", {"profile": "4", "quant_mat": "standard"}),
        "low": ("yuva444p10le", {"profile": "4", "quant_mat": "lt"})}),
    "dnxhr": ("dnxhd", (".mov", ".mxf"), {
        "high": ("yuv422p10le", {"profile": "dnxhr_hqx"}), "medium": ("yuv422p", {"profile": "dnxhr_hq"}),
        "low": ("yuv422p", {"profile": "dnxhr_sq"})}),
}
_DNXHR_MIN = (256, 120)   # FFmpeg's dnxhd encoder refuses smaller DNxHR frames


def delivery_settings(codec: str, quality: str, path: str, *,
                      size: tuple[int, int] | None = None) -> tuple[str, str, dict[str, str]]:
    """(FFmpeg encoder, pixel format, encoder options) for ``--codec``/``--quality`` writing ``path``.

    UsageError naming ``codec`` for an unknown codec, a container that cannot hold it, or (with ``size`` =
    (width, height)) a frame too small for DNxHR; naming ``quality`` for an unknown quality.
    """
    if codec not in _DELIVERY:
        raise UsageError(f"unknown `codec` {codec!r}; choose one of {', '.join(VIDEO_CODECS)}", param="codec")
    if quality not in VIDEO_QUALITIES:
        raise UsageError(f"unknown `quality` {quality!r}; choose one of {', '.join(VIDEO_QUALITIES)}",
                         param="quality")
    encoder, containers, levels = _DELIVERY[codec]
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in containers:
        raise UsageError(f"{path}: `codec` {codec} cannot be written to {ext or 'a file without extension'}; "
                         f"name the output {' or '.join(containers)}", param="codec")
    if codec == "dnxhr" and size is not None and (size[0] < _DNXHR_MIN[0] or size[1] < _DNXHR_MIN[1]):
        raise UsageError(f"{path}: DNxHR needs frames of at least {_DNXHR_MIN[0]}x{_DNXHR_MIN[1]}, these are "
                         f"{size[0]}x{size[1]}; use `codec` prores", param="codec")
    pix_fmt, options = levels[quality]
    return encoder, pix_fmt, dict(options)


def _rate(fps: float) -> Fraction:
    """fps as an exact fraction, recognising the NTSC rates (23.976 -> 24000/1001)."""
    if fps <= 0 or not math.isfinite(fps):
        raise UsageError(f"frame rate {fps} is not a positive number; pass a rate such as 24 or 23.976")
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 2e-3:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def write_video(path: str | os.PathLike, frames_iter: Iterable[np.ndarray], *, fps: float,
                codec: str = "libx264", crf: int = 18, pix_fmt: str = "yuv420p",
                options: dict[str, str] | None = None, color_trc: int = 1) -> int:
    """Encode display-referred RGB frames to a video file, atomically; returns the number of frames.

    Frames: float ``[H, W, 3]`` in [0, 1] (clipped), or uint8/uint16 arrays taken as is. The size comes
    from the first frame; chroma-subsampled ``pix_fmt`` with an odd size pads the last row/column
    (repeating it) to an even size. ``options`` are the encoder's own (see :func:`delivery_settings`).
    YUV is made with the BT.709 matrix and tagged so; ``color_trc`` is the H.273 transfer tag of the
    values (1 BT.709, 13 sRGB, 2 unspecified, e.g. for log).
    """
    av = _av()
    from daflow_vfx.io._atomic import atomic_path

    target = os.fspath(path)
    rate = _rate(float(fps))
    written = 0
    with atomic_path(target) as tmp:
        try:
            container = av.open(tmp, mode="w")
        except av.error.FFmpegError as exc:
            raise _encode_error(target, "cannot create the video", exc,
                                "use a .mp4/.mov/.mkv name in a writable folder") from None
        finished = False
        try:
            try:
                stream = container.add_stream(codec, rate=rate)
            except (av.error.FFmpegError, ValueError) as exc:
                raise UsageError(f"{target}: codec {codec!r} is not available ({_one_line(exc)}); use "
                                 "libx264, prores_ks or another FFmpeg encoder") from exc
            pix = av.VideoFormat(pix_fmt)
            deep = max(c.bits for c in pix.components) > 8
            src_format, src_dtype = ("rgb48le", np.uint16) if deep else ("rgb24", np.uint8)
            size: tuple[int, int] | None = None
            for image in frames_iter:
                arr = _quantise(np.asarray(image), src_dtype)   # [H, W, 3]
                if size is None:
                    source = (int(arr.shape[0]), int(arr.shape[1]))
                    size = _open_stream(stream, arr, pix, pix_fmt, codec, crf, options or {}, color_trc)
                    if size != (source[1], source[0]):
                        logger.warning("%s: %dx%d padded to %dx%d for chroma subsampling", target, source[1],
                                       source[0], size[0], size[1])
                arr = _fit(arr, source, size, target, written)
                vf = av.VideoFrame.from_ndarray(arr, format=src_format)
                if not pix.is_rgb:
                    vf = vf.reformat(format=pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
                    # ProRes writes its frame header's tags from the frame, not from the stream
                    vf.color_trc = int(color_trc)
                    vf.color_primaries = 1 if color_trc != 2 else 2
                vf.pts = written
                vf.time_base = 1 / rate
                for packet in stream.encode(vf):
                    container.mux(packet)
                written += 1
            if size is None:
                raise ValueError("write_video got no frames")
            for packet in stream.encode():
                container.mux(packet)
            finished = True
        except av.error.FFmpegError as exc:
            raise _encode_error(target, f"encoding failed at frame {written}", exc,
                                "check the codec, pixel format and free disk space") from None
        finally:
            try:
                container.close()  # writes the trailer: a full disk can fail here, after every frame
            except av.error.FFmpegError as exc:
                # After an earlier failure that error is the one to report; the trailer is moot.
                if finished:
                    raise _encode_error(target, "could not finish the video", exc,
                                        "check free disk space") from None
                logger.debug("%s: closing after a failed encode: %s", target, exc)
    return written


def _encode_error(target: str, what: str, exc: Exception, hint: str) -> OutputError:
    """One line for an FFmpeg failure; an operating-system error (a full disk) says so plainly."""
    if isinstance(exc, OSError) and exc.errno:
        from daflow_vfx.io._atomic import write_failure

        return write_failure(target, exc)
    return OutputError(f"{target}: {what} ({_one_line(exc)}); {hint}")


def _quantise(image: np.ndarray, dtype: type[np.integer]) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_video frames must be [H, W, 3], got {image.shape}")
    top = np.iinfo(dtype).max
    if np.issubdtype(image.dtype, np.integer):
        source_top = np.iinfo(image.dtype).max
        if source_top == top:
            return np.ascontiguousarray(image, dtype=dtype)
        # Re-scale between integer depths by their ranges (8-bit frames into a 10-bit encode, ...).
        image = image.astype(np.float32) / np.float32(source_top)
    clean = np.clip(np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return np.ascontiguousarray(np.rint(clean * np.float32(top)).astype(dtype))


def _open_stream(stream: Any, first: np.ndarray, pix: Any, pix_fmt: str, codec: str,
                 crf: int, options: dict[str, str], color_trc: int) -> tuple[int, int]:
    height, width = first.shape[:2]
    # Subsampled chroma (4:2:0, 4:2:2) needs even sizes; repeat the last row/column rather than fail.
    if pix.chroma_width(1023) != 1023:
        width += width % 2
    if pix.chroma_height(1023) != 1023:
        height += height % 2
    stream.width, stream.height = width, height
    stream.pix_fmt = pix_fmt
    settings = {"crf": str(int(crf))} if codec in _CRF_CODECS else {}
    settings.update(options)
    if settings:
        stream.options = settings
    context = stream.codec_context
    if not pix.is_rgb:
        # Tag BT.709 limited range: what the pixels are converted with below, and what players assume for HD.
        context.colorspace = 1
        context.color_primaries = 1 if color_trc != 2 else 2
        context.color_trc = int(color_trc)
        context.color_range = 1
    return width, height


def _fit(arr: np.ndarray, source: tuple[int, int], size: tuple[int, int], target: str,
         index: int) -> np.ndarray:
    """Check a frame has the first frame's (height, width) ``source`` and pad it to the coded ``size``."""
    if arr.shape[:2] != source:
        raise ValueError(f"{target}: frame {index} is {arr.shape[1]}x{arr.shape[0]} but the first frame is "
                         f"{source[1]}x{source[0]}")
    width, height = size
    if (width, height) == (source[1], source[0]):
        return arr
    return np.pad(arr, ((0, height - source[0]), (0, width - source[1]), (0, 0)), mode="edge")
