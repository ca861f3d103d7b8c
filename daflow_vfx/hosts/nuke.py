"""Everything the Nuke plugin does that does not need Nuke: knobs -> `daflow-vfx render` command lines,
frame ranges, the Deadline job, progress parsing, the background render process, and installation.

The DAFlow node (``plugins/nuke/gizmos/DAFlow.gizmo``) only reads its knobs into a dict, calls these
functions and wires the result back into the node graph. Nuke's own Python never imports torch: the
render runs as a separate ``daflow-vfx`` process found through the node's ``executable`` knob, the
``DAFLOW_VFX_EXECUTABLE`` environment variable (which ``daflow-vfx nuke install`` records) or PATH.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daflow_vfx.errors import OutputError, UsageError
from daflow_vfx.hosts import shipped_folder

__all__ = [
    "CHANNELS",
    "COLORSPACES",
    "EXECUTABLE_ENV",
    "NODE_LAYOUTS",
    "InstallReport",
    "NodeSettings",
    "RenderResult",
    "command_line",
    "deadline_job",
    "frame_list",
    "install",
    "output_pattern",
    "parse_progress",
    "plate_cache_pattern",
    "plugin_dir",
    "read_colorspace",
    "render_args",
    "resolve_executable",
    "run_render",
    "source_plate",
    "submit_args",
    "update_init_text",
]

# The channels the node's internal Read brings back, named as Nuke's VectorGenerator names them.
CHANNELS = ("forward.u", "forward.v", "backward.u", "backward.v")
# Layouts whose files carry those channels (blender-only files would leave the node's output empty).
NODE_LAYOUTS = ("nuke", "both")
# daflow_vfx.color.COLORSPACES, repeated because color.py loads numpy and Nuke's Python imports this
# module (a test keeps the two equal)
COLORSPACES = ("auto", "linear", "srgb", "rec709", "log")
EXECUTABLE_ENV = "DAFLOW_VFX_EXECUTABLE"
DEFAULT_OUTPUT_NAME = "vectors.####.exr"
BLOCK_BEGIN = "# >>> daflow-vfx >>> (written by `daflow-vfx nuke install`; edit there, not here)"
BLOCK_END = "# <<< daflow-vfx <<<"

_PROGRESS = re.compile(r"^\s*Progress:\s*(\d{1,3})%\s*$")


# --------------------------------------------------------------------------------------------------
# knobs -> command line


@dataclass(frozen=True, kw_only=True)
class NodeSettings:
    """The DAFlow node's knob values, plus what the plugin found out about its input."""

    input: str  # the plate on disk: a sequence pattern (Read file, or the plate the node wrote)
    output_folder: str
    output_name: str = DEFAULT_OUTPUT_NAME
    node_name: str = "DAFlow1"
    frame_range: str = ""  # Deadline spec; "" means the input's range
    input_first: int | None = None  # the input's frame range in Nuke
    input_last: int | None = None
    model: str = "default"
    device: str = "auto"
    layout: str = "nuke"
    input_colorspace: str = "auto"
    detail: float = 1.0  # the vector detail knob: `render --detail`
    executable: str = ""  # "" -> $DAFLOW_VFX_EXECUTABLE -> daflow-vfx on PATH
    chunk_size: int = 10
    skip_existing: bool = False

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any], *, input: str, node_name: str = "DAFlow1",
                   input_first: int | None = None, input_last: int | None = None) -> NodeSettings:
        """Build from ``{knob name: value}`` as the gizmo's knobs hold them (ints may come as floats)."""

        def text(name: str, default: str) -> str:
            value = knobs.get(name, default)
            return default if value is None else str(value).strip()

        return cls(
            input=input,
            output_folder=text("output_folder", ""),
            output_name=text("output_name", DEFAULT_OUTPUT_NAME) or DEFAULT_OUTPUT_NAME,
            node_name=node_name,
            frame_range=text("frame_range", ""),
            input_first=input_first,
            input_last=input_last,
            model=text("model", "default") or "default",
            device=text("device", "auto") or "auto",
            layout=text("layout", "nuke") or "nuke",
            input_colorspace=text("input_colorspace", "auto") or "auto",
            detail=1.0 if knobs.get("vector_detail") is None else float(knobs["vector_detail"]),
            executable=text("executable", ""),
            chunk_size=int(float(knobs.get("chunk_size", 10) or 10)),
            skip_existing=bool(knobs.get("skip_existing", False)),
        )


def output_pattern(settings: NodeSettings) -> str:
    """``output_folder/output_name`` with the frame token as ``####`` (what the node's Read reads)."""
    from daflow_vfx.frames import SequencePattern

    folder = settings.output_folder.strip()
    if not folder:
        raise UsageError(f"{settings.node_name}: output folder is empty; set it to where the vector EXRs go")
    name = settings.output_name
    if os.sep in name or "/" in name:
        raise UsageError(f"{settings.node_name}: output name {name!r} must be a file name; put folders in "
                         "the output folder knob")
    pattern = SequencePattern.parse(os.path.join(os.path.expanduser(folder), name))
    if pattern is None:
        raise UsageError(f"{settings.node_name}: output name {name!r} has no frame token; use e.g. "
                         "vectors.####.exr")
    if not pattern.suffix.lower().endswith(".exr"):
        raise UsageError(f"{settings.node_name}: output name {name!r} must end in .exr")
    return f"{pattern.prefix}{'#' * max(pattern.padding, 4)}{pattern.suffix}"


def frame_list(settings: NodeSettings) -> list[int]:
    """Frames to render: the frame range knob (Deadline syntax) or the input's range; checked against
    the input's range when that is known."""
    from daflow_vfx.frames import format_frame_spec, parse_frame_spec

    known = settings.input_first is not None and settings.input_last is not None
    if settings.frame_range:
        frames = parse_frame_spec(settings.frame_range)
    elif known:
        frames = list(range(int(settings.input_first), int(settings.input_last) + 1))
    else:
        raise UsageError(f"{settings.node_name}: no frame range and no input range; set the frame range "
                         "knob, e.g. 1001-1100")
    if known:
        outside = [f for f in frames if not settings.input_first <= f <= settings.input_last]
        if outside:
            raise UsageError(f"{settings.node_name}: frames {format_frame_spec(outside)} are outside the "
                             f"input's range {settings.input_first}-{settings.input_last}; fix the frame "
                             "range knob")
    return frames


def _check(settings: NodeSettings) -> None:
    if settings.layout not in NODE_LAYOUTS:
        raise UsageError(f"{settings.node_name}: layout {settings.layout!r} does not give the node its "
                         f"forward/backward channels; choose {' or '.join(NODE_LAYOUTS)}")
    # Any OCIO name goes through: `daflow-vfx render` checks it against the config (the same $OCIO as
    # Nuke's) and names close matches; here only an empty or multi-line value is refused.
    if not settings.input_colorspace.strip() or "\n" in settings.input_colorspace:
        raise UsageError(f"{settings.node_name}: input colourspace {settings.input_colorspace!r} is not a "
                         f"colour space name; choose one of {', '.join(COLORSPACES)} or an OCIO name")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", settings.device):
        raise UsageError(f"{settings.node_name}: unknown device {settings.device!r}; use auto, cpu, cuda "
                         "or cuda:N")
    if not 0 < settings.detail <= 1:  # also NaN; checked here so a farm job is refused before submission
        raise UsageError(f"{settings.node_name}: vector detail {settings.detail:g} must be a fraction of the "
                         "plate's resolution in (0, 1], e.g. 0.5", param="detail")
    if not settings.input.strip():
        raise UsageError(f"{settings.node_name}: no input plate; connect an input")


def render_args(settings: NodeSettings, *, frames: str | None = None) -> list[str]:
    """The arguments after the executable: ``render INPUT -o OUTPUT --frames SPEC ...``.

    ``frames`` overrides the frame spec (the farm passes ``<STARTFRAME>-<ENDFRAME>``).
    """
    from daflow_vfx.frames import format_frame_spec

    _check(settings)
    spec = frames if frames is not None else format_frame_spec(frame_list(settings))
    args = [
        "render", settings.input,
        "-o", output_pattern(settings),
        "--frames", spec,
        "--layout", settings.layout,
        "--model", settings.model,
        "--device", settings.device,
        "--input-colorspace", settings.input_colorspace,
        # 6 significant digits: a slider's 0.30000000000000004 reads 0.3 in the farm's command line
        "--detail", f"{settings.detail:.6g}",
    ]
    if settings.skip_existing:
        args.append("--skip-existing")
    return args


def resolve_executable(knob: str = "", env: Mapping[str, str] | None = None) -> list[str]:
    """The command that runs daflow-vfx: the knob, else ``$DAFLOW_VFX_EXECUTABLE``, else ``daflow-vfx``.

    The value is split like a shell word list, so wrappers work (``rez env daflow -- daflow-vfx``); a
    single path with spaces (``C:/Program Files/daflow/daflow-vfx.exe``) is kept whole when it exists.
    """
    env = os.environ if env is None else env
    value = (knob or "").strip() or env.get(EXECUTABLE_ENV, "").strip() or "daflow-vfx"
    if os.path.isfile(os.path.expanduser(value)):
        return [os.path.expanduser(value)]
    try:
        words = shlex.split(value, posix=os.name != "nt")
    except ValueError:
        raise UsageError(f"executable {value!r}: unbalanced quotes; give the path of daflow-vfx") from None
    return [os.path.expanduser(w) for w in words] or ["daflow-vfx"]


def command_line(settings: NodeSettings, *, env: Mapping[str, str] | None = None) -> list[str]:
    """The full local command: executable words + :func:`render_args`."""
    return [*resolve_executable(settings.executable, env), *render_args(settings)]


def plate_cache_pattern(output_folder: str, node_name: str) -> str:
    """Where the node writes its input when that is not already a file sequence on disk."""
    return os.path.join(os.path.expanduser(output_folder), "plate", f"{node_name}.plate.####.exr")


# Nuke's own (non-OCIO) colour space names -> the colour boundary's names. Anything else is an OCIO name
# (Nuke running an OCIO config, such as the studio's $OCIO, which the render then reads too) or one of ours.
_NUKE_COLORSPACES = {
    "linear": "linear", "srgb": "srgb", "rec709": "rec709", "cineon": "log", "gamma2.4": "rec709",
    "bt1886": "rec709", "raw": "Raw", "alexav3logc": "ARRI LogC3 (EI800)",
    "log3g10": "Log3G10 REDWideGamutRGB",
}


def read_colorspace(knob_value: str | None) -> str | None:
    """The ``--input-colorspace`` a Read node's ``colorspace`` knob value means, or None for no value.

    ``default (sRGB)`` is Nuke's way of showing the default it picked for the file type: the name in the
    brackets counts. Nuke's built-in names map to ours (Cineon -> log, AlexaV3LogC -> ARRI LogC3 (EI800));
    OCIO names pass through unchanged.
    """
    text = (knob_value or "").strip()
    match = re.fullmatch(r"default\s*\((.*)\)", text)
    if match:
        text = match.group(1).strip()
    if not text:
        return None
    return _NUKE_COLORSPACES.get(text.lower(), text)


def source_plate(read_file: str | None, frames: Sequence[int]) -> str | None:
    """``read_file`` when the node's input is a Read of an image sequence with every frame in
    ``frames`` on disk (then it is rendered as it is); ``None`` when the input must be written first
    (no Read, a movie, a single image, missing frames)."""
    from daflow_vfx.frames import SequencePattern

    if not read_file:
        return None
    pattern = SequencePattern.parse(read_file)
    if pattern is None:
        return None
    on_disk = set(pattern.scan())
    return read_file if frames and all(f in on_disk for f in frames) else None


def deadline_job(settings: NodeSettings, *, name: str | None = None, env: Mapping[str, str] | None = None,
                 **extra: Any):
    """A :class:`~daflow_vfx.farm.deadline.DeadlineJob` rendering the node's frames in chunks.

    Deadline hands each task a contiguous ``<STARTFRAME>-<ENDFRAME>``, so the frame range must be
    contiguous (a stepped or listed range would render the frames between as well).
    """
    from daflow_vfx.farm.deadline import FRAME_TOKENS, DeadlineJob
    from daflow_vfx.frames import format_frame_spec

    frames = frame_list(settings)
    if frames != list(range(frames[0], frames[-1] + 1)):
        raise UsageError(f"{settings.node_name}: farm renders need a contiguous frame range, got "
                         f"{format_frame_spec(frames)}; submit e.g. {frames[0]}-{frames[-1]}")
    words = resolve_executable(settings.executable, env)
    pattern = output_pattern(settings)
    return DeadlineJob(
        name=name or f"daflow {settings.node_name}",
        frames=f"{frames[0]}-{frames[-1]}",
        chunk_size=settings.chunk_size,
        executable=words[0],
        arguments=[*words[1:], *render_args(settings, frames=FRAME_TOKENS)],
        output_directory=os.path.dirname(pattern),
        output_filename=os.path.basename(pattern),
        **extra,
    )


def submit_args(settings: NodeSettings, farm: str, *, name: str, job_dir: str | None = None,
                dry_run: bool = False) -> list[str]:
    """The arguments after the executable for the "Submit to Farm" button: ``submit --farm FARM ...
    render INPUT ...``, run as a separate process. The node's executable knob is also what the render
    nodes run (a farm shares the installation's path)."""
    from daflow_vfx.errors import check_choice
    from daflow_vfx.farm.job import FARMS

    check_choice(farm, FARMS, "farm")
    args = ["submit", "--farm", farm, "--chunk-size", str(int(settings.chunk_size)), "--name", name]
    if settings.executable:
        args += ["--executable", settings.executable]
    if job_dir:
        args += ["--job-dir", job_dir]
    if dry_run:
        args.append("--dry-run")
    return args + render_args(settings)


# --------------------------------------------------------------------------------------------------
# running the render


def parse_progress(line: str) -> int | None:
    """The percentage of a ``Progress: NN%`` line from `daflow-vfx render`, else None."""
    match = _PROGRESS.match(line)
    return min(100, int(match.group(1))) if match else None


@dataclass(frozen=True, kw_only=True)
class RenderResult:
    returncode: int
    cancelled: bool
    error: str | None  # the last ``Error: ...`` line, or the last line when the process failed
    lines: tuple[str, ...]  # everything it printed, for the script editor


def run_render(argv: Sequence[str], *, progress: Callable[[int], None] | None = None,
               cancelled: Callable[[], bool] | None = None, poll: float = 0.1,
               env: Mapping[str, str] | None = None) -> RenderResult:
    """Run ``argv`` as a child process, report its ``Progress: NN%`` lines and stop it when
    ``cancelled()`` turns true (terminate, then kill after 5 s).

    Output is read on a helper thread so a quiet process never blocks the cancellation check.
    """
    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, env=None if env is None else dict(env))
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]!r} ({exc.strerror or exc}); set the DAFlow node's executable "
                         f"knob or ${EXECUTABLE_ENV} to the daflow-vfx command") from None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\r\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, name="daflow-render-output", daemon=True)
    reader.start()
    seen: list[str] = []
    was_cancelled = False
    quiet_after_exit = 0.0
    while True:
        if cancelled is not None and not was_cancelled and cancelled():
            was_cancelled = True
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            line = lines.get(timeout=poll)
        except queue.Empty:
            # a grandchild that inherited the pipe may keep it open after the process ended: stop
            # waiting for end-of-file once the process is gone and a second passed in silence
            if proc.poll() is not None:
                quiet_after_exit += poll
                if quiet_after_exit >= 1.0:
                    break
            continue
        if line is None:
            break
        seen.append(line)
        percent = parse_progress(line)
        if percent is not None and progress is not None:
            progress(percent)
    returncode = proc.wait()
    reader.join(timeout=1)
    errors = [ln for ln in seen if ln.startswith("Error:")]
    error = errors[-1] if errors else None
    if error is None and returncode != 0 and not was_cancelled:
        error = next((ln for ln in reversed(seen) if ln.strip()), f"exit code {returncode}")
    return RenderResult(returncode=returncode, cancelled=was_cancelled, error=error, lines=tuple(seen))


# --------------------------------------------------------------------------------------------------
# installation


def plugin_dir() -> Path:
    """The Nuke plugin folder: ``daflow_vfx/plugins_nuke`` in an installed package, or the checkout's
    ``plugins/nuke`` (editable installs)."""
    return shipped_folder("plugins_nuke", ("plugins", "nuke"), what="the Nuke plugin folder",
                          looks_right=lambda d: (d / "menu.py").is_file() and (d / "gizmos").is_dir())


def init_block(plugin_path: str | os.PathLike, *, executable: str | None = None) -> str:
    """The lines ``daflow-vfx nuke install`` keeps in ``init.py``, between two marker comments."""
    lines = [BLOCK_BEGIN, "import os", "import nuke"]
    if executable:
        # setdefault: a value set by the pipeline (environment, wrapper) wins over the installed one
        lines.append(f"os.environ.setdefault({EXECUTABLE_ENV!r}, {str(executable)!r})")
    lines += [f"nuke.pluginAddPath({os.fspath(plugin_path)!r})", BLOCK_END]
    return "\n".join(lines) + "\n"


def update_init_text(text: str, block: str) -> str:
    """``text`` with the daflow block replaced (or appended once); other lines are kept as they are."""
    begin, end = text.find(BLOCK_BEGIN), text.find(BLOCK_END)
    if begin != -1 and end > begin:
        stop = end + len(BLOCK_END)
        if text[stop:stop + 1] == "\n":
            stop += 1
        return text[:begin] + block + text[stop:]
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text.strip() else "") + block


@dataclass(frozen=True, kw_only=True)
class InstallReport:
    init_path: Path
    plugin_path: Path
    changed: bool  # False: init.py already held exactly these lines
    executable: str | None


def default_executable() -> str | None:
    """The daflow-vfx next to the running interpreter (the one being installed), else PATH's."""
    import shutil
    import sys

    here = Path(sys.executable).parent
    for name in ("daflow-vfx", "daflow-vfx.exe"):
        if (here / name).is_file():
            return str(here / name)
    return shutil.which("daflow-vfx")


def install(nuke_dir: str | os.PathLike | None = None, *, plugin_path: str | os.PathLike | None = None,
            executable: str | None = None) -> InstallReport:
    """Add (or update) the plugin lines in ``<nuke_dir>/init.py`` (default ``~/.nuke``), idempotently
    and atomically: running it twice changes nothing, and a moved installation updates the lines."""
    from daflow_vfx.farm.deadline import write_text_atomic

    folder = Path(os.path.expanduser(os.fspath(nuke_dir or "~/.nuke")))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the Nuke folder ({exc.strerror or exc}); pass "
                          "--nuke-dir") from None
    plugin = Path(plugin_path) if plugin_path is not None else plugin_dir()
    init = folder / "init.py"
    try:
        before = init.read_text(encoding="utf-8") if init.exists() else ""
    except OSError as exc:
        raise OutputError(f"{init}: cannot read it ({exc.strerror or exc}); fix its permissions") from None
    after = update_init_text(before, init_block(plugin, executable=executable))
    if after != before:
        write_text_atomic(init, after)
    return InstallReport(init_path=init, plugin_path=plugin, changed=after != before, executable=executable)

