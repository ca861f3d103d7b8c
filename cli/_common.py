"""Shared CLI plumbing: error mapping, logging, progress output, YAML presets and option decorators."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from daflow_vfx.errors import ConfigError, DaflowError

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N."


# --------------------------------------------------------------------------------------------------
# errors


class DaflowClickError(click.ClickException):
    """A :class:`DaflowError` shown as one line (``Error: ...``) with the error's exit code."""

    def __init__(self, error: DaflowError) -> None:
        # one line, whatever the message holds: farm logs and wrappers read the last line
        super().__init__(" ".join(str(error).split()) or type(error).__name__)
        self.exit_code = error.exit_code


class DaflowGroup(click.Group):
    """The command group: every subcommand's :class:`DaflowError` becomes a clean message.

    Anything else propagates with its traceback, because it is a bug to fix, not a user mistake.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DaflowError as error:
            raise DaflowClickError(error) from None


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


def load_preset(path: str, command: click.Command) -> dict[str, Any]:
    """Read a YAML preset into ``{parameter name: value}``; :class:`ConfigError` for anything odd."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the preset ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}; fix the preset") from None
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
    return {keys[str(k)]: v for k, v in data.items()}


def _apply_preset(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # eager, so it runs before the other options: values given on the command line still win,
    # because click only consults default_map for options the user did not give
    if value is not None:
        preset = load_preset(value, ctx.command)
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


def weights_options(func: F) -> F:
    """``--weights`` (local weights for a learned model) and ``--iters`` (refinement iterations)."""
    func = click.option(
        "--iters", type=click.IntRange(min=1), default=None,
        help="Refinement iterations of a learned model (default 12); fewer is faster.",
    )(func)
    return click.option(
        "--weights", default=None, metavar="PATH",
        help="Local weights for --model: a .safetensors file (or the daflow-full folder with "
        "transformer/, vae/, flow/). Nothing is ever downloaded.",
    )(func)


def model_option(func: F) -> F:
    from daflow_vfx.estimators import model_names, resolve_default_model

    return click.option(
        "--model", default="default", show_default=True,
        help=f"Flow estimator: {', '.join(model_names())} (default is {resolve_default_model()}); "
        "see `daflow-vfx models`.",
    )(func)


def device_option(func: F) -> F:
    return click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)(func)


def dtype_option(func: F) -> F:
    from daflow_vfx.engine import DTYPES

    return click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
                        help="Compute precision of learned models (classical ones use float32).")(func)


def colorspace_option(func: F) -> F:
    from daflow_vfx.color import COLORSPACES

    return click.option(
        "--input-colorspace", type=click.Choice(COLORSPACES), default="auto", show_default=True,
        help="Colour space of the plate; auto = linear for float EXR, sRGB otherwise.",
    )(func)


def layer_option(func: F) -> F:
    return click.option("--layer", default=None, help="EXR layer to read, e.g. diffuse (default: RGB).")(func)


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


def tile_options(func: F) -> F:
    func = click.option("--tile-pad", type=click.IntRange(min=0), default=32, show_default=True,
                        help="Overlap in pixels around each tile, blended with feathering.")(func)
    return click.option("--tile", type=click.IntRange(min=16), default=None,
                        help="Split frames larger than this many pixels into overlapping tiles.")(func)


def performance_options(func: F) -> F:
    """``--max-memory`` (tile frames that would not fit), ``--threads`` and ``--compile``."""
    func = click.option(
        "--compile", "compile_model", is_flag=True, default=False,
        help="torch.compile the network of a learned model (the first frames of each size are slow).",
    )(func)
    func = click.option(
        "--threads", type=click.IntRange(min=1), default=None, metavar="N",
        help="CPU threads for torch and OpenCV while computing (default: their own setting).",
    )(func)
    return click.option(
        "--max-memory", default=None, metavar="SIZE",
        help="Memory budget of the estimator (GPU memory on CUDA), e.g. 8G or 512M: frames that would "
        "not fit are tiled automatically.",
    )(func)
