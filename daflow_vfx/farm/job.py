"""The one farm job description that Deadline, OpenCue and Flamenco jobs are all made from.

A :class:`FarmJob` is a `daflow-vfx` command (render, retime or stabilize) with its own options, a
contiguous frame range cut into chunks, and the scheduling settings every farm has in some form (name,
priority, pool/group/show, a job to wait for). Each farm module turns it into that farm's own job
description; :func:`task_arguments` is the command line every task runs, with the farm's frame tokens
in place of the chunk.

Standard library only: Nuke's and Blender's Python import this module.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daflow_vfx.errors import OutputError, UsageError, check_choice

__all__ = ["COMMANDS", "FARMS", "FarmJob", "chunks", "contiguous_range", "job_file", "task_arguments"]

FARMS = ("deadline", "opencue", "flamenco")
COMMANDS = ("render", "retime", "stabilize")
# Commands whose output a re-queued task can resume frame by frame; the others rewrite their chunk whole
# (every file they write is atomic, so a killed task never leaves a torn frame either way).
RESUMABLE = ("render",)
# Stabilize smooths the camera path over every frame it is given, so chunks would each get their own
# path and the cut between them would jump: it runs as one task over the whole range.
WHOLE_RANGE = ("stabilize",)
_TASK_FLAGS = ("--frames", "--skip-existing")  # set per task by task_arguments, never by the job


def contiguous_range(spec: str, param: str = "frames") -> tuple[int, int]:
    """``"1001-1100"`` -> ``(1001, 1100)``; a list or stepped spec is refused (farm chunks are ranges)."""
    from daflow_vfx.frames import format_frame_spec, parse_frames_option

    frames = parse_frames_option(spec, param)
    if frames != list(range(frames[0], frames[-1] + 1)):
        raise UsageError(f"`{param}` {format_frame_spec(frames)}: a farm job needs a contiguous range such "
                         f"as {frames[0]}-{frames[-1]}", param=param)
    return frames[0], frames[-1]


@dataclass(frozen=True, kw_only=True)
class FarmJob:
    """One `daflow-vfx` command to run on a farm, chunk by chunk."""

    command: str  # render | retime | stabilize
    input: str  # the plate, as the render nodes see it
    output: str  # the output pattern
    options: Sequence[str] = ()  # the command's other options, one item per word; no --frames
    frames: str  # contiguous range, e.g. "1001-1100" (retime: output frames)
    chunk_size: int = 10
    name: str = ""  # "" -> "daflow <command> <output file name>"
    executable: Sequence[str] = ("daflow-vfx",)  # words that run daflow-vfx on the render nodes
    priority: int = 50  # 0-100, as Deadline and Flamenco count; OpenCue gets the same number
    pool: str | None = None  # Deadline pool, OpenCue layer tags, Flamenco worker tag
    group: str | None = None  # Deadline group; OpenCue service
    show: str | None = None  # OpenCue show
    depends_on: str | None = None  # a previous job's id (Deadline) or name (OpenCue)

    def __post_init__(self) -> None:
        check_choice(self.command, COMMANDS, "command")
        if int(self.chunk_size) < 1:
            raise UsageError(f"`chunk_size` {self.chunk_size} must be 1 or more frames per task",
                             param="chunk_size")
        if not 0 <= int(self.priority) <= 100:
            raise UsageError(f"`priority` {self.priority} must be between 0 and 100", param="priority")
        if not self.input.strip():
            raise UsageError("no input plate for the farm job", param="input")
        if not self.output.strip():
            raise UsageError("no output for the farm job", param="output")
        if not self.executable or not str(self.executable[0]).strip():
            raise UsageError("`executable`: no daflow-vfx command for the render nodes", param="executable")
        if any(word in _TASK_FLAGS or word.startswith("--frames=") for word in self.options):
            raise UsageError("the command's options hold a frame range or skip-existing, which each task "
                             "sets for its own chunk; give the range as `frames`", param="frames")
        for word in (self.name, self.input, self.output, *self.options, *self.executable):
            if "\n" in word or "\r" in word:
                raise UsageError(f"{word!r} holds a line break, which no farm's job file can carry")
        contiguous_range(self.frames)
        from daflow_vfx.frames import SequencePattern

        if self.command not in WHOLE_RANGE and SequencePattern.parse(self.output) is None:
            # each chunk writes its own frames: a video (or one file) cannot be split across tasks
            raise UsageError(f"`output` {self.output!r} has no frame token; farm chunks write image "
                             "sequences such as out/sh010.####.exr", param="output")

    @property
    def first(self) -> int:
        return contiguous_range(self.frames)[0]

    @property
    def last(self) -> int:
        return contiguous_range(self.frames)[1]

    @property
    def task_size(self) -> int:
        """Frames per task: the chunk size, or the whole range for a command that cannot be split."""
        return self.last - self.first + 1 if self.command in WHOLE_RANGE else int(self.chunk_size)

    @property
    def job_name(self) -> str:
        """The name given, else ``daflow <command> <output's base name>`` (no frame token, no extension)."""
        base = re.split(r"[#%@]|\$F", os.path.basename(self.output))[0].rstrip("._-")
        return self.name.strip() or f"daflow {self.command} {base or 'job'}"


def task_arguments(job: FarmJob, frames_token: str) -> list[str]:
    """What every task runs after the executable's first word: ``[*wrapper words, command, INPUT, -o,
    OUTPUT, *options, --frames, TOKEN]``, plus ``--skip-existing`` where a re-queued task can resume."""
    args = [*job.executable[1:], job.command, job.input, "-o", job.output, *job.options,
            "--frames", frames_token]
    if job.command in RESUMABLE:
        args.append("--skip-existing")
    return args


def chunks(job: FarmJob) -> list[tuple[int, int]]:
    """The tasks' (first, last) frames, in order, as every farm cuts the range."""
    size = job.task_size
    count = math.ceil((job.last - job.first + 1) / size)
    return [(job.first + i * size, min(job.last, job.first + (i + 1) * size - 1)) for i in range(count)]


def job_file(folder: str | os.PathLike, name: str, suffix: str) -> Path:
    """``folder/<name made file-safe><suffix>``; the folder is created (:class:`OutputError` if it cannot)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the job folder ({exc.strerror or exc}); choose another "
                          "`job_dir`", param="job_dir") from None
    return folder / ((re.sub(r"[^\w.-]+", "_", name).strip("_") or "daflow") + suffix)
