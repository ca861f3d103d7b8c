"""OpenCue jobs through PyOutline (``pip install 'daflow-vfx[opencue]'``): one Shell layer over the range.

PyOutline builds the outline and serialises it to OpenCue's XML job spec with its own serialiser; the
spec is what ``--dry-run`` writes and what a launch sends to Cuebot. The layer's command is the task's
command line with OpenCue's ``#FRAME_START#-#FRAME_END#`` tokens, which RQD replaces with each chunk's
first and last frame, and it is serialised without the pycuerun wrapper, so the render nodes need
daflow-vfx but not PyOutline.

PyOutline and PyCue are imported only when a job is built: ``import daflow_vfx`` never loads them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daflow_vfx.errors import DaflowError, UsageError
from daflow_vfx.farm.job import FarmJob, task_arguments

__all__ = ["FRAME_TOKENS", "build_outline", "cuebot_host", "job_spec", "launch", "write_spec"]

FRAME_TOKENS = "#FRAME_START#-#FRAME_END#"
INSTALL_HINT = "install the OpenCue extra: pip install 'daflow-vfx[opencue]'"


def _outline() -> Any:
    try:
        import outline
        import outline.cuerun
        import outline.modules.shell
    except ImportError as exc:
        raise UsageError(f"OpenCue jobs need PyOutline ({exc}); {INSTALL_HINT}", param="farm") from None
    return outline


def layer_command(job: FarmJob) -> str:
    """The Shell layer's command: one string, since OpenCue runs it through a shell; each word quoted."""
    words = [job.executable[0], *task_arguments(job, FRAME_TOKENS)]
    return " ".join(shlex.quote(str(w)) for w in words)


def build_outline(job: FarmJob, *, user: str | None = None) -> Any:
    """The PyOutline ``Outline``: one Shell layer named after the command, chunked as ``job.task_size``."""
    ol = _outline()
    layer_args: dict[str, Any] = {"command": layer_command(job), "chunk": job.task_size, "range": job.frames}
    if job.pool:
        layer_args["tags"] = job.pool
    if job.group:
        layer_args["service"] = job.group
    # OpenCue job names are path-safe words; the show/shot/user prefix is added by Cuebot
    name = "_".join(job.job_name.split())
    outline_job = ol.Outline(name, frame_range=job.frames, show=job.show or None, user=user)
    outline_job.add_layer(ol.modules.shell.Shell(job.command, **layer_args))
    return outline_job


@contextlib.contextmanager
def _scratch_session() -> Iterator[None]:
    """PyOutline's setup writes a session folder; ours goes to a temporary folder that is removed after,
    and the SHOT variable setup exports is put back (the layer command needs neither)."""
    ol = _outline()
    saved_dir = ol.config.get("outline", "session_dir")
    saved_shot = os.environ.get("SHOT")
    with tempfile.TemporaryDirectory(prefix="daflow-opencue-") as folder:
        ol.config.set("outline", "session_dir", folder)
        try:
            yield
        finally:
            ol.config.set("outline", "session_dir", saved_dir)
            if saved_shot is None:
                os.environ.pop("SHOT", None)
            else:
                os.environ["SHOT"] = saved_shot


def _launcher(job: FarmJob, *, pause: bool, user: str | None) -> Any:
    ol = _outline()
    return ol.cuerun.OutlineLauncher(build_outline(job, user=user), priority=int(job.priority), pause=pause)


def job_spec(job: FarmJob, *, user: str | None = None) -> str:
    """OpenCue's XML job spec for ``job``, written by PyOutline's own serialiser."""
    with _scratch_session():
        return _launcher(job, pause=False, user=user).serialize(use_pycuerun=False)


def write_spec(job: FarmJob, folder: str | os.PathLike, *, user: str | None = None) -> Path:
    """Write the XML spec into ``folder`` (created) as ``<job name>.opencue.xml``, atomically."""
    from daflow_vfx.farm.deadline import write_text_atomic
    from daflow_vfx.farm.job import job_file

    text = job_spec(job, user=user)  # built before the folder is made: a refused job leaves nothing
    path = job_file(folder, job.job_name, ".opencue.xml")
    write_text_atomic(path, text)
    return path


def cuebot_host(explicit: str | None = None) -> str:
    """The Cuebot to contact: ``explicit``, else ``$CUEBOT_HOSTS``' first, else PyCue's configured default."""
    if explicit and explicit.strip():
        return explicit.strip()
    env = os.environ.get("CUEBOT_HOSTS", "").split(",")[0].strip()
    if env:
        return env
    try:
        from opencue.cuebot import Cuebot
    except ImportError as exc:
        raise UsageError(f"OpenCue jobs need PyCue ({exc}); {INSTALL_HINT}", param="farm") from None
    facility = Cuebot.Config.get("cuebot.facility_default")
    hosts = Cuebot.Config.get("cuebot.facility", {}).get(facility) or ["localhost"]
    return hosts[0] if isinstance(hosts, list) else str(hosts)


def launch(job: FarmJob, *, cuebot: str | None = None, timeout: float = 10.0,
           user: str | None = None) -> list[str]:
    """Launch through PyOutline on ``cuebot`` (host or host:port); a :class:`DaflowError` naming the host
    when no Cuebot answers. ``job.depends_on`` names a job the new one waits for (added through PyCue)."""
    _outline()
    import opencue
    from opencue.cuebot import Cuebot

    host = cuebot_host(cuebot)
    Cuebot.setTimeout(int(timeout))  # PyCue hands this to gRPC as seconds
    try:
        Cuebot.setHosts([host])  # connects and asks Cuebot for its stats: fails here when none answers
    except opencue.exception.CueException:
        raise DaflowError(f"no Cuebot answered at {host}; start Cuebot, or name it with `cuebot` or "
                          "$CUEBOT_HOSTS") from None
    try:
        with _scratch_session():
            # paused while the dependency is added, so no frame starts before it exists
            jobs = _launcher(job, pause=bool(job.depends_on), user=user).launch(use_pycuerun=False)
        if job.depends_on:
            other = opencue.api.findJob(job.depends_on)
            for launched in jobs:
                launched.createDependencyOnJob(other)
                launched.resume()
    except opencue.exception.CueException as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise DaflowError(f"Cuebot at {host} refused the job: {message}") from None
    return [j.name() for j in jobs]
