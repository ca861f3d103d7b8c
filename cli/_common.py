"""Shared CLI plumbing: error mapping, logging, progress output, YAML presets and option decorators."""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from daflow_vfx.errors import ConfigError, DaflowError, Interrupted

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N."


# --------------------------------------------------------------------------------------------------
# errors


class DaflowClickError(click.ClickException):
    """A :class:`DaflowError` shown as one line (``Error: ...``) with the error's exit code.

    ``flags`` maps parameter names to what the user typed (:func:`option_flags`): each parameter the
    library marks in its message (`` `tile_pad` ``) is shown as its flag (``--tile-pad``).
    """

    def __init__(self, error: DaflowError, flags: Mapping[str, str] | None = None) -> None:
        # one line, whatever the message holds: farm logs and wrappers read the last line
        message = " ".join(str(error).split()) or type(error).__name__
        super().__init__(_with_flags(message, error.params, flags or {}))
        self.exit_code = error.exit_code


_MARKED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def _with_flags(message: str, params: tuple[str, ...], flags: Mapping[str, str]) -> str:
    """Swap each marked parameter name for its flag; a marked parameter with no flag here loses its marks."""

    def swap(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in flags:
            return flags[name]
        return name if name in params else match.group(0)

    return _MARKED.sub(swap, message)


def option_flags(command: click.Command | None) -> dict[str, str]:
    """Parameter name -> how the command line spells it: ``tile_pad`` -> ``--tile-pad``, ``interpolation``
    -> ``--filter`` (the option's own name), ``fps`` -> ``--fps`` (its flag, whatever the option's name),
    ``image1`` -> ``IMAGE1``. A group's subcommands all count: the error does not say which one raised it."""
    flags: dict[str, str] = {}
    pending = [command] if command is not None else []
    while pending:
        current = pending.pop()
        if isinstance(current, click.Group):
            pending.extend(current.commands.values())
        for param in current.params:
            if isinstance(param, click.Argument) and param.name:
                flags.setdefault(param.name, param.human_readable_name)
            elif isinstance(param, click.Option) and param.name:
                long = [opt for opt in param.opts if opt.startswith("--")]
                if long:
                    flags.setdefault(param.name, long[0])
                    for opt in long:
                        flags.setdefault(opt[2:].replace("-", "_"), opt)
    return flags


class DaflowGroup(click.Group):
    """The command group: every subcommand's :class:`DaflowError` becomes a clean message.

    Anything else propagates with its traceback, because it is a bug to fix, not a user mistake.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DaflowError as error:
            name = ctx.invoked_subcommand
            command = self.get_command(ctx, name) if name else None
            raise DaflowClickError(error, option_flags(command)) from None
        except KeyboardInterrupt:
            # Ctrl-C outside a long command's own handler (while options are read): one Error line, not
            # click's "Aborted!", and the shell's exit code for SIGINT.
            import signal

            stopped = Interrupted("interrupted by SIGINT (Ctrl-C); the command stopped",
                                  signal_number=signal.SIGINT)
            raise DaflowClickError(stopped) from None


# --------------------------------------------------------------------------------------------------
# logging and progress


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, so redirected and test runs capture it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401 - property standing in for the attribute
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the property ignores that
        pass


def setup_logging(verbosity: int) -> None:
    """Library log records to stderr: warnings by default, info with -v, debug with -vv; -q errors only."""
    logger = logging.getLogger("daflow_vfx")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logger.setLevel(level)
    logger.propagate = False


class ProgressPrinter:
    """Progress for people and for farms.

    When stdout is not a terminal (Deadline, OpenCue, logs) it prints whole-number ``Progress: NN%``
    lines, flushed, each percentage once; on a terminal it draws a tqdm bar on stderr.
    Callable as ``progress(done, total)``; safe to call from a worker thread.
    """

    def __init__(self, label: str = "frames", *, tty: bool | None = None) -> None:
        self.label = label
        self.tty = sys.stdout.isatty() if tty is None else tty
        self._last = -1
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit=self.label, dynamic_ncols=True)
            self._bar.update(done - self._bar.n)
            return
        percent = 100 if total <= 0 else min(100, (100 * done) // total)  # floor: 100% only when done
        if percent != self._last:
            self._last = percent
            click.echo(f"Progress: {percent}%")  # click.echo flushes, which the farm needs

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# YAML presets


def _option_keys(command: click.Command) -> dict[str, str]:
    """Preset key -> parameter name, for every option but --config/--help (``skip-existing``,
    ``skip_existing`` and the parameter name itself all work)."""
    keys: dict[str, str] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in ("config", "help") or param.name is None:
            continue
        keys[param.name] = param.name
        for opt in param.opts:
            if opt.startswith("--"):
                keys[opt[2:]] = param.name
                keys[opt[2:].replace("-", "_")] = param.name
    return keys


def load_preset(path: str, command: click.Command, ctx: click.Context | None = None) -> dict[str, Any]:
    """Read a YAML preset into ``{parameter name: value}``; :class:`ConfigError` for anything odd.

    With ``ctx`` every value is also converted as its option would convert it, so a value of the wrong
    type is reported against the preset and its key, not as if the user had typed the flag.
    """
    from daflow_vfx.yaml_io import read_yaml

    data = read_yaml(path, "preset")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a preset must be a mapping of option: value, got {type(data).__name__}")
    keys = _option_keys(command)
    unknown = sorted(str(k) for k in data if str(k) not in keys)
    if unknown:
        allowed = ", ".join(sorted({k for k in keys if "_" not in k}))
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed keys for "
                          f"`{command.name}`: {allowed}")
    if ctx is not None:
        options = {p.name: p for p in command.params if isinstance(p, click.Option)}
        for key, value in data.items():
            try:
                options[keys[str(key)]].type_cast_value(ctx, value)
            except click.BadParameter as exc:
                # exc.message, not format_message(): that one names the flag as if it had been typed
                reason = " ".join(str(exc.message).split()).rstrip(".")
                raise ConfigError(f"{path}: preset key {key!r}: {reason}; fix the preset") from None
    return {keys[str(k)]: v for k, v in data.items()}


def _apply_preset(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # eager, so it runs before the other options: values given on the command line still win,
    # because click only consults default_map for options the user did not give
    if value is not None:
        preset = load_preset(value, ctx.command, ctx)
        ctx.default_map = {**(ctx.default_map or {}), **preset}
    return value


def config_option(func: F) -> F:
    return click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=_apply_preset,
        help="YAML preset of option: value pairs; options given on the command line override it.",
    )(func)


# --------------------------------------------------------------------------------------------------
# options shared by several commands


def model_help(names: list[str] | None = None) -> str:
    """``--model`` help from the registry: ``names`` (default: every name ``--model`` takes)."""
    from daflow_vfx.registry import model_names, resolve_default_model

    listed = model_names() if names is None else names
    return (f"Flow estimator: {', '.join(listed)} (default is {resolve_default_model()}); "
            "see `daflow-vfx models`.")


def own_iters() -> str:
    """Each learned model's refinement iterations when none are given, from the registry: ``daflow-compact
    4, ...``."""
    from daflow_vfx.registry import default_iters

    return ", ".join(f"{name} {n}" for name, n in default_iters().items())


def iters_help(what: str = "Refinement iterations of a learned model") -> str:
    """``--iters`` help from the registry: each learned model's own count, used when none is given."""
    return f"{what} (default: the model's own: {own_iters()}); fewer is faster."


def model_option(func: F) -> F:
    return click.option("--model", default="default", show_default=True, help=model_help())(func)


def device_option(func: F) -> F:
    return click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)(func)


def engine_options(func: F) -> F:
    """The options of every command that computes flow, given to the command as one ``engine`` argument
    (a :class:`~daflow_vfx.jobs.options.EngineOptions`): ``--model --weights --iters --device --dtype
    --detail --tile --tile-pad --max-memory --threads --compile --compile-refinement --batch-windows``.
    Each option is named after its field, so a library error naming the field shows as the flag."""
    from daflow_vfx.numerics import DTYPE_CHOICES

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        from dataclasses import fields

        from daflow_vfx.jobs.options import EngineOptions

        engine = EngineOptions(**{f.name: kwargs.pop(f.name) for f in fields(EngineOptions)})
        return func(*args, engine=engine, **kwargs)

    options = (
        model_option,
        click.option(
            "--weights", default=None, metavar="PATH",
            help="Local weights for --model: a .safetensors file (or the daflow-full folder with "
            "transformer/, vae/, flow/). Nothing is ever downloaded.",
        ),
        click.option("--iters", type=click.IntRange(min=1), default=None, help=iters_help()),
        device_option,
        click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
                     help="Compute precision of learned models (classical ones use float32). auto: "
                     "bfloat16 where the device has it in hardware (CUDA since Ampere; CPUs with AMX or "
                     "AVX-512 BF16), float32 elsewhere."),
        # a plain float: the range is checked by EngineOptions, so a bad value is the library's one
        # message naming --detail, the same as from a preset or the Python API
        click.option(
            "--detail", type=float, default=1.0, show_default=True, metavar="FRACTION",
            help="Vector detail in (0, 1]: compute the flow at this fraction of the plate's resolution and "
            "upsample the vectors to full size (0.5: about 4x fewer pixels, less fine detail). --tile and "
            "--tile-pad count the reduced pixels.",
        ),
        click.option("--tile", type=click.IntRange(min=16), default=None,
                     help="Split frames larger than this many pixels into overlapping tiles."),
        click.option("--tile-pad", type=click.IntRange(min=0), default=32, show_default=True,
                     help="Overlap in pixels around each tile, blended with feathering."),
        click.option(
            "--max-memory", default=None, metavar="SIZE",
            help="Memory budget of the estimator (GPU memory on CUDA), e.g. 8G or 512M: frames that would "
            "not fit are tiled automatically.",
        ),
        click.option(
            "--threads", type=click.IntRange(min=1), default=None, metavar="N",
            help="CPU threads for torch and OpenCV while computing (default: their own setting).",
        ),
        click.option(
            "--compile", is_flag=True, default=False,
            help="torch.compile the network of a learned model (the first frames of each size are slow).",
        ),
        click.option(
            "--compile-refinement", is_flag=True, default=False,
            help="Compile the refinement iteration of a learned model as one graph (CUDA graphs on CUDA; "
            "experimental, the first frames of each size are slow).",
        ),
        click.option(
            "--batch-windows", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
            help="Windows of frames per forward pass of a learned model, where memory allows (fewer, "
            "larger calls on a GPU; the same vectors to float32 round-off).",
        ),
    )
    for option in reversed(options):  # click lists options in decorator order, top first
        command = option(command)
    return command  # type: ignore[return-value]


COLORSPACE_HELP = (
    "Colour space of the plate: auto, linear, srgb, rec709, log, or any colour space of the OCIO config "
    "(e.g. ACEScg, 'ARRI LogC3 (EI800)', 'S-Log3 S-Gamut3'). auto: the file's own tag when it has one, "
    "else linear for float EXR, sRGB otherwise."
)
OCIO_CONFIG_HELP = "OCIO config (file or ocio:// URI) for colour space names; default $OCIO, else OCIO's " \
    "built-in ocio://studio-config-latest."


def colorspace_option(func: F) -> F:
    """``--input-colorspace NAME`` and ``--ocio-config PATH_OR_URI``. A command that takes no
    ``ocio_config`` argument still gets both flags; there ``--ocio-config`` is refused, not ignored."""
    import inspect

    takes_config = "ocio_config" in inspect.signature(func).parameters

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        ocio_config = kwargs.pop("ocio_config", None)
        if takes_config:
            kwargs["ocio_config"] = ocio_config
        elif ocio_config:
            from daflow_vfx.errors import UsageError

            raise UsageError("this command does not take `ocio_config` yet; set $OCIO instead",
                             param="ocio_config")
        return func(*args, **kwargs)

    command = click.option("--ocio-config", default=None, metavar="PATH_OR_URI",
                           help=OCIO_CONFIG_HELP)(command)
    return click.option("--input-colorspace", default="auto", show_default=True, metavar="NAME",
                        help=COLORSPACE_HELP)(command)  # type: ignore[return-value]


def video_options(func: F) -> F:
    """``--codec --quality --output-colorspace`` of every command that writes video, given to the command
    as one ``video`` argument (a :class:`~daflow_vfx.jobs.options.VideoOptions`)."""
    from daflow_vfx.io.video import VIDEO_CODECS, VIDEO_QUALITIES

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        from daflow_vfx.jobs.options import VideoOptions

        video = VideoOptions(codec=kwargs.pop("codec"), quality=kwargs.pop("quality"),
                             output_colorspace=kwargs.pop("output_colorspace"))
        return func(*args, video=video, **kwargs)

    options = (
        click.option("--codec", type=click.Choice(VIDEO_CODECS), default="h264", show_default=True,
                     help="Video output codec: h264 (.mp4/.mov), prores (422 HQ, 10-bit 4:2:2, .mov), "
                     "prores4444 (10-bit 4:4:4 + alpha, .mov), dnxhr (HQX, 10-bit 4:2:2, .mov/.mxf)."),
        click.option("--quality", type=click.Choice(VIDEO_QUALITIES), default="high", show_default=True,
                     help="Video quality: H.264 CRF 18/23/28, ProRes HQ/422/LT, DNxHR HQX/HQ/SQ."),
        click.option("--output-colorspace", default=None, metavar="NAME",
                     help="OCIO colour space or display of a video output, e.g. 'Rec.1886 Rec.709 - "
                     "Display' to review a log plate (default: the sRGB display the flow was computed on)."),
    )
    for option in reversed(options):
        command = option(command)
    return command  # type: ignore[return-value]


def layer_option(func: F) -> F:
    return click.option("--layer", default=None, help="EXR layer to read, e.g. diffuse (default: RGB).")(func)


def start_frame_option(func: F) -> F:
    return click.option("--start-frame", type=int, default=1, show_default=True,
                        help="Plate frame number of a video's first frame.")(func)


def plate_options(func: F) -> F:
    """How a plate is read: ``--input-colorspace``, ``--layer`` and ``--start-frame``."""
    return colorspace_option(layer_option(start_frame_option(func)))


def layout_option(default: str = "nuke") -> Callable[[F], F]:
    from daflow_vfx.io.exr import LAYOUTS

    def decorate(func: F) -> F:
        return click.option("--layout", type=click.Choice(LAYOUTS), default=default, show_default=True,
                            help="Vector channels: Nuke forward/backward, Blender Vector, or both.")(func)

    return decorate


def exr_options(func: F) -> F:
    from daflow_vfx.io.exr import LOSSLESS_COMPRESSIONS

    func = click.option("--float", "float32", is_flag=True, default=False,
                        help="Write float32 channels instead of half.")(func)
    return click.option("--compression", type=click.Choice(LOSSLESS_COMPRESSIONS), default="zip",
                        show_default=True, help="Lossless EXR compression.")(func)
