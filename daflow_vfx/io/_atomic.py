"""Atomic file writes: write a hidden temp file in the target folder, then rename it into place.

A render-farm task can be killed at any moment; ``os.replace`` within one folder is atomic, so an
output either exists complete or not at all, and ``--skip-existing`` never trusts a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from daflow_vfx.errors import OutputError

__all__ = ["atomic_path", "check_writable_folder", "prepare_output_folder", "temp_path_for"]


def temp_path_for(path: str | os.PathLike) -> str:
    """A hidden temp name next to ``path`` that keeps its extension (writers pick formats by it)."""
    target = os.fspath(path)
    folder, name = os.path.split(target)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{ext}")


def check_writable_folder(path: str | os.PathLike) -> str:
    """Return the folder that will hold ``path``; :class:`OutputError` when it cannot take the file."""
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise OutputError(f"{target}: output folder {folder} does not exist; create it or choose another "
                          "output")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: output folder {folder} is not writable; fix its permissions or "
                          "choose another output")
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temp path to write; on success it replaces ``path``, on any error it is removed.

    Raises :class:`OutputError` when the folder is missing or not writable, or the rename fails.
    """
    target = os.fspath(path)
    check_writable_folder(target)
    tmp = temp_path_for(target)
    try:
        yield tmp
        if not os.path.isfile(tmp):
            raise OutputError(f"{target}: the writer produced no file; check free disk space and permissions")
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"{target}: cannot move the finished file into place ({exc.strerror}); "
                              "check permissions on the output folder") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def prepare_output_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` if needed and prove a file can be created there (OutputError if not).

    A real probe file rather than ``os.access``: root ignores permission bits, and network file
    systems answer ``access`` unreliably.
    """
    path = Path(folder or ".")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the output folder ({exc.strerror or exc}); "
                          "choose a writable location") from None
    if not path.is_dir():
        raise OutputError(f"{path}: exists but is not a folder; choose another output location")
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".daflow-write-test-", dir=path)
    except OSError as exc:
        raise OutputError(f"{path}: output folder is not writable ({exc.strerror or exc}); "
                          "fix its permissions or choose another output") from None
    os.close(fd)
    os.unlink(probe)
