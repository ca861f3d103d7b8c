"""Every error daflow-vfx raises on purpose.

The CLI turns a :class:`DaflowError` into a one-line message and the exit code the
error carries (1 for a failed job, 2 for a usage mistake). Library code raises these and
never prints; messages name the file or frame at fault and say what to do.

Errors about an argument carry it as ``param``, by its Python name, and the message names it the same
way between backticks: ``UsageError("`tile_pad` must be zero or more pixels", param="tile_pad")``. A
caller of the library reads the names of the function it called; the CLI swaps its own flag in for each
marked name (``--tile-pad``) when it shows the message, and host adapters can point at the knob. The
marks make the swap exact: a parameter called ``frames`` is replaced, the word frames elsewhere in the
sentence is not. Library code never writes ``--flags``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class DaflowError(Exception):
    """Base class for every error daflow-vfx raises on purpose.

    ``param``: the parameter (or parameters) at fault, as named in the message; empty when the error
    is about a file or frame rather than an argument.
    """

    exit_code: int = 1

    def __init__(self, message: str = "", *, param: str | Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param or ())

    @property
    def param(self) -> str | None:
        """The first parameter at fault, or None."""
        return self.params[0] if self.params else None


class UsageError(DaflowError):
    """A command line, preset or argument that cannot be used as given."""

    exit_code = 2


class FrameSpecError(UsageError):
    """A frame spec such as ``1-100x5`` that does not parse."""


class ConfigError(UsageError):
    """A YAML preset or retime curve that is malformed or has unknown keys."""


class InputError(DaflowError):
    """A plate, vector pass or other input that cannot be read."""


class MissingInputError(InputError):
    """A file, folder or sequence pattern that matches nothing on disk."""


class MissingFramesError(InputError):
    """A gap in an image sequence."""

    def __init__(self, message: str, missing: list[int], *, param: str | Sequence[str] | None = None) -> None:
        super().__init__(message, param=param)
        self.missing = list(missing)


class CorruptFileError(InputError):
    """A truncated or corrupt image or video file."""


class FrameSizeError(InputError):
    """A frame whose size differs from the rest of the plate."""


class SequenceTooShortError(InputError):
    """A plate with fewer frames than flow needs (two)."""


class OutputError(DaflowError):
    """An output location that cannot be written."""


class Interrupted(DaflowError):
    """The job was stopped from outside (a farm's cancel, Ctrl-C) and cleaned up after itself.

    ``exit_code`` is the shell's convention for death by that signal (128 + its number: 143 for
    SIGTERM, 130 for SIGINT), so a farm manager still sees the task as cancelled rather than failed.
    """

    def __init__(self, message: str = "", *, signal_number: int = 15) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


class ModelError(DaflowError):
    """An unknown model name, or a model that cannot run as asked."""


class UnknownModelError(ModelError, UsageError):
    """A model name nobody registered: a usage mistake (exit 2), still a :class:`ModelError`."""


class WeightsError(ModelError):
    """A weights file that is missing, corrupt or does not match the model."""


class DeviceError(DaflowError):
    """A device that was asked for but is not available."""


class UnknownDeviceError(DeviceError, UsageError):
    """A device name that is no device at all (``tpu``): a usage mistake (exit 2), still a
    :class:`DeviceError`. A real device that is absent here (``cuda`` without a GPU) stays exit 1."""


def check_choice(value: str, choices: Iterable[str], param: str) -> str:
    """``value`` when it is one of ``choices``, else a :class:`UsageError` naming ``param``."""
    choices = tuple(choices)
    if value not in choices:
        raise UsageError(f"unknown `{param}` {value!r}; choose one of {', '.join(choices)}", param=param)
    return value
