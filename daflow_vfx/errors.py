"""Every error daflow-vfx raises on purpose.

The CLI turns a :class:`DaflowError` into a one-line message and the exit code the
error carries (1 for a failed job, 2 for a usage mistake). Library code raises these and
never prints; messages name the file or frame at fault and say what to do.
"""

from __future__ import annotations


class DaflowError(Exception):
    """Base class for every error daflow-vfx raises on purpose."""

    exit_code: int = 1


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

    def __init__(self, message: str, missing: list[int]) -> None:
        super().__init__(message)
        self.missing = list(missing)


class CorruptFileError(InputError):
    """A truncated or corrupt image or video file."""


class FrameSizeError(InputError):
    """A frame whose size differs from the rest of the plate."""


class SequenceTooShortError(InputError):
    """A plate with fewer frames than flow needs (two)."""


class OutputError(DaflowError):
    """An output location that cannot be written."""


class ModelError(DaflowError):
    """An unknown model name, or a model that cannot run as asked."""


class WeightsError(ModelError):
    """A weights file that is missing, corrupt or does not match the model."""


class DeviceError(DaflowError):
    """A device that was asked for but is not available."""
