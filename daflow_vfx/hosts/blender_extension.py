"""The Blender extension as a package: its folder, its manifest, the installable zip, and installing it.

Part of :mod:`daflow_vfx.hosts.blender` (which re-exports these names); split out because building
and installing the zip is a different job from the panel logic the extension runs inside Blender.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daflow_vfx.errors import InputError, OutputError, UsageError
from daflow_vfx.hosts import shipped_folder

EXTENSION_ID = "daflow_vfx"
REQUIRED_MANIFEST_FIELDS = ("schema_version", "id", "name", "tagline", "version", "type", "maintainer",
                            "license", "blender_version_min")
# files the zip never carries
_SKIP_PARTS = {"__pycache__", ".git", ".DS_Store"}
_SKIP_SUFFIXES = {".pyc", ".pyo", ".blend1"}


# --------------------------------------------------------------------------------------------------
# the extension zip


def plugin_dir() -> Path:
    """The extension folder: ``daflow_vfx/plugins_blender`` in an installed package, or the checkout's
    ``plugins/blender`` (editable installs)."""
    return shipped_folder("plugins_blender", ("plugins", "blender"), what="the Blender extension folder",
                          looks_right=lambda d: (d / "blender_manifest.toml").is_file()
                          and (d / "__init__.py").is_file())


def read_manifest(folder: str | os.PathLike | None = None) -> dict:
    path = Path(folder or plugin_dir()) / "blender_manifest.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read the extension manifest ({exc}); reinstall daflow-vfx") \
            from None


def check_manifest(manifest: Mapping) -> list[str]:
    """Problems with a manifest (empty when Blender's ``extension validate`` would accept it)."""
    problems = [f"missing field {name!r}" for name in REQUIRED_MANIFEST_FIELDS if not manifest.get(name)]
    if manifest.get("type") not in (None, "add-on"):
        problems.append(f"type {manifest.get('type')!r} must be 'add-on'")
    for license_id in manifest.get("license", []) or []:
        if not str(license_id).startswith("SPDX:"):
            problems.append(f"license {license_id!r} must be an SPDX id such as 'SPDX:GPL-3.0-or-later'")
    if not isinstance(manifest.get("license", []), list):
        problems.append("license must be a list")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(manifest.get("id", "x"))):
        problems.append(f"id {manifest.get('id')!r} must be a Python identifier")
    files = (manifest.get("permissions") or {}).get("files")
    if not files:
        problems.append("[permissions] files needs a reason (the extension reads plates and writes frames)")
    return problems


def _manifest_with_wheels(text: str, wheels: Sequence[str]) -> str:
    """The manifest text with a ``wheels = [...]`` line listing ``./wheels/<name>``."""
    entries = ", ".join(f'"./wheels/{name}"' for name in wheels)
    line = f"wheels = [{entries}]"
    lines = [ln for ln in text.splitlines() if not re.match(r"\s*wheels\s*=", ln)]
    # top-level keys must come before the first [table]
    at = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    lines.insert(at, line)
    return "\n".join(lines) + "\n"


def build_extension(output_dir: str | os.PathLike, *, source: str | os.PathLike | None = None,
                    wheels: Sequence[str | os.PathLike] = ()) -> Path:
    """Write ``<output_dir>/<id>-<version>.zip``, installable with Blender's "Install from Disk".

    ``wheels`` (e.g. a daflow_vfx wheel) are bundled under ``wheels/`` and listed in the manifest, so the
    extension works with no external Python. The zip is written atomically.
    """
    folder = Path(source) if source is not None else plugin_dir()
    manifest_text = (folder / "blender_manifest.toml").read_text(encoding="utf-8")
    manifest = tomllib.loads(manifest_text)
    problems = check_manifest(manifest)
    if problems:
        raise InputError(f"{folder / 'blender_manifest.toml'}: {'; '.join(problems)}; fix the manifest")
    wheel_paths = [Path(w) for w in wheels]
    for wheel in wheel_paths:
        if not wheel.is_file() or wheel.suffix != ".whl":
            raise InputError(f"{wheel}: not a wheel file; build one with `pip wheel . -w DIR`")
    if wheel_paths:
        manifest_text = _manifest_with_wheels(manifest_text, [w.name for w in wheel_paths])
    out = Path(os.path.expanduser(os.fspath(output_dir)))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror or exc}); pass another "
                          "-o") from None
    target = out / f"{manifest['id']}-{manifest['version']}.zip"
    tmp = out / f".{target.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}"
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("blender_manifest.toml", manifest_text)
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder)
                if (path.is_dir() or rel.as_posix() == "blender_manifest.toml"
                        or _SKIP_PARTS.intersection(rel.parts) or path.suffix in _SKIP_SUFFIXES
                        or rel.parts[0] == "wheels"):
                    continue
                archive.write(path, rel.as_posix())
            for wheel in wheel_paths:
                archive.write(wheel, f"wheels/{wheel.name}")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{target}: cannot write the extension zip ({exc.strerror or exc})") from None
    return target


# --------------------------------------------------------------------------------------------------
# installation


@dataclass(frozen=True, kw_only=True)
class InstallReport:
    zip_path: Path
    how: str  # "blender" (a Blender executable), "bpy" (this Python's bpy) or "folder" (unzipped)
    location: str


def install(zip_path: str | os.PathLike, *, blender: str | None = None,
            extensions_dir: str | os.PathLike | None = None, repo: str = "user_default",
            enable: bool = True) -> InstallReport:
    """Install the extension zip: with a Blender executable (``blender --command extension install-file``),
    else unzipped into ``extensions_dir`` when given, else with this Python's ``bpy``."""
    zip_path = Path(zip_path)
    if not zipfile.is_zipfile(zip_path):
        raise InputError(f"{zip_path}: not an extension zip; build it with "
                         "`daflow-vfx blender build-extension`")
    if blender:
        # no --factory-startup: the install must land in (and be enabled in) the user's own preferences
        argv = [blender, "--command", "extension", "install-file", "--repo", repo]
        if enable:
            argv.append("--enable")
        argv.append(str(zip_path))
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UsageError(f"cannot run {blender!r} ({exc}); pass the Blender executable with --blender") \
                from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            raise OutputError(f"{blender}: extension install failed: {last[0]}")
        return InstallReport(zip_path=zip_path, how="blender", location=f"{blender} ({repo})")
    if extensions_dir is not None:
        manifest = tomllib.loads(zipfile.ZipFile(zip_path).read("blender_manifest.toml").decode("utf-8"))
        target = Path(os.path.expanduser(os.fspath(extensions_dir))) / manifest["id"]
        _unzip_atomic(zip_path, target)
        return InstallReport(zip_path=zip_path, how="folder", location=str(target))
    try:
        import bpy  # noqa: F401
    except ImportError:
        raise UsageError("no Blender to install into: pass --blender PATH (the Blender executable), "
                         "--extensions-dir DIR, or run with a Python that has bpy") from None
    location = install_with_bpy(zip_path, repo=repo, enable=enable)
    return InstallReport(zip_path=zip_path, how="bpy", location=location)


def install_with_bpy(zip_path: str | os.PathLike, *, repo: str = "user_default", enable: bool = True) -> str:
    """Install with ``bpy.ops.extensions.package_install_files`` (Blender 4.2+), falling back to unzipping
    into the repository's folder."""
    import bpy

    repos = {r.module: r for r in bpy.context.preferences.extensions.repos}
    target_repo = repos.get(repo)
    if target_repo is None:
        raise UsageError(f"Blender has no extension repository {repo!r}; choose one of {', '.join(repos)}")
    try:
        result = bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo=repo,
                                                          enable_on_install=enable, overwrite=True)
    except (RuntimeError, AttributeError) as exc:
        result = {f"unavailable: {exc}"}
    folder = Path(target_repo.directory)
    if "FINISHED" not in result:
        manifest = tomllib.loads(zipfile.ZipFile(zip_path).read("blender_manifest.toml").decode("utf-8"))
        _unzip_atomic(Path(zip_path), folder / manifest["id"])
        if enable:
            bpy.ops.preferences.addon_enable(module=f"bl_ext.{repo}.{manifest['id']}")
    return str(folder)


def _unzip_atomic(zip_path: Path, target: Path) -> None:
    import shutil

    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{target}: cannot install the extension there ({exc.strerror or exc})") from None


def current_python() -> str:
    """This interpreter (what `daflow-vfx blender install` records as the extension's Python)."""
    return sys.executable
