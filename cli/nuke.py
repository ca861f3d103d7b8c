"""`daflow-vfx nuke`: install the Nuke plugin; write Deadline jobs as the node's "Submit to Farm" does."""

from __future__ import annotations

import os

import click

from daflow_vfx.cli._common import DEVICE_HELP


@click.group("nuke")
def command() -> None:
    """The Nuke plugin: install it, find it, write farm jobs as the DAFlow node does."""


@command.command("install")
@click.option("--nuke-dir", default="~/.nuke", show_default=True, metavar="DIR",
              help="Nuke's user folder whose init.py gets the plugin lines.")
@click.option("--executable", default=None, metavar="PATH",
              help="daflow-vfx command the node runs (default: this installation's daflow-vfx).")
def install_command(nuke_dir: str, executable: str | None) -> None:
    """Add the DAFlow plugin to Nuke: writes nuke.pluginAddPath(...) into NUKE_DIR/init.py (idempotent)."""
    from daflow_vfx.hosts.nuke import default_executable, install

    report = install(nuke_dir, executable=executable or default_executable())
    state = "updated" if report.changed else "already up to date"
    click.echo(f"{report.init_path}: {state}; Nuke loads the DAFlow plugin from {report.plugin_path}")
    if report.executable:
        click.echo(f"The DAFlow node runs {report.executable} (override with the node's executable knob).")
    else:
        click.echo("daflow-vfx was not found on PATH: set the DAFlow node's executable knob.")


@command.command("path")
def path_command() -> None:
    """Print the plugin folder (for NUKE_PATH or nuke.pluginAddPath)."""
    from daflow_vfx.hosts.nuke import plugin_dir

    click.echo(str(plugin_dir()))


@command.command("deadline-job")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, metavar="OUTPUT_PATTERN",
              help="Output EXR pattern, e.g. /shots/sh010/vectors/sh010.####.exr.")
@click.option("--frames", required=True, metavar="RANGE", help="Contiguous frame range, e.g. 1001-1100.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=10, show_default=True,
              help="Frames per Deadline task.")
@click.option("--job-dir", required=True, metavar="DIR", help="Folder for the job and plugin info files.")
@click.option("--name", default=None, help="Deadline job name (default: daflow + output name).")
@click.option("--model", default="default", show_default=True, help="Flow estimator.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--layout", type=click.Choice(["nuke", "both"]), default="nuke", show_default=True,
              help="Vector channels (the DAFlow node reads the Nuke ones).")
@click.option("--input-colorspace", default="auto", show_default=True,
              help="auto, linear, srgb, rec709 or log.")
@click.option("--detail", type=float, default=1.0, show_default=True, metavar="FRACTION",
              help="Vector detail in (0, 1], passed to render --detail (the node's vector detail knob).")
@click.option("--executable", default=None, metavar="PATH",
              help="daflow-vfx on the render nodes (default: $DAFLOW_VFX_EXECUTABLE or daflow-vfx).")
@click.option("--pool", default=None, help="Deadline pool.")
@click.option("--group", default=None, help="Deadline group.")
@click.option("--priority", type=click.IntRange(0, 100), default=50, show_default=True)
@click.option("--submit", is_flag=True, default=False,
              help="Also run deadlinecommand on the two files (when it is installed).")
def deadline_job_command(input_path: str, output: str, frames: str, chunk_size: int, job_dir: str,
                         name: str | None, model: str, device: str, layout: str, input_colorspace: str,
                         detail: float, executable: str | None, pool: str | None, group: str | None,
                         priority: int, submit: bool) -> None:
    """Write Deadline CommandLine job files rendering INPUT's vectors in chunks."""
    from daflow_vfx.farm.deadline import submit as submit_job
    from daflow_vfx.farm.deadline import write_job_files
    from daflow_vfx.hosts.nuke import NodeSettings, deadline_job

    folder, file_name = os.path.split(output)
    settings = NodeSettings(
        input=input_path, output_folder=folder or ".", output_name=file_name, frame_range=frames,
        model=model, device=device, layout=layout, input_colorspace=input_colorspace, detail=detail,
        executable=executable or "", chunk_size=chunk_size, node_name="deadline-job",
    )
    job = deadline_job(settings, name=name or f"daflow {file_name}", pool=pool, group=group,
                       priority=priority)
    job_file, plugin_file = write_job_files(job, job_dir)
    click.echo(f"Wrote {job_file} and {plugin_file}")
    if submit:
        result = submit_job(job_file, plugin_file)
        click.echo(result.message)
