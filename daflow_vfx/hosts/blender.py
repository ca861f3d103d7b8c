"""Everything the Blender extension does that does not need Blender: panel settings -> `daflow-vfx`
command lines, the non-blocking background process with its ``Progress: NN%`` lines, building the
extension zip, and installing it.

The extension (``plugins/blender``) reads its panel properties into :class:`ActionSettings`, calls these
functions and wires the result back into Blender (strips, compositor nodes). Blender's own Python never
imports torch: the work runs in a separate process, either the ``daflow-vfx`` command (preference,
``$DAFLOW_VFX_EXECUTABLE`` or PATH, as for the Nuke plugin) or an external Python interpreter / venv
chosen in the add-on preferences, so a GPU build of torch stays outside Blender.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from daflow_vfx.errors import InputError, OutputError, UsageError
from daflow_vfx.hosts.blender_extension import (
    EXTENSION_ID,
    REQUIRED_MANIFEST_FIELDS,
    build_extension,
    check_manifest,
    install,
    plugin_dir,
    read_manifest,
)
from daflow_vfx.hosts.nuke import COLORSPACES, EXECUTABLE_ENV, parse_progress, resolve_executable

__all__ = [
    "ACTIONS",
    "EXTENSION_ID",
    "REQUIRED_MANIFEST_FIELDS",
    "ActionSettings",
    "BackgroundJob",
    "JobResult",
    "blender_colorspace",
    "build_extension",
    "check_manifest",
    "command_line",
    "install",
    "output_pattern",
    "parse_progress",
    "plugin_dir",
    "python_command",
    "read_manifest",
    "resolve_command",
    "submit_args",
]

ACTIONS = ("render", "retime", "stabilize")
# what `-c` runs when the preference names a Python interpreter rather than the daflow-vfx command
_CLI_SNIPPET = "import sys; from daflow_vfx.cli import main; sys.exit(main())"


# --------------------------------------------------------------------------------------------------
# panel settings -> command line


@dataclass(frozen=True, kw_only=True)
class ActionSettings:
    """One panel action: what the extension read from Blender, as plain values."""

    action: str  # "render" (Compute Vectors), "retime" or "stabilize"
    input: str  # the plate on disk: image sequence pattern (name.####.ext) or a movie file
    output_folder: str
    name: str = "daflow"  # base name of the files written
    frame_range: str = ""  # Deadline spec; "" = the whole source
    start_frame: int = 1  # plate frame number of a movie's first frame
    model: str = "default"
    device: str = "auto"
    input_colorspace: str = "auto"
    detail: float = 1.0  # vector detail: flow at this fraction of the plate's resolution (`--detail`)
    layout: str = "blender"  # render: Blender's Vector pass (or both)
    # retime
    speed: float = 0.5
    target_fps: str = ""  # "SRC:DST" (e.g. 24:60); wins over speed when set
    # stabilize
    mode: str = "similarity"
    smooth: float = 0.5  # seconds
    crop: str = "auto"
    fps: float | None = None


def output_pattern(settings: ActionSettings) -> str:
    """``output_folder/<name>.<action>.####.exr`` (vectors, retimed or stabilized frames)."""
    folder = settings.output_folder.strip()
    if not folder:
        raise UsageError(f"{settings.action}: the output folder is empty; set it in the DAFlow panel")
    name = settings.name.strip() or "daflow"
    if "/" in name or os.sep in name:
        raise UsageError(f"{settings.action}: name {name!r} must be a file name; put folders in the output "
                         "folder")
    kind = {"render": "vectors", "retime": "retime", "stabilize": "stabilize"}[settings.action]
    return os.path.join(os.path.abspath(os.path.expanduser(folder)), f"{name}.{kind}.####.exr")


def _check(settings: ActionSettings) -> None:
    if settings.action not in ACTIONS:
        raise UsageError(f"unknown action {settings.action!r}; choose one of {', '.join(ACTIONS)}")
    if not settings.input.strip():
        raise InputError(f"{settings.action}: no source; select a clip or an image/movie strip")
    # Any OCIO name goes through: the command checks it against the config and names close matches.
    if not settings.input_colorspace.strip() or "\n" in settings.input_colorspace:
        raise UsageError(f"input colourspace {settings.input_colorspace!r} is not a colour space name; "
                         f"choose one of {', '.join(COLORSPACES)} or an OCIO name")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", settings.device):
        raise UsageError(f"unknown device {settings.device!r}; use auto, cpu, cuda, cuda:N or mps")
    if not 0 < settings.detail <= 1:  # also NaN
        raise UsageError(f"vector detail {settings.detail:g} must be a fraction of the plate's resolution in "
                         "(0, 1], e.g. 0.5; fix it in the DAFlow panel", param="detail")
    if settings.action == "retime" and not settings.target_fps.strip() and not settings.speed > 0:
        raise UsageError(f"retime: speed {settings.speed} must be > 0, or set a target fps such as 24:60")


# Blender's OCIO config names (4.2 - 5.0) -> names the colour boundary knows (short names or names of
# OCIO's built-in studio config). Anything else goes through as it is.
_BLENDER_COLORSPACES = {
    "srgb": "srgb", "linear": "linear", "linear rec.709": "linear", "rec.1886": "rec709", "bt.1886": "rec709",
    "non-color": "Raw", "raw": "Raw", "acescg": "ACEScg", "aces2065-1": "ACES2065-1",
    "linear rec.2020": "Linear Rec.2020", "display p3": "sRGB Encoded P3-D65",
    "linear dci-p3 d65": "Linear P3-D65", "scene_linear": "linear",   # Blender's scene linear is Rec.709
    "rec.2020": "Rec.1886 Rec.2020 - Display", "rec.2100-pq": "Rec.2100-PQ - Display",
    "rec.2100-hlg": "Rec.2100-HLG - Display",
}


def blender_colorspace(name: str | None) -> str | None:
    """The ``--input-colorspace`` for a clip's or strip's ``colorspace_settings.name``; None when empty."""
    text = (name or "").strip()
    if not text:
        return None
    return _BLENDER_COLORSPACES.get(text.lower(), text)


def action_args(settings: ActionSettings) -> list[str]:
    """The arguments after the executable, e.g. ``render INPUT -o OUT --layout blender ...``."""
    _check(settings)
    args = [settings.action, settings.input, "-o", output_pattern(settings), "--model", settings.model,
            "--device", settings.device, "--input-colorspace", settings.input_colorspace,
            "--start-frame", str(int(settings.start_frame)),
            # 6 significant digits: Blender's float32 0.3 is 0.30000001192092896 as a double
            "--detail", f"{settings.detail:.6g}"]
    if settings.frame_range.strip():
        args += ["--frames", settings.frame_range.strip()]
    if settings.action == "render":
        args += ["--layout", settings.layout]
    elif settings.action == "retime":
        rate = settings.target_fps.strip()
        args += ["--fps", rate] if rate else ["--speed", repr(float(settings.speed))]
    else:
        args += ["--mode", settings.mode, "--smooth", repr(float(settings.smooth)), "--crop",
                 settings.crop.strip() or "auto"]
        if settings.fps:
            args += ["--fps", repr(float(settings.fps))]
    return args


def submit_args(settings: ActionSettings, farm: str, *, chunk_size: int = 10, executable: str = "",
                job_dir: str | None = None, dry_run: bool = False) -> list[str]:
    """The arguments after the executable for the panel's farm buttons: ``submit --farm FARM ... ACTION
    INPUT ...``. ``executable`` is daflow-vfx on the render nodes (empty: ``$DAFLOW_VFX_EXECUTABLE`` or
    daflow-vfx there), never this Blender's own Python."""
    from daflow_vfx.errors import check_choice
    from daflow_vfx.farm.job import FARMS

    check_choice(farm, FARMS, "farm")
    args = ["submit", "--farm", farm, "--chunk-size", str(int(chunk_size)), "--name",
            f"daflow {settings.action} {settings.name.strip() or 'daflow'}"]
    if executable.strip():
        args += ["--executable", executable.strip()]
    if job_dir:
        args += ["--job-dir", job_dir]
    if dry_run:
        args.append("--dry-run")
    return args + action_args(settings)


def python_command(python: str) -> list[str]:
    """The words that run daflow-vfx with an external interpreter: a python executable, or a venv folder
    (its ``bin/python`` / ``Scripts/python.exe``)."""
    path = Path(os.path.expanduser(python.strip()))
    if path.is_dir():
        for candidate in (path / "bin" / "python", path / "bin" / "python3", path / "Scripts" / "python.exe"):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise UsageError(f"{path}: no bin/python in this folder; point the DAFlow preference at a "
                             "venv or a python executable")
    elif not path.is_file():
        raise UsageError(f"{path}: no such Python interpreter; fix the DAFlow add-on preference")
    return [str(path), "-c", _CLI_SNIPPET]


def resolve_command(*, python: str = "", executable: str = "",
                    env: Mapping[str, str] | None = None) -> list[str]:
    """The words that run daflow-vfx: the preference's Python (interpreter or venv) when set, else the
    executable preference, ``$DAFLOW_VFX_EXECUTABLE`` or ``daflow-vfx`` on PATH."""
    if python.strip():
        return python_command(python)
    return resolve_executable(executable, env)


def command_line(settings: ActionSettings, *, python: str = "", executable: str = "",
                 env: Mapping[str, str] | None = None) -> list[str]:
    return [*resolve_command(python=python, executable=executable, env=env), *action_args(settings)]


# --------------------------------------------------------------------------------------------------
# the background process, polled from Blender's timers (never blocking the UI)


@dataclass(frozen=True, kw_only=True)
class JobResult:
    returncode: int
    cancelled: bool
    error: str | None  # the last ``Error: ...`` line, or the last line when the process failed
    lines: tuple[str, ...]


@dataclass(kw_only=True)
class BackgroundJob:
    """A `daflow-vfx` child process whose output a helper thread collects; :meth:`poll` never blocks.

    Blender polls it from a timer or a modal operator; tests call :meth:`wait`.
    """

    argv: list[str]
    env: Mapping[str, str] | None = None
    progress: int = 0
    lines: list[str] = field(default_factory=list)
    result: JobResult | None = None
    _proc: subprocess.Popen | None = None
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _cancelled: bool = False
    _reader: threading.Thread | None = None

    def start(self) -> BackgroundJob:
        try:
            self._proc = subprocess.Popen(list(self.argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True, bufsize=1,
                                          env=None if self.env is None else dict(self.env))
        except OSError as exc:
            raise UsageError(f"cannot run {self.argv[0]!r} ({exc.strerror or exc}); set the DAFlow add-on "
                             f"preference (Python or executable) or ${EXECUTABLE_ENV}") from None
        self._reader = threading.Thread(target=self._pump, name="daflow-blender-output", daemon=True)
        self._reader.start()
        return self

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._queue.put(line.rstrip("\r\n"))
        self._queue.put(None)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self.result is None

    def poll(self) -> JobResult | None:
        """Take the lines printed so far, update :attr:`progress`; the result once the process ended."""
        if self.result is not None:
            return self.result
        assert self._proc is not None, "start() the job first"
        ended = False
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                ended = True
                break
            self.lines.append(line)
            percent = parse_progress(line)
            if percent is not None:
                self.progress = percent
        if self._proc.poll() is None:
            return None
        if not ended and self._reader is not None:
            # the process ended: give the reader a moment for the last lines (a grandchild holding the
            # pipe open must not hang Blender, hence the timeout)
            self._reader.join(timeout=0.5)
            while True:
                try:
                    line = self._queue.get_nowait()
                except queue.Empty:
                    break
                if line is not None:
                    self.lines.append(line)
        code = self._proc.returncode
        errors = [ln for ln in self.lines if ln.startswith("Error:")]
        error = errors[-1] if errors else None
        if error is None and code != 0 and not self._cancelled:
            error = next((ln for ln in reversed(self.lines) if ln.strip()), f"exit code {code}")
        if code == 0 and not self._cancelled:
            self.progress = 100
        self.result = JobResult(returncode=code, cancelled=self._cancelled, error=error,
                                lines=tuple(self.lines))
        return self.result

    def cancel(self, *, timeout: float = 5.0) -> None:
        """Terminate the process (kill it after ``timeout`` seconds)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._cancelled = True
        self._proc.terminate()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def wait(self, *, timeout: float | None = None, interval: float = 0.05) -> JobResult:
        """Poll until the process ended (tests, scripts); cancel it and raise on ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (result := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise OutputError(f"{self.argv[0]}: still running after {timeout:.0f} s; cancelled")
            time.sleep(interval)
        return result


# --------------------------------------------------------------------------------------------------
# what the extension reads from Blender and writes back


_DIGITS = re.compile(r"(\d+)(?=\D*$)")


def sequence_pattern(first_file: str) -> tuple[str, int] | None:
    """``/p/plate.0001.png`` -> (``/p/plate.####.png``, 1): the last digit run of the file name becomes the
    frame token. None when the name has no digits (a single image)."""
    folder, name = os.path.split(first_file)
    match = _DIGITS.search(name)
    if match is None:
        return None
    digits = match.group(1)
    pattern = name[:match.start()] + "#" * len(digits) + name[match.end():]
    return os.path.join(folder, pattern), int(digits)


def written_frames(pattern: str) -> list[int]:
    """Frame numbers of ``pattern`` on disk (what a finished job wrote)."""
    from daflow_vfx.frames import SequencePattern

    parsed = SequencePattern.parse(pattern)
    return [] if parsed is None else parsed.scan()


@dataclass(frozen=True, kw_only=True)
class StripKey:
    """A sequencer strip transform (Blender: +y up, about the image centre) for one plate frame."""

    frame: int
    offset_x: float
    offset_y: float
    rotation: float  # radians, counter-clockwise
    scale: float


def stabilize_keys(document: Mapping) -> list[StripKey]:
    """Per-frame strip transforms that stabilize the ORIGINAL strip live, from a ``.stabilize.json``.

    The JSON's matrices map an output pixel to the source pixel it samples (pixel indices, +y down); the
    strip transform maps the source to the output, so each matrix is inverted, and its similarity part
    (translation, rotation, uniform scale) is expressed about the image centre with +y up.
    """
    import numpy as np

    width, height = int(document["width"]), int(document["height"])
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    keys = []
    for frame, matrix in sorted(document["frames"].items(), key=lambda kv: int(kv[0])):
        forward = np.linalg.inv(np.asarray(matrix, np.float64))  # source pixel -> output pixel, y down
        forward = forward / forward[2, 2]
        linear, shift = forward[:2, :2], forward[:2, 2]
        offset = linear @ centre + shift - centre  # where the centre goes, relative to itself
        scale = float(np.sqrt(abs(np.linalg.det(linear))))
        angle_down = float(np.arctan2(linear[1, 0], linear[0, 0]))  # clockwise on screen with y down
        keys.append(StripKey(frame=int(frame), offset_x=float(offset[0]), offset_y=float(-offset[1]),
                             rotation=-angle_down, scale=scale))
    return keys
