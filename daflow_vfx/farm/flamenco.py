"""Flamenco jobs: the ``daflow-vfx`` custom job type (``daflow-vfx.js``) and jobs posted to the Manager.

Flamenco Manager compiles a job into tasks with the job type's JavaScript ``compileJob``; ours (shipped
beside this module) cuts the frame range into chunks and gives each task one ``exec`` command running
daflow-vfx. :func:`submitted_job` is the ``SubmittedJob`` document of the Manager's REST API
(``POST /api/v3/jobs``): the job type's name plus our settings. Standard library only.
"""

from __future__ import annotations

import json
import os
import platform
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

from daflow_vfx.errors import DaflowError, UsageError
from daflow_vfx.farm.job import RESUMABLE, FarmJob, job_file

__all__ = ["JOB_TYPE", "SCRIPT_NAME", "install_job_type", "job_type_script", "post_job", "submitted_job",
           "write_job_json"]

JOB_TYPE = "daflow-vfx"  # the Manager names a job type after its script file
SCRIPT_NAME = f"{JOB_TYPE}.js"
DEFAULT_MANAGER = "http://localhost:8080"


def job_type_script() -> str:
    """The job type's JavaScript, as shipped in the package."""
    return resources.files("daflow_vfx.farm").joinpath(SCRIPT_NAME).read_text(encoding="utf-8")


def install_job_type(folder: str | os.PathLike) -> Path:
    """Write ``daflow-vfx.js`` into ``folder`` (the Manager's ``scripts/``), atomically."""
    from daflow_vfx.farm.deadline import write_text_atomic

    path = job_file(folder, JOB_TYPE, ".js")
    write_text_atomic(path, job_type_script())
    return path


def submitted_job(job: FarmJob, *, submitter_platform: str | None = None) -> dict[str, Any]:
    """The ``SubmittedJob`` JSON for ``job``: settings as the job type declares them."""
    if job.depends_on:
        raise UsageError("Flamenco has no job dependencies; submit the job once the previous one finished",
                         param="depends_on")
    document: dict[str, Any] = {
        "name": job.job_name,
        "type": JOB_TYPE,
        "priority": int(job.priority),
        # lets the Manager map two-way path variables from the submitter's platform
        "submitter_platform": submitter_platform or platform.system().lower(),
        "settings": {
            "command": job.command,
            "input": job.input,
            "output": job.output,
            "frames": job.frames,
            "chunk_size": int(job.task_size),
            "options": json.dumps(list(job.options)),
            "executable": json.dumps(list(job.executable)),
            "skip_existing": job.command in RESUMABLE,
        },
        "metadata": {"daflow.command": job.command},
    }
    if job.pool:
        document["worker_tag"] = job.pool
    return document


def write_job_json(job: FarmJob, folder: str | os.PathLike) -> Path:
    """Write the ``SubmittedJob`` JSON into ``folder`` as ``<job name>.flamenco.json``, atomically."""
    from daflow_vfx.farm.deadline import write_text_atomic

    text = json.dumps(submitted_job(job), indent=2) + "\n"
    path = job_file(folder, job.job_name, ".flamenco.json")
    write_text_atomic(path, text)
    return path


def post_job(job: FarmJob, manager: str | None = None, *, timeout: float = 30.0) -> str:
    """``POST /api/v3/jobs`` to the Manager; returns the new job's id. A Manager that does not answer, or
    refuses the job, is a :class:`DaflowError` naming its address."""
    base = (manager or os.environ.get("FLAMENCO_MANAGER") or DEFAULT_MANAGER).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"`manager` {base!r} must be a URL such as {DEFAULT_MANAGER}", param="manager")
    body = json.dumps(submitted_job(job)).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    request = urllib.request.Request(f"{base}/api/v3/jobs", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.loads(response.read().decode("utf-8") or "{}")
    except urllib.error.HTTPError as exc:
        raise DaflowError(f"Flamenco Manager at {base} refused the job (HTTP {exc.code}): {_reason(exc)}; "
                          f"check that its scripts/ folder has the {JOB_TYPE} job type (daflow-vfx flamenco "
                          "install-job-type)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DaflowError(f"Flamenco Manager at {base} is not answering ({reason}); start it, or name it "
                          "with `manager` or $FLAMENCO_MANAGER") from None
    except json.JSONDecodeError:
        raise DaflowError(f"Flamenco Manager at {base} answered with something that is not JSON; check the "
                          "address") from None
    job_id = reply.get("id") if isinstance(reply, dict) else None
    if not job_id:
        raise DaflowError(f"Flamenco Manager at {base} accepted the job but gave no job id")
    return str(job_id)


def _reason(error: urllib.error.HTTPError) -> str:
    """The Manager's ``Error.message`` when the body holds one, else the HTTP reason."""
    try:
        message = json.loads(error.read().decode("utf-8")).get("message")
    except (ValueError, AttributeError, OSError):
        message = None
    return " ".join(str(message or error.reason).split())
