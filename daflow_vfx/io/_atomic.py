"""Atomic file writes: write a hidden temp file in the target folder, then rename it into place.

A render-farm task can be killed at any moment; ``os.replace`` within one folder is atomic, so an
output either exists complete or not at all, and ``--skip-existing`` never trusts a half-written file.

A task killed with SIGKILL cannot remove its temp file, so the temp name says who wrote it:
``.<stem>.tmp-<pid>-<host tag><random><ext>``. The next run over the same outputs removes temps whose
writer is gone (:func:`remove_stale_temps`): on this host when that process no longer exists, from
another host (a shared folder) when the file has not been written to for :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from daflow_vfx.errors import OutputError

__all__ = [
    "STALE_AFTER_S",
    "atomic_path",
    "check_output_folder",
    "check_writable_folder",
    "prepare_output_folder",
    "remove_stale_temps",
    "temp_path_for",
    "write_failure",
]

# Whether another host's writer is alive cannot be asked, only how long its temp has not grown. A video
# encoder may write nothing for a whole look-ahead of slow frames (tens of minutes on a CPU at 4K), so
# the wait is long: litter for a few hours is better than deleting the file of a run still writing.
STALE_AFTER_S = 6 * 60 * 60

# .<stem>.tmp-<pid>-<8 hex host tag><8 hex random><ext>; older temps carry only the 8 random digits.
_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.tmp-(?P<pid>\d+)-(?P<token>[0-9a-f]{16}|[0-9a-f]{8})"
                        r"(?P<ext>\.[^.]*)?$")
_PROBE_PREFIX = ".daflow-write-test-"


def _host_tag() -> str:
    # A hash, not the name: host names may hold characters a file name should not.
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def temp_path_for(path: str | os.PathLike) -> str:
    """A hidden temp name next to ``path`` that keeps its extension (writers pick formats by it)."""
    target = os.fspath(path)
    folder, name = os.path.split(target)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.tmp-{os.getpid()}-{_host_tag()}{secrets.token_hex(4)}{ext}")


def write_failure(target: str, exc: OSError) -> OutputError:
    """The :class:`OutputError` for an operating-system error while writing ``target``: one line that
    says what to do, a full disk above all (farm logs show only the last line)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "the disk is full; free some space (or raise the quota) and run the task again"
    elif exc.errno == errno.EFBIG:
        hint = "the file is larger than this file system or process allows; write it somewhere else"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "the output location is not writable; fix its permissions or choose another output"
    else:
        hint = "check free disk space and permissions on the output folder"
    return OutputError(f"{target}: cannot write the file ({reason}); {hint}")


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

    Raises :class:`OutputError` when the folder is missing or not writable, a write fails with an
    operating-system error (a full disk), or the rename fails.
    """
    target = os.fspath(path)
    check_writable_folder(target)
    tmp = temp_path_for(target)
    try:
        try:
            yield tmp
        except OSError as exc:
            raise write_failure(target, exc) from None
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


# --------------------------------------------------------------------------------------------------
# output folders


def _probe(folder: Path) -> None:
    """Prove a file can be created in ``folder``: a real probe file rather than ``os.access``, because
    root ignores permission bits and network file systems answer ``access`` unreliably."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=folder)
    except OSError as exc:
        raise OutputError(f"{folder}: output folder is not writable ({exc.strerror or exc}); "
                          "fix its permissions or choose another output") from None
    try:
        os.close(fd)
    finally:
        os.unlink(probe)


def check_output_folder(folder: str | os.PathLike) -> None:
    """:class:`OutputError` unless ``folder`` exists and is writable, or could be created: the nearest
    part of it that exists must be a writable folder. Creates nothing (a probe file comes and goes), so a
    job can check every output before it knows it will run."""
    path = Path(folder or ".").absolute()
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            raise OutputError(f"{path}: {existing} is a broken link; fix it or choose another output")
        existing = existing.parent
    if not existing.is_dir():
        where = ("exists but is not a folder" if existing == path
                 else f"cannot be created: {existing} is a file")
        raise OutputError(f"{path}: {where}; choose another output location")
    _probe(existing)


def prepare_output_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` if needed and prove a file can be created there (OutputError if not)."""
    path = Path(folder or ".")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the output folder ({exc.strerror or exc}); "
                          "choose a writable location") from None
    if not path.is_dir():
        raise OutputError(f"{path}: exists but is not a folder; choose another output location")
    _probe(path)


# --------------------------------------------------------------------------------------------------
# temps left by killed tasks


def _process_gone(pid: int) -> bool:
    """True when no live process has ``pid`` on this host (a zombie counts as gone: it writes nothing)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's live process
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _is_stale(entry: os.DirEntry, pid: int, token: str, now: float) -> bool:
    if len(token) == 16 and token[:8] == _host_tag():
        return _process_gone(pid)
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def remove_stale_temps(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Remove the temp files that killed writers left for ``paths`` (see the module docstring); returns
    the removed paths. Temps of other files, and of writers still running, are left alone."""
    wanted: dict[str, set[str]] = {}
    for path in paths:
        folder, name = os.path.split(os.fspath(path))
        wanted.setdefault(folder or ".", set()).add(name)
    removed: list[str] = []
    now = time.time()
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # no folder yet: no temps
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if match is None or match["stem"] + (match["ext"] or "") not in names:
                continue
            if not _is_stale(entry, int(match["pid"]), match["token"], now):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
                removed.append(entry.path)
    return removed
