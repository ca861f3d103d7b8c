"""The ``daflow-vfx`` command line (installed as ``daflow_vfx.cli``; the source lives in ``cli/``).

Each command is thin: options -> a typed job dataclass -> a pure function in :mod:`daflow_vfx`.
:class:`~daflow_vfx.errors.DaflowError` becomes a one-line ``Error:`` message and its exit code
(1 failure, 2 usage); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import click

from daflow_vfx import __version__
from daflow_vfx.cli._common import DaflowGroup, setup_logging
from daflow_vfx.hostalloc import tune_host_allocator

__all__ = ["main"]


@click.group(cls=DaflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="daflow-vfx")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def main(verbose: int, quiet: bool) -> None:
    """Optical flow for VFX: motion-vector EXR passes for Nuke and Blender from any plate."""
    setup_logging(-1 if quiet else verbose)
    # The command is an application: it may set process-wide allocator options (the library never
    # does on import). Large CPU tensors otherwise cost a page-faulting mmap each; see hostalloc.
    tune_host_allocator()


def _register() -> None:
    from daflow_vfx.cli import (
        bench,
        blender,
        degrade,
        demo,
        flamenco,
        flow,
        info,
        models,
        nuke,
        propagate,
        render,
        retime,
        stabilize,
        submit,
        train,
    )

    for module in (render, flow, info, models, demo, degrade, train, bench, retime, stabilize, propagate,
                   nuke, blender, submit, flamenco):
        main.add_command(module.command)


_register()
