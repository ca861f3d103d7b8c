"""`daflow-vfx blender`: build the Blender extension zip, install it, find it."""

from __future__ import annotations

import click


@click.group("blender")
def command() -> None:
    """The Blender extension: build the installable zip, install it into Blender, find its folder."""


@command.command("build-extension")
@click.option("-o", "--output", "output_dir", required=True, metavar="DIR",
              help="Folder for the zip (daflow_vfx-<version>.zip).")
@click.option("--wheel", "wheels", multiple=True, metavar="WHL",
              help="Bundle this wheel (repeatable), e.g. a daflow_vfx wheel from `pip wheel . -w dist`; "
              "without wheels the extension runs the external Python set in its preferences.")
def build_command(output_dir: str, wheels: tuple[str, ...]) -> None:
    """Write the extension zip (Blender: Preferences > Get Extensions > Install from Disk)."""
    from daflow_vfx.hosts.blender import build_extension

    target = build_extension(output_dir, wheels=wheels)
    click.echo(f"Wrote {target}")


@command.command("install")
@click.option("--blender", "blender", default=None, metavar="PATH",
              help="Blender executable to install into (blender --command extension install-file).")
@click.option("--extensions-dir", default=None, metavar="DIR",
              help="Instead: unzip into this extension repository folder (e.g. "
              "~/.config/blender/4.2/extensions/user_default).")
@click.option("--repo", default="user_default", show_default=True, help="Blender extension repository.")
@click.option("--zip", "zip_path", default=None, metavar="ZIP",
              help="An already built zip (default: build one into a temporary folder).")
def install_command(blender: str | None, extensions_dir: str | None, repo: str, zip_path: str | None) -> None:
    """Install (and enable) the extension: into --blender PATH, --extensions-dir DIR, or this Python's bpy."""
    import tempfile

    from daflow_vfx.hosts.blender import build_extension, install

    with tempfile.TemporaryDirectory(prefix="daflow-blender-") as folder:
        built = zip_path or str(build_extension(folder))
        report = install(built, blender=blender, extensions_dir=extensions_dir, repo=repo)
    click.echo(f"Installed the DAFlow extension ({report.how}): {report.location}")
    click.echo("In Blender: set Preferences > Add-ons > DAFlow VFX > Python to the interpreter or venv that "
               "has daflow-vfx (unless its wheels are bundled).")


@command.command("path")
def path_command() -> None:
    """Print the extension's source folder."""
    from daflow_vfx.hosts.blender import plugin_dir

    click.echo(str(plugin_dir()))
