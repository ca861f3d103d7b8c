"""Host-application glue that needs no host: pure logic used by the DCC plugins in ``plugins/``.

Nothing here imports a host's Python module (``nuke``, ``bpy``): the plugins import these helpers,
not the other way round, so the logic is unit-tested in a plain interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from daflow_vfx.errors import OutputError

__all__ = ["shipped_folder"]


def shipped_folder(package: str, checkout: tuple[str, ...], *, what: str,
                   looks_right: Callable[[Path], bool]) -> Path:
    """A plugin folder that ships inside the package as ``daflow_vfx.<package>`` (pyproject's package-dir),
    or sits at ``checkout`` under the checkout's root in an editable install: the first candidate that
    ``looks_right``; :class:`OutputError` naming ``what`` when the installation lacks it."""
    import importlib.util

    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(f"daflow_vfx.{package}")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) for p in spec.submodule_search_locations)
    root = Path(__file__).resolve().parent.parent  # daflow_vfx/
    candidates += [root / package, root.parent.joinpath(*checkout)]
    for candidate in candidates:
        if looks_right(candidate):
            return candidate
    raise OutputError(f"{what} is missing from this installation ({root}); reinstall daflow-vfx")
