"""`daflow-vfx flamenco`: the Flamenco Manager's daflow-vfx job type."""

from __future__ import annotations

import click


@click.group("flamenco")
def command() -> None:
    """Flamenco: install the job type that `daflow-vfx submit --farm flamenco` submits jobs of."""


@command.command("install-job-type")
@click.argument("folder", metavar="DIR")
def install_command(folder: str) -> None:
    """Write the daflow-vfx job type (daflow-vfx.js) into DIR, the Manager's scripts/ folder."""
    from daflow_vfx.farm.flamenco import install_job_type

    path = install_job_type(folder)
    click.echo(f"Wrote {path}; restart Flamenco Manager to load the daflow-vfx job type")
