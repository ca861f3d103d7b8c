"""Fixtures for the Blender extension tests: real headless Blender (PyPI ``bpy``), imported lazily so the
rest of the suite never needs it; each test module calls ``pytest.importorskip("bpy")``."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest

REPO_MODULE = "daflow_tests"


@pytest.fixture(scope="session")
def extension(tmp_path_factory: pytest.TempPathFactory):
    """The extension built as a zip, installed into a temporary extension repository and enabled.

    Yields its Python module (``bl_ext.daflow_tests.daflow_vfx``); disabled and the repository removed at
    the end, so the user's Blender configuration is never touched.
    """
    import importlib

    import bpy

    from daflow_vfx.hosts.blender import build_extension, install

    root = tmp_path_factory.mktemp("blender-ext")
    zip_path = build_extension(root / "dist")
    repo = bpy.context.preferences.extensions.repos.new(
        name=REPO_MODULE, module=REPO_MODULE, custom_directory=str(root / "repo"), source="USER")
    install(zip_path, extensions_dir=repo.directory)
    module_name = f"bl_ext.{REPO_MODULE}.daflow_vfx"
    result = bpy.ops.preferences.addon_enable(module=module_name)
    assert result == {"FINISHED"}
    yield importlib.import_module(module_name)
    if module_name in bpy.context.preferences.addons:
        bpy.ops.preferences.addon_disable(module=module_name)
    bpy.context.preferences.extensions.repos.remove(repo)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_scene(request: pytest.FixtureRequest):
    """An empty scene for every test (the extension stays enabled)."""
    if "bpy" not in sys.modules:
        yield
        return
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    yield
    # a test that failed half-way must not leave processes behind
    ext = sys.modules.get(f"bl_ext.{REPO_MODULE}.daflow_vfx.core")
    if ext is not None:
        ext.cancel_all()


@pytest.fixture
def settings(extension, tmp_path: Path):
    """The scene's DAFlow settings, writing into tmp_path with the fast DIS model on the CPU."""
    import bpy

    s = bpy.context.scene.daflow
    s.output_folder = str(tmp_path / "out")
    s.model = "dis"
    s.device = "cpu"
    return s


@pytest.fixture
def fake_daflow(tmp_path: Path, extension):
    """Point the extension's executable preference at a tiny fake daflow-vfx (a Python script).

    ``fake_daflow(body)`` writes the script's body; the preference is restored afterwards.
    """
    import bpy

    prefs = bpy.context.preferences.addons[extension.__name__].preferences
    saved = prefs.executable

    def make(body: str) -> Path:
        script = tmp_path / "fake-daflow-vfx"
        script.write_text(f"#!{sys.executable}\nimport sys, time\n" + textwrap.dedent(body))
        script.chmod(0o755)
        prefs.executable = str(script)
        return script

    yield make
    prefs.executable = saved
