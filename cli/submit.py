"""`daflow-vfx submit`: render, retime or stabilize on Deadline, OpenCue or Flamenco, chunk by chunk.

The job is written as the command itself, after the farm's options: ``daflow-vfx submit --farm opencue
--chunk-size 20 render plate.####.exr -o vec/sh010.####.exr --frames 1001-1100 --model dis``. Its options
are checked by that command's own parser here, before anything is written or a farm is contacted.
"""

from __future__ import annotations

import click

from daflow_vfx.errors import UsageError


def _split(command: click.Command, words: list[str]) -> tuple[str, str, list[str], str | None]:
    """(INPUT, OUTPUT, other options, --frames) out of ``words``, using ``command``'s own option table so
    an option's value is never taken for the input."""
    options = {opt: param for param in command.params if isinstance(param, click.Option)
               for opt in (*param.opts, *param.secondary_opts)}
    positional: list[str] = []
    rest: list[str] = []
    output = frames = None
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, attached = word.partition("=") if word.startswith("--") else (word, "", "")
        if word.startswith("-o") and word != "-o" and "-o" in options:  # -oPATH
            name, eq, attached = "-o", "=", word[2:]
        param = options.get(name)
        if word == "--" or param is None:
            positional.extend(words[i + 1:] if word == "--" else [word])
            i = len(words) if word == "--" else i + 1
            continue
        takes_value = not (param.is_flag or param.count)
        value = attached if eq else (words[i + 1] if takes_value and i + 1 < len(words) else None)
        step = 1 if eq or not takes_value else 2
        if param.name == "output":
            output = value
        elif param.name == "frames":
            frames = value
        elif param.name != "skip_existing":  # every render task sets it itself
            rest.extend(words[i:i + step])
        i += step
    return positional[0], output or "", rest, frames


def _absolute(path: str) -> str:
    """A relative path made absolute here, since a task's working folder on a render node is the farm's;
    a path that is absolute for Windows or POSIX (C:/..., //server/..., /mnt/...) stays as written."""
    import os
    import re

    if not path or re.match(r"^([A-Za-z]:[\\/]|[\\/])", path):
        return path
    return os.path.abspath(os.path.expanduser(path))


@click.command("submit", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--farm", required=True, metavar="deadline|opencue|flamenco", help="The render farm.")
@click.option("--frames", default=None, metavar="RANGE",
              help="Contiguous frame range, e.g. 1001-1100 (default: the command's own --frames).")
@click.option("--chunk-size", type=int, default=10, show_default=True,
              help="Frames per task (stabilize always runs as one task: its camera path spans the shot).")
@click.option("--name", default="", help="Job name (default: daflow COMMAND OUTPUT-NAME).")
@click.option("--priority", type=int, default=50, show_default=True, help="0-100.")
@click.option("--pool", default=None, help="Deadline pool; OpenCue layer tags; Flamenco worker tag.")
@click.option("--group", default=None, help="Deadline group; OpenCue service.")
@click.option("--show", default=None, help="OpenCue show.")
@click.option("--after", "depends_on", default=None, metavar="JOB",
              help="Wait for this job: a Deadline job id or an OpenCue job name (Flamenco has none).")
@click.option("--executable", default=None, metavar="COMMAND",
              help="daflow-vfx on the render nodes (default: $DAFLOW_VFX_EXECUTABLE or daflow-vfx).")
@click.option("--dry-run", is_flag=True, default=False,
              help="Write the farm's job description and print where; contact no farm.")
@click.option("--job-dir", default=None, metavar="DIR",
              help="Folder for job files (default: OUTPUT's folder/farm).")
@click.option("--deadlinecommand", default=None, metavar="PATH", help="Deadline's client (default: PATH).")
@click.option("--cuebot", default=None, metavar="HOST[:PORT]",
              help="Cuebot (default: $CUEBOT_HOSTS, then PyCue's configuration).")
@click.option("--manager", default=None, metavar="URL",
              help="Flamenco Manager (default: $FLAMENCO_MANAGER, then http://localhost:8080).")
@click.argument("job_args", nargs=-1, type=click.UNPROCESSED, metavar="COMMAND INPUT [OPTIONS]...")
@click.pass_context
def command(ctx: click.Context, farm: str, frames: str | None, chunk_size: int, name: str, priority: int,
            pool: str | None, group: str | None, show: str | None, depends_on: str | None,
            executable: str | None, dry_run: bool, job_dir: str | None, deadlinecommand: str | None,
            cuebot: str | None, manager: str | None, job_args: tuple[str, ...]) -> None:
    """Submit COMMAND (render, retime or stabilize) with its INPUT and options to a farm, one task per
    chunk; each task runs `daflow-vfx COMMAND ... --frames FIRST-LAST` (render adds --skip-existing, so a
    re-queued task resumes)."""
    from daflow_vfx.cli._common import DaflowClickError, option_flags
    from daflow_vfx.errors import DaflowError, check_choice
    from daflow_vfx.farm.job import COMMANDS, FARMS, FarmJob
    from daflow_vfx.farm.submit import SubmitOptions, submit
    from daflow_vfx.hosts.nuke import resolve_executable

    check_choice(farm, FARMS, "farm")  # before the job: an unknown farm is the first thing to hear about
    if not job_args:
        raise UsageError(f"no job: give the command and its options, e.g. `daflow-vfx submit --farm {farm} "
                         "render plate.####.exr -o vectors/sh010.####.exr --frames 1001-1100`")
    job_command = check_choice(job_args[0], COMMANDS, "command")
    target = ctx.parent.command.get_command(ctx.parent, job_command) if ctx.parent else None
    assert isinstance(target, click.Command)
    try:  # the command's own parser: a typo in its options fails here, as it would on every task
        target.make_context(job_command, list(job_args[1:]), parent=ctx).close()
    except click.ClickException as exc:
        raise UsageError(f"{job_command}: {exc.format_message()}") from None
    input_path, output, options, own_frames = _split(target, list(job_args[1:]))
    if frames and own_frames and frames != own_frames:
        raise UsageError(f"two frame ranges: `frames` {frames} and the command's {own_frames}; give one",
                         param="frames")
    if not (frames or own_frames):
        raise UsageError("a farm job needs its frame range, e.g. `frames` 1001-1100", param="frames")
    try:
        job = FarmJob(command=job_command, input=_absolute(input_path), output=_absolute(output),
                      options=options, frames=frames or own_frames, chunk_size=chunk_size, name=name,
                      priority=priority, pool=pool, group=group, show=show, depends_on=depends_on,
                      executable=tuple(resolve_executable(executable or "")))
    except DaflowError as error:  # the job's own options (`output`, ...) are shown as the command's flags
        raise DaflowClickError(error, {**option_flags(target), **option_flags(ctx.command)}) from None
    report = submit(job, SubmitOptions(farm=farm, dry_run=dry_run, job_dir=job_dir,
                                       deadlinecommand=deadlinecommand, cuebot=cuebot, manager=manager))
    click.echo(report.message)
