"""What the jobs write, in one place: output kinds, sidecar names, atomic text files, the writer thread.

Every job names its outputs the same way (an image pattern with a frame token, or a video file), puts
its JSON sidecar beside them under the same rule, and writes frames on one background thread that is
shut down the same way whether the job succeeds, fails or is interrupted. Whether the outputs may be
written at all (not over an input, folders creatable) is :mod:`.safety`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable

from daflow_vfx.errors import Interrupted, UsageError

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "Progress",
    "ProgressCounter",
    "exr_pattern",
    "output_kind",
    "sidecar_path",
    "write_in_background",
    "write_text",
]

Progress = Callable[[int, int], None]  # progress(done, total)

# image files retime and stabilize write (through OpenImageIO); anything else is a video or an error
IMAGE_EXTENSIONS: tuple[str, ...] = (".exr", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".dpx")


# --------------------------------------------------------------------------------------------------
# output kinds


def output_kind(output: str, *, param: str = "output") -> str:
    """``"sequence"`` for an image pattern with a frame token, ``"video"`` for a video file name;
    a :class:`UsageError` naming ``param`` for anything else."""
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io.plate import VIDEO_EXTENSIONS

    ext = os.path.splitext(output)[1].lower()
    if SequencePattern.parse(output) is not None:
        if ext not in IMAGE_EXTENSIONS:
            raise UsageError(f"`{param}` {output!r}: unsupported extension {ext!r}; use .exr, .png, .tif, "
                             ".jpg or .dpx for images, or a video file (.mp4, .mov)", param=param)
        return "sequence"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    raise UsageError(f"`{param}` {output!r} has no frame token and is not a video file; use a pattern such "
                     "as out/sh010.####.exr or a .mp4/.mov file", param=param)


def exr_pattern(output: str, *, param: str = "output"):
    """The :class:`~daflow_vfx.frames.SequencePattern` of an EXR output such as ``vectors/sh010.####.exr``."""
    from daflow_vfx.frames import SequencePattern

    pattern = SequencePattern.parse(output)
    if pattern is None:
        raise UsageError(f"`{param}` {output!r} has no frame token; use a pattern such as "
                         "vectors/shot.####.exr", param=param)
    if not pattern.suffix.lower().endswith(".exr"):
        raise UsageError(f"`{param}` {output!r} must end in .exr; motion vectors are written as OpenEXR",
                         param=param)
    return pattern


# --------------------------------------------------------------------------------------------------
# sidecars


def sidecar_path(output: str, tool: str) -> str:
    """The JSON sidecar of ``tool`` (``retime``, ``stabilize``) beside ``output``: the output's base name
    + ``.<tool>.json``. ``out/sh010.####.exr`` and ``out/sh010.mp4`` -> ``out/sh010.<tool>.json``;
    a pattern with no name before the frame token (``out/####.exr``) -> ``out/<tool>.<tool>.json``."""
    from daflow_vfx.frames import SequencePattern

    pattern = SequencePattern.parse(output)
    base = pattern.prefix if pattern is not None else os.path.splitext(output)[0]
    folder, name = os.path.split(base)
    name = name.rstrip("._- ")  # the separator before the frame token is not part of the name
    return os.path.join(folder, f"{name or tool}.{tool}.json")


def write_text(path: str, text: str) -> None:
    """Write a text file atomically: a reader (or a farm retry) never sees half a sidecar."""
    from daflow_vfx.io._atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)


# --------------------------------------------------------------------------------------------------
# the writer thread and progress


def write_in_background(tasks: Iterable[Callable[[], None]], *, depth: int = 4) -> None:
    """Run ``tasks`` in order on one writer thread while the caller's iterator computes the next one.

    Returns when every task has run, raising the first error. When the iterator itself fails, the writer
    is closed quietly (the frames already queued are still written whole): a write error it then reports
    must not hide the error that stopped the job. When the job is stopped from outside
    (:class:`~daflow_vfx.errors.Interrupted`, Ctrl-C) the queued frames are dropped instead, so the
    process stops within one frame's write.
    """
    from daflow_vfx.io.threads import BackgroundWriter

    writer = BackgroundWriter(depth=depth)
    try:
        for task in tasks:
            writer.submit(task)
        writer.close()
    except (Interrupted, KeyboardInterrupt, SystemExit):
        writer.cancel()
        raise
    except BaseException:
        try:
            writer.close()
        except Exception as exc:  # the caller re-raises the first error
            log.debug("writer error after an earlier failure: %s", exc)
        raise


class ProgressCounter:
    """Thread-safe done/total counter: the writer thread and the main thread both tick it."""

    def __init__(self, total: int, callback: Progress | None) -> None:
        self.total, self.done, self.callback = total, 0, callback
        self._lock = threading.Lock()

    def tick(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            if self.callback is not None:
                self.callback(self.done, self.total)
