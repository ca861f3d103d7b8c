"""Output safety: the one check every job runs on what it is about to write, before it writes anything.

:func:`check_outputs` refuses, as a usage error naming the parameter:

- an output that is one of the job's input files, however it is spelled: the same path, another spelling
  of it (``./``, ``..``, another frame token, letter case on a case-insensitive disk), a symbolic or hard
  link, a chunk of the plate's own frames, the video itself. Files are compared by identity (device and
  inode), never by name, so every way two paths can name one file is caught;
- two kinds of output that name the same file (frames and STMaps, a sidecar and a Nuke snippet);
- an output that is a folder, or whose folder cannot be created or written.

It creates nothing: a job checks its outputs, then everything else that can fail (model, weights,
device), and only then calls :meth:`OutputPlan.prepare`, which creates the folders and removes the temp
files that killed runs left for these outputs. A task that fails early therefore leaves nothing behind,
not even an empty folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from daflow_vfx.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["OutputPlan", "check_outputs", "input_files"]

FileId = tuple[int, int]  # (st_dev, st_ino): what a path names, whatever its spelling


def _file_id(path: str) -> FileId | None:
    try:
        st = os.stat(path)  # follows links: a link to an input is that input
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def input_files(*paths: str | None) -> list[str]:
    """The files that optional inputs such as ``vectors`` patterns, curves or weights name on disk:
    every existing frame of a pattern, or the file itself. Missing ones are simply not inputs."""
    from daflow_vfx.frames import SequencePattern

    files: list[str] = []
    for text in paths:
        if not text:
            continue
        pattern = SequencePattern.parse(text) if not os.path.exists(text) else None
        files.extend([pattern.path(f) for f in pattern.scan()] if pattern is not None else [text])
    return files


@dataclass(frozen=True)
class OutputPlan:
    """Outputs that passed :func:`check_outputs`; :meth:`prepare` makes them ready to write."""

    paths: tuple[str, ...]
    folders: tuple[str, ...]

    def prepare(self) -> None:
        """Create the output folders (each proven writable) and remove the temp files that killed runs
        left for these outputs. Call it once the job is known to run: after the model has loaded."""
        from daflow_vfx.io._atomic import prepare_output_folder, remove_stale_temps

        for folder in self.folders:
            prepare_output_folder(folder)
        removed = remove_stale_temps(self.paths)
        if removed:
            log.info("removed %d temp file(s) left by a killed run: %s", len(removed), ", ".join(removed[:3]))


class _Canonical:
    """Where a path will land, spelled one way: the real path of its folder plus its name, case-folded
    where the platform folds case. Folders are resolved once each (a sequence has thousands of frames)."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        folder, name = os.path.split(os.path.abspath(path))
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder)
        return os.path.normcase(os.path.join(real, name))


def check_outputs(outputs: Mapping[str, Iterable[str]], inputs: Iterable[str]) -> OutputPlan:
    """Check every path a job will write against every file it reads, and against each other.

    ``outputs``: parameter name (as the job's messages name it: ``output``, ``stmap``, ``nk``, ...) -> the
    paths written under it, every frame of a sequence. ``inputs``: every file the job reads (the plate's
    :meth:`~daflow_vfx.io.plate.Plate.source_files`, vectors, curves, weights). Raises
    :class:`UsageError` naming the parameter, or :class:`~daflow_vfx.errors.OutputError` for a folder
    that cannot be made; creates nothing.
    """
    from daflow_vfx.io._atomic import check_output_folder

    read: dict[FileId, str] = {}
    for path in inputs:
        ident = _file_id(path)
        if ident is not None:
            read.setdefault(ident, path)
    canonical = _Canonical()
    claimed: dict[str, tuple[str, str]] = {}  # canonical path -> (parameter, path as given)
    everything: list[str] = []
    for param, paths in outputs.items():
        clashes: list[tuple[str, str]] = []
        for path in dict.fromkeys(paths):  # in order, each once
            if os.path.isdir(path):
                raise UsageError(f"`{param}` {path} is a folder; name a file (or a pattern with a frame "
                                 "token) to write", param=param)
            ident = _file_id(path)
            if ident is not None and ident in read:
                clashes.append((path, read[ident]))
            key = canonical(path)
            other = claimed.setdefault(key, (param, path))
            if other[0] != param:
                raise UsageError(f"`{param}` and `{other[0]}` both write {path}; give them different names",
                                 param=(param, other[0]))
            everything.append(path)
        if clashes:
            raise _overwrite_error(param, clashes)
    folders = sorted({os.path.dirname(p) or "." for p in everything})
    for folder in folders:
        check_output_folder(folder)
    return OutputPlan(paths=tuple(everything), folders=tuple(folders))


def _overwrite_error(param: str, clashes: list[tuple[str, str]]) -> UsageError:
    out, source = clashes[0]
    spelled = "" if os.path.abspath(out) == os.path.abspath(source) else f" (as {out})"
    more = f" and {len(clashes) - 1} more input file(s)" if len(clashes) > 1 else ""
    return UsageError(f"`{param}` would overwrite the input {source}{spelled}{more}; nothing was written, "
                      "choose an output that is not an input", param=param)
