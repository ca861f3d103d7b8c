"""`daflow-vfx submit`: one :class:`~daflow_vfx.farm.job.FarmJob` to Deadline, OpenCue or Flamenco.

Everything that can be refused (the farm's name, the job, the farm's client) is checked before a file is
written or a farm is contacted, so a refused submit leaves nothing behind. A dry run writes the farm's own
job description (Deadline's two job files, OpenCue's XML spec, Flamenco's job JSON) and contacts nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from daflow_vfx.errors import DaflowError, check_choice
from daflow_vfx.farm.job import FARMS, FarmJob

__all__ = ["SubmitOptions", "SubmitReport", "default_job_dir", "submit"]


@dataclass(frozen=True, kw_only=True)
class SubmitOptions:
    """Where and how to submit, apart from the job itself."""

    farm: str  # deadline | opencue | flamenco
    dry_run: bool = False
    job_dir: str | None = None  # job files (Deadline always, others on a dry run); None: default_job_dir
    deadlinecommand: str | None = None  # path of Deadline's client; None: PATH, then $DEADLINE_PATH
    cuebot: str | None = None  # Cuebot host[:port]; None: $CUEBOT_HOSTS, then PyCue's configuration
    manager: str | None = None  # Flamenco Manager URL; None: $FLAMENCO_MANAGER, then localhost:8080
    timeout: float = 30.0  # seconds to wait for a farm's answer


@dataclass(frozen=True, kw_only=True)
class SubmitReport:
    farm: str
    submitted: bool  # False on a dry run
    job_id: str | None  # the farm's id (OpenCue: the job's name)
    files: tuple[Path, ...]  # job descriptions written
    message: str  # one line for the user


def default_job_dir(job: FarmJob) -> str:
    """``<output folder>/farm``: next to what the job writes, where a wrangler looks for it."""
    return os.path.join(os.path.dirname(os.path.abspath(os.path.expanduser(job.output))), "farm")


def submit(job: FarmJob, options: SubmitOptions) -> SubmitReport:
    """Submit ``job`` (or, on a dry run, write its job description) as ``options`` say."""
    farm = check_choice(options.farm, FARMS, "farm")
    folder = options.job_dir or default_job_dir(job)
    if farm == "deadline":
        return _deadline(job, options, folder)
    if farm == "opencue":
        return _opencue(job, options, folder)
    return _flamenco(job, options, folder)


def _deadline(job: FarmJob, options: SubmitOptions, folder: str) -> SubmitReport:
    from daflow_vfx.farm import deadline

    description = deadline.from_farm_job(job)
    command = None
    if not options.dry_run:
        command = deadline.find_deadlinecommand(options.deadlinecommand)
        if command is None:
            where = options.deadlinecommand or "not on PATH, no $DEADLINE_PATH"
            raise DaflowError(f"deadlinecommand not found ({where}); install Deadline's client, pass "
                              "`deadlinecommand`, or write the job files with `dry_run`",
                              param="deadlinecommand")
    files = deadline.write_job_files(description, folder)
    if command is None:
        return SubmitReport(farm="deadline", submitted=False, job_id=None, files=files,
                            message=f"Dry run: wrote Deadline job files {files[0]} and {files[1]}")
    result = deadline.submit(*files, deadlinecommand=command, timeout=max(options.timeout, 60.0))
    return SubmitReport(farm="deadline", submitted=True, job_id=result.job_id, files=files,
                        message=f"Submitted Deadline job {result.job_id} (job files in {folder})")


def _opencue(job: FarmJob, options: SubmitOptions, folder: str) -> SubmitReport:
    from daflow_vfx.farm import opencue

    if options.dry_run:
        path = opencue.write_spec(job, folder)
        return SubmitReport(farm="opencue", submitted=False, job_id=None, files=(path,),
                            message=f"Dry run: wrote the OpenCue job spec {path}")
    names = opencue.launch(job, cuebot=options.cuebot, timeout=options.timeout)
    return SubmitReport(farm="opencue", submitted=True, job_id=names[0] if names else None, files=(),
                        message=f"Launched OpenCue job {', '.join(names)}")


def _flamenco(job: FarmJob, options: SubmitOptions, folder: str) -> SubmitReport:
    from daflow_vfx.farm import flamenco

    if options.dry_run:
        path = flamenco.write_job_json(job, folder)
        return SubmitReport(farm="flamenco", submitted=False, job_id=None, files=(path,),
                            message=f"Dry run: wrote the Flamenco job {path}")
    job_id = flamenco.post_job(job, options.manager, timeout=options.timeout)
    return SubmitReport(farm="flamenco", submitted=True, job_id=job_id, files=(),
                        message=f"Submitted Flamenco job {job_id}")
