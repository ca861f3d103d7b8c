"""The installed `daflow-vfx` console script, run as a farm would: a real subprocess, stdout not a TTY."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import translated_frames, write_sequence


def daflow_vfx_command() -> str:
    # the script next to this interpreter first (a venv that is not activated), then PATH
    beside = Path(sys.executable).parent / "daflow-vfx"
    found = str(beside) if beside.exists() else shutil.which("daflow-vfx")
    if found is None:
        pytest.fail("the daflow-vfx console script is not installed; run `pip install -e .`")
    return found


@pytest.mark.slow
def test_installed_command_renders(tmp_path) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 32, 48, dx=1, dy=0))
    exe = daflow_vfx_command()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert "daflow-vfx" in version.stdout
    command = [exe, "render", plate, "-o", str(tmp_path / "out" / "v.####.exr"), "--model", "dis",
               "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Progress: 100%" in result.stdout.splitlines()
    assert sorted(os.listdir(tmp_path / "out")) == ["v.1001.exr", "v.1002.exr", "v.1003.exr"]


def test_installed_command_clean_error(tmp_path) -> None:
    result = subprocess.run([daflow_vfx_command(), "render", str(tmp_path / "none.####.exr"), "-o",
                             str(tmp_path / "v.####.exr")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout
