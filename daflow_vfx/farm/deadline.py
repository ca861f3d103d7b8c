"""Deadline job files for the CommandLine plugin, and submission through ``deadlinecommand``.

A Deadline job is two ``key=value`` text files: the job info (what Deadline schedules: plugin, name,
frames, chunk size, pool...) and the plugin info (what the CommandLine plugin runs for each task:
executable, arguments). Deadline replaces ``<STARTFRAME>`` and ``<ENDFRAME>`` in the arguments with the
first and last frame of each task's chunk, so the render command line reads
``render IN -o OUT --frames <STARTFRAME>-<ENDFRAME>``; `daflow-vfx render` prints ``Progress: NN%`` lines
that Deadline's progress handler understands.

Pure functions plus one subprocess call in :func:`submit`; nothing here needs Deadline installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daflow_vfx.errors import DaflowError, OutputError, UsageError
from daflow_vfx.farm.job import FarmJob, task_arguments

log = logging.getLogger(__name__)

__all__ = [
    "DeadlineJob",
    "SubmitResult",
    "find_deadlinecommand",
    "format_info",
    "job_info",
    "parse_info",
    "plugin_info",
    "quote_argument",
    "write_text_atomic",
    "submit",
    "write_job_files",
    "from_farm_job",
]

START, END = "<STARTFRAME>", "<ENDFRAME>"
FRAME_TOKENS = f"{START}-{END}"


@dataclass(frozen=True, kw_only=True)
class DeadlineJob:
    """One CommandLine-plugin job: every task runs ``executable arguments`` for its chunk of frames."""

    name: str
    frames: str  # Deadline frame list, e.g. "1001-1100"
    executable: str  # full path on the render nodes
    arguments: Sequence[str]  # one item per argument, <STARTFRAME>/<ENDFRAME> tokens kept as they are
    chunk_size: int = 10
    startup_directory: str | None = None
    batch_name: str | None = None
    comment: str | None = None
    department: str | None = None
    pool: str | None = None
    group: str | None = None
    priority: int = 50
    output_directory: str | None = None  # shown by Deadline Monitor's "browse output"
    output_filename: str | None = None  # with #### padding, as Deadline expects
    environment: Mapping[str, str] = field(default_factory=dict)
    dependencies: str | None = None  # job ids (comma-separated) this job waits for

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise UsageError("Deadline job name is empty; give the job a name")
        if not self.frames.strip():
            raise UsageError(f"Deadline job {self.name!r}: the frame list is empty; give frames like "
                             "1001-1100")
        if int(self.chunk_size) < 1:
            raise UsageError(f"Deadline job {self.name!r}: chunk size {self.chunk_size} must be 1 or more")
        if not self.executable.strip():
            raise UsageError(f"Deadline job {self.name!r}: no executable; set the path of daflow-vfx on the "
                             "render nodes")
        for text in (self.name, self.frames, self.executable, *self.arguments):
            if "\n" in text or "\r" in text:
                raise UsageError(f"Deadline job {self.name!r}: {text!r} holds a line break, which the "
                                 "key=value job files cannot carry")


def quote_argument(arg: str) -> str:
    """One argument for the CommandLine plugin's ``Arguments`` string (a Windows-style command line).

    Arguments with spaces are double-quoted; frame tokens and plain paths stay as they are, so the
    file stays readable in Deadline Monitor.
    """
    if arg == "":
        return '""'
    if re.search(r'[\s"]', arg):
        return '"' + arg.replace('"', '\\"') + '"'
    return arg


def job_info(job: DeadlineJob) -> dict[str, str]:
    """The job info file's keys, in the order written."""
    info = {
        "Plugin": "CommandLine",
        "Name": job.name,
        "Frames": job.frames,
        "ChunkSize": str(int(job.chunk_size)),
        "Priority": str(int(job.priority)),
    }
    optional = {
        "BatchName": job.batch_name,
        "Comment": job.comment,
        "Department": job.department,
        "Pool": job.pool,
        "Group": job.group,
        "OutputDirectory0": job.output_directory,
        "OutputFilename0": job.output_filename,
        "JobDependencies": job.dependencies,
    }
    info.update({k: v for k, v in optional.items() if v})
    for i, (key, value) in enumerate(sorted(job.environment.items())):
        info[f"EnvironmentKeyValue{i}"] = f"{key}={value}"
    return info


def plugin_info(job: DeadlineJob) -> dict[str, str]:
    """The CommandLine plugin info file's keys: the executable and its argument string."""
    info = {
        "Executable": job.executable,
        "Arguments": " ".join(quote_argument(a) for a in job.arguments),
        # no shell: the executable runs directly, so quoting means the same on Linux and Windows workers
        "Shell": "default",
        "ShellExecute": "False",
        "SingleFramesOnly": "False",
    }
    if job.startup_directory:
        info["StartupDirectory"] = job.startup_directory
    return info


def format_info(info: Mapping[str, str]) -> str:
    """``key=value`` lines, as Deadline reads them."""
    return "".join(f"{key}={value}\n" for key, value in info.items())


def parse_info(text: str) -> dict[str, str]:
    """Read a ``key=value`` job file back (blank lines and ``#`` comments skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value
    return out


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a hidden temp file beside ``path``, then rename it into place.

    Standard library only (not ``daflow_vfx.io``, which loads numpy): Nuke's Python imports this.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write it ({exc.strerror or exc}); check the folder's "
                          "permissions and free space") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_job_files(job: DeadlineJob, folder: str | os.PathLike, *,
                    stem: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.job_info.job`` and ``<stem>.plugin_info.job`` into ``folder`` (created), atomically.

    Returns (job info path, plugin info path).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the job folder ({exc.strerror or exc}); choose another "
                          "folder") from None
    base = re.sub(r"[^\w.-]+", "_", stem or job.name).strip("_") or "daflow"
    job_path = folder / f"{base}.job_info.job"
    plugin_path = folder / f"{base}.plugin_info.job"
    write_text_atomic(job_path, format_info(job_info(job)))
    try:
        write_text_atomic(plugin_path, format_info(plugin_info(job)))
    except OutputError:
        # a job info file without its plugin info is half a job: submitting it by hand would fail
        with contextlib.suppress(OSError):
            job_path.unlink()
        raise
    return job_path, plugin_path


@dataclass(frozen=True, kw_only=True)
class SubmitResult:
    submitted: bool  # False: deadlinecommand was not found, the files wait for a manual submit
    message: str  # one line for the artist
    job_id: str | None = None
    output: str = ""  # deadlinecommand's output, for logs


def find_deadlinecommand(explicit: str | None = None) -> str | None:
    """``explicit``, else ``deadlinecommand`` on PATH, else ``$DEADLINE_PATH/deadlinecommand``."""
    if explicit:
        return explicit if os.path.isfile(explicit) or shutil.which(explicit) else None
    found = shutil.which("deadlinecommand")
    if found:
        return found
    home = os.environ.get("DEADLINE_PATH")
    if home:
        for name in ("deadlinecommand", "deadlinecommand.exe"):
            candidate = os.path.join(home, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def submit(job_file: str | os.PathLike, plugin_file: str | os.PathLike, *, deadlinecommand: str | None = None,
           timeout: float = 120.0) -> SubmitResult:
    """Submit the two files with ``deadlinecommand JOB PLUGIN`` when Deadline's client is installed.

    Without it, nothing runs and the result's message says how to submit the files by hand.
    A failing ``deadlinecommand`` raises :class:`DaflowError` with its last output line.
    """
    job_file, plugin_file = os.fspath(job_file), os.fspath(plugin_file)
    command = find_deadlinecommand(deadlinecommand)
    if command is None:
        return SubmitResult(
            submitted=False,
            message=(f"deadlinecommand not found (not on PATH, no $DEADLINE_PATH); submit the job with "
                     f"`deadlinecommand {job_file} {plugin_file}` on a machine with the Deadline client"),
        )
    try:
        done = subprocess.run([command, job_file, plugin_file], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DaflowError(f"{command}: could not run it ({exc}); submit with `deadlinecommand {job_file} "
                          f"{plugin_file}` by hand") from None
    output = (done.stdout or "") + (done.stderr or "")
    match = re.search(r"^JobID=(\S+)", output, re.M)
    if done.returncode != 0 or re.search(r"^Result=Fail", output, re.M) or match is None:
        last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "no output")
        raise DaflowError(f"deadlinecommand failed (exit {done.returncode}): {last}; check the job files "
                          f"{job_file} and {plugin_file}")
    log.info("submitted Deadline job %s", match.group(1))
    return SubmitResult(submitted=True, job_id=match.group(1), output=output,
                        message=f"submitted Deadline job {match.group(1)}")


def from_farm_job(job: FarmJob) -> DeadlineJob:
    """The CommandLine job for a :class:`~daflow_vfx.farm.job.FarmJob`: Deadline cuts the range into
    ``ChunkSize`` tasks and hands each its ``<STARTFRAME>-<ENDFRAME>``."""
    folder, name = os.path.split(job.output)
    return DeadlineJob(
        name=job.job_name, frames=job.frames, chunk_size=job.task_size, executable=job.executable[0],
        arguments=task_arguments(job, FRAME_TOKENS), pool=job.pool, group=job.group, priority=job.priority,
        output_directory=folder or None, output_filename=name or None, dependencies=job.depends_on,
    )
