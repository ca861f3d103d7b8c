"""The bridge between Blender and daflow_vfx: finding the package, the running background jobs, polling.

Nothing here imports torch. The pure logic (command lines, the process, progress parsing) lives in
``daflow_vfx.hosts.blender``; this module only keeps the jobs of the running Blender session and hands
their results to the operators' finish callbacks.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import bpy

log = logging.getLogger(__name__)

# the add-on's module name (bl_ext.<repo>.daflow_vfx when installed as an extension)
PACKAGE = __package__ or "daflow_vfx_blender"

_SNIPPET = ("import os, daflow_vfx; "
            "print(os.path.dirname(os.path.dirname(os.path.abspath(daflow_vfx.__file__))))")


def preferences():
    addon = bpy.context.preferences.addons.get(PACKAGE)
    return None if addon is None else addon.preferences


def _external_root(python: str) -> str | None:
    """The folder holding the ``daflow_vfx`` package of an external interpreter or venv."""
    hosts = _try_import()
    words: list[str]
    if hosts is not None:
        words = hosts.python_command(python)[:1]
    else:
        path = os.path.expanduser(python)
        if os.path.isdir(path):
            options = (os.path.join(path, "bin", "python"), os.path.join(path, "bin", "python3"),
                       os.path.join(path, "Scripts", "python.exe"))
            path = next((p for p in options if os.path.isfile(p)), path)
        words = [path]
    try:
        done = subprocess.run([*words, "-c", _SNIPPET], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("daflow: cannot run %s: %s", words[0], exc)
        return None
    lines = done.stdout.strip().splitlines()
    return lines[-1] if done.returncode == 0 and lines else None


def _try_import():
    try:
        return importlib.import_module("daflow_vfx.hosts.blender")
    except ImportError:
        return None


def hosts():
    """``daflow_vfx.hosts.blender``: from this Python (bundled wheels, or bpy in a venv), else from the
    external Python of the preferences (its package folder is appended to ``sys.path``, after Blender's
    own modules, so Blender's numpy keeps winning). RuntimeError when neither has it."""
    module = _try_import()
    if module is not None:
        return module
    prefs = preferences()
    python = getattr(prefs, "python", "") if prefs is not None else ""
    if python.strip():
        root = _external_root(python)
        if root and root not in sys.path:
            sys.path.append(root)
        module = _try_import()
        if module is not None:
            return module
    raise RuntimeError("daflow_vfx is not importable: set the external Python (interpreter or venv) in the "
                       "DAFlow add-on preferences, or build the extension with bundled wheels")


def command_words() -> list[str]:
    """What runs `daflow-vfx`: the Python preference, the executable preference, this Python when it has
    daflow_vfx and torch (bundled wheels, bpy in a venv), else ``$DAFLOW_VFX_EXECUTABLE`` / PATH."""
    module = hosts()
    prefs = preferences()
    python = getattr(prefs, "python", "") if prefs is not None else ""
    executable = getattr(prefs, "executable", "") if prefs is not None else ""
    if not python.strip() and not executable.strip() and not os.environ.get("DAFLOW_VFX_EXECUTABLE"):
        if all(importlib.util.find_spec(name) is not None for name in ("torch", "daflow_vfx")):
            python = sys.executable
    return module.resolve_command(python=python, executable=executable)


# --------------------------------------------------------------------------------------------------
# jobs


@dataclass(kw_only=True)
class Job:
    name: str
    scene: str
    job: object  # daflow_vfx.hosts.blender.BackgroundJob
    on_finish: Callable[[Job], str | None] | None = None
    messages: list[tuple[str, str]] = field(default_factory=list)  # (level, text) for the UI
    finished: bool = False
    started: float = field(default_factory=time.monotonic)


JOBS: list[Job] = []
TIMER_INTERVAL = 0.2


def _settings(job: Job):
    scene = bpy.data.scenes.get(job.scene)
    return None if scene is None else scene.daflow


def start(name: str, scene, argv: list[str], on_finish: Callable[[Job], str | None] | None = None) -> Job:
    module = hosts()
    background = module.BackgroundJob(argv=list(argv)).start()
    job = Job(name=name, scene=scene.name, job=background, on_finish=on_finish)
    JOBS.append(job)
    settings = scene.daflow
    settings.running = True
    settings.progress = 0
    settings.status = f"{name}: started"
    settings.last_error = ""
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TIMER_INTERVAL)
    return job


def poll() -> bool:
    """Advance every job once; True while any is still running."""
    for job in list(JOBS):
        if job.finished:
            continue
        result = job.job.poll()
        settings = _settings(job)
        if settings is not None:
            settings.progress = job.job.progress
        if result is None:
            if settings is not None:
                settings.status = f"{job.name}: {job.job.progress}%"
            continue
        job.finished = True
        JOBS.remove(job)
        if result.cancelled:
            job.messages.append(("WARNING", f"{job.name}: cancelled"))
        elif result.error or result.returncode != 0:
            job.messages.append(("ERROR", f"{job.name}: {result.error or f'exit code {result.returncode}'}"))
        elif job.on_finish is not None:
            try:
                summary = job.on_finish(job)  # a line for the status bar, or None
            except Exception as exc:  # noqa: BLE001 - a timer must never raise; the user sees the error
                job.messages.append(("ERROR", f"{job.name}: {exc}"))
            else:
                job.messages.append(("INFO", f"{job.name}: {summary or 'done'}"))
        else:
            job.messages.append(("INFO", f"{job.name}: done"))
        if settings is not None:
            level, text = job.messages[-1]
            settings.status = text
            settings.last_error = text if level == "ERROR" else ""
            settings.running = any(j.scene == job.scene for j in JOBS)
        for level, text in job.messages:
            (log.error if level == "ERROR" else log.info)("%s", text)
    _redraw()
    return any(not j.finished for j in JOBS)


def _timer() -> float | None:
    return TIMER_INTERVAL if poll() else None


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in {"CLIP_EDITOR", "SEQUENCE_EDITOR", "NODE_EDITOR"}:
                area.tag_redraw()


def cancel_all(scene=None) -> int:
    count = 0
    for job in list(JOBS):
        if scene is None or job.scene == scene.name:
            job.job.cancel()
            count += 1
    poll()
    return count


def wait(timeout: float = 300.0) -> list[Job]:
    """Poll until every job ended (scripts and tests; the UI uses the timer instead)."""
    watched = list(JOBS)
    deadline = time.monotonic() + timeout
    while poll():
        if time.monotonic() > deadline:
            cancel_all()
            raise TimeoutError(f"daflow jobs still running after {timeout:.0f} s; cancelled")
        time.sleep(0.05)
    return watched


def shutdown() -> None:
    """unregister(): stop the processes and the timer."""
    for job in list(JOBS):
        job.job.cancel(timeout=2.0)
    JOBS.clear()
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
