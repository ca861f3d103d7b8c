"""Small YAML documents the user writes (CLI presets, retime curves), read with one-line errors."""

from __future__ import annotations

from typing import Any

from daflow_vfx.errors import ConfigError, MissingInputError

__all__ = ["read_yaml"]


def read_yaml(path: str, what: str, *, param: str | None = None) -> Any:
    """The YAML document in ``path``, a ``what`` (``"preset"``, ``"curve"``) for messages.

    No such file is a :class:`MissingInputError` (naming ``param``, the argument that gave the path);
    an unreadable file or invalid YAML is a :class:`ConfigError` with the line of the mistake.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except FileNotFoundError:
        hint = f"; check the `{param}` path" if param else ""
        raise MissingInputError(f"{path}: no such {what} file{hint}", param=param) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8); a {what} is YAML text") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}; fix the {what}") from None
