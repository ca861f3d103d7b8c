"""daflow_vfx.hosts.blender: the Blender extension's logic that needs no Blender (runs without bpy)."""

from __future__ import annotations

import json
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx.errors import InputError, UsageError
from daflow_vfx.hosts import blender as hb
from tests.conftest import REPO_ROOT

PLUGIN = REPO_ROOT / "plugins" / "blender"


def test_manifest_has_every_required_field() -> None:
    manifest = tomllib.loads((PLUGIN / "blender_manifest.toml").read_text())
    assert hb.check_manifest(manifest) == []
    assert manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert manifest["permissions"]["files"]
    assert manifest["id"] == hb.EXTENSION_ID


def test_check_manifest_names_what_is_wrong() -> None:
    problems = hb.check_manifest({"id": "x", "license": ["GPL"], "type": "theme"})
    text = "; ".join(problems)
    assert "'tagline'" in text and "SPDX" in text and "add-on" in text and "permissions" in text


def test_build_extension_zip_has_manifest_at_root_and_no_caches(tmp_path: Path) -> None:
    target = hb.build_extension(tmp_path)
    assert target.name == "daflow_vfx-0.1.0.zip"
    names = zipfile.ZipFile(target).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temp file left


def test_build_extension_bundles_wheels_in_the_manifest(tmp_path: Path) -> None:
    wheel = tmp_path / "daflow_vfx-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("daflow_vfx/__init__.py", "")
    target = hb.build_extension(tmp_path / "dist", wheels=[wheel])
    archive = zipfile.ZipFile(target)
    manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    assert manifest["wheels"] == [f"./wheels/{wheel.name}"]
    assert f"wheels/{wheel.name}" in archive.namelist()
    assert manifest["permissions"]["files"]  # the table survived the edit
    with pytest.raises(InputError, match="not a wheel"):
        hb.build_extension(tmp_path / "dist", wheels=[tmp_path / "nope.whl"])


def test_cli_build_and_install_into_a_folder(tmp_path: Path) -> None:
    from daflow_vfx.cli import main

    runner = CliRunner()
    built = runner.invoke(main, ["blender", "build-extension", "-o", str(tmp_path / "dist")])
    assert built.exit_code == 0, built.output
    zip_path = tmp_path / "dist" / "daflow_vfx-0.1.0.zip"
    assert zip_path.is_file()
    done = runner.invoke(main, ["blender", "install", "--zip", str(zip_path), "--extensions-dir",
                                str(tmp_path / "repo")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "repo" / "daflow_vfx" / "blender_manifest.toml").is_file()
    again = runner.invoke(main, ["blender", "install", "--extensions-dir", str(tmp_path / "repo")])
    assert again.exit_code == 0, again.output  # builds its own zip; reinstalling replaces the folder


def _settings(action: str, tmp_path: Path, **kw) -> hb.ActionSettings:
    return hb.ActionSettings(action=action, input="/plates/sh010.####.exr", output_folder=str(tmp_path),
                             name="sh010", model="dis", device="cpu", **kw)


def test_action_args_for_each_action(tmp_path: Path) -> None:
    render = hb.action_args(_settings("render", tmp_path, frame_range="1001-1010"))
    assert render[:4] == ["render", "/plates/sh010.####.exr", "-o", str(tmp_path / "sh010.vectors.####.exr")]
    assert render[render.index("--layout") + 1] == "blender"
    assert render[render.index("--frames") + 1] == "1001-1010"
    retime = hb.action_args(_settings("retime", tmp_path, speed=0.25))
    assert retime[retime.index("--speed") + 1] == "0.25" and "--fps" not in retime
    retime_fps = hb.action_args(_settings("retime", tmp_path, target_fps="24:60"))
    assert retime_fps[retime_fps.index("--fps") + 1] == "24:60" and "--speed" not in retime_fps
    stab = hb.action_args(_settings("stabilize", tmp_path, mode="translation", smooth=1.5, crop="0.9",
                                    fps=25.0))
    assert stab[stab.index("--mode") + 1] == "translation"
    assert stab[stab.index("--smooth") + 1] == "1.5" and stab[stab.index("--crop") + 1] == "0.9"
    assert stab[stab.index("--fps") + 1] == "25.0"
    # vector detail: every action computes flow, so each passes it (float32 noise from Blender dropped)
    for action in ("render", "retime", "stabilize"):
        args = hb.action_args(_settings(action, tmp_path, detail=float(np.float32(0.3))))
        assert args[args.index("--detail") + 1] == "0.3", action
    assert render[render.index("--detail") + 1] == "1"


def test_action_args_reject_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no source"):
        hb.action_args(hb.ActionSettings(action="render", input=" ", output_folder=str(tmp_path)))
    with pytest.raises(UsageError, match="output folder is empty"):
        hb.action_args(hb.ActionSettings(action="render", input="a.####.png", output_folder=""))
    with pytest.raises(UsageError, match="device"):
        hb.action_args(_settings("render", tmp_path).__class__(
            action="render", input="a.####.png", output_folder=str(tmp_path), device="gpu9"))
    with pytest.raises(UsageError, match="speed"):
        hb.action_args(_settings("retime", tmp_path, speed=0.0))
    for detail in (0.0, 1.5, float("nan")):
        with pytest.raises(UsageError, match=r"vector detail .* in \(0, 1\]") as caught:
            hb.action_args(_settings("render", tmp_path, detail=detail))
        assert caught.value.param == "detail"


def test_resolve_command_prefers_the_python_preference(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    words = hb.resolve_command(python=str(venv), executable="/x/daflow-vfx")
    assert words[0] == str(venv / "bin" / "python") and words[1] == "-c" and "daflow_vfx.cli" in words[2]
    assert hb.resolve_command(executable="/x/daflow-vfx", env={}) == ["/x/daflow-vfx"]
    assert hb.resolve_command(env={"DAFLOW_VFX_EXECUTABLE": "rez env d -- daflow-vfx"})[-1] == "daflow-vfx"
    with pytest.raises(UsageError, match="no such Python"):
        hb.resolve_command(python=str(tmp_path / "missing"))


def test_python_command_runs_the_cli(tmp_path: Path) -> None:
    job = hb.BackgroundJob(argv=[*hb.python_command(sys.executable), "--version"]).start()
    result = job.wait(timeout=60)
    assert result.returncode == 0 and any("daflow-vfx" in line for line in result.lines)


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "fake.py"
    path.write_text("import sys, time\n" + body)
    return [sys.executable, str(path)]


def test_background_job_reports_progress_and_errors(tmp_path: Path) -> None:
    script = _script(tmp_path, "print('Progress: 40%', flush=True)\nprint('done')\n")
    ok = hb.BackgroundJob(argv=script).start()
    result = ok.wait(timeout=30)
    assert result.returncode == 0 and result.error is None and ok.progress == 100
    assert "Progress: 40%" in result.lines
    bad = hb.BackgroundJob(argv=_script(tmp_path, "print('Progress: 10%')\nprint('Error: x.0001.exr: "
                                        "truncated; re-render it')\nsys.exit(1)\n")).start()
    result = bad.wait(timeout=30)
    assert result.returncode == 1 and result.error == "Error: x.0001.exr: truncated; re-render it"
    assert bad.progress == 10


def test_background_job_poll_never_blocks_and_cancel_stops_it(tmp_path: Path) -> None:
    script = _script(tmp_path, "print('Progress: 5%', flush=True)\ntime.sleep(60)\n")
    job = hb.BackgroundJob(argv=script).start()
    t0 = time.monotonic()
    assert job.poll() is None
    assert time.monotonic() - t0 < 0.5
    deadline = time.monotonic() + 20
    while job.progress != 5 and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.05)
    assert job.progress == 5
    job.cancel()
    result = job.wait(timeout=10)
    assert result.cancelled and result.error is None and result.returncode != 0


def test_missing_executable_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot run"):
        hb.BackgroundJob(argv=[str(tmp_path / "nope")]).start()


def test_sequence_pattern_from_the_first_file() -> None:
    assert hb.sequence_pattern("/p/sh010_plate.1001.exr") == ("/p/sh010_plate.####.exr", 1001)
    assert hb.sequence_pattern("/p/v2/shot_0007.png") == ("/p/v2/shot_####.png", 7)
    assert hb.sequence_pattern("/p/still.png") is None


def test_stabilize_keys_invert_the_json_matrices() -> None:
    # output pixel q samples source pixel q + (4, -2) (y down), scaled 1.25 about nothing: compose by hand
    angle = np.deg2rad(10.0)
    forward = np.array([[1.25 * np.cos(angle), -1.25 * np.sin(angle), 7.0],
                        [1.25 * np.sin(angle), 1.25 * np.cos(angle), -3.0], [0, 0, 1]])
    document = {"width": 64, "height": 48, "frames": {"1002": np.linalg.inv(forward).tolist(),
                                                      "1001": np.eye(3).tolist()}}
    keys = hb.stabilize_keys(json.loads(json.dumps(document)))
    assert [k.frame for k in keys] == [1001, 1002]
    assert keys[0].offset_x == pytest.approx(0) and keys[0].scale == pytest.approx(1)
    key = keys[1]
    assert key.scale == pytest.approx(1.25)
    assert key.rotation == pytest.approx(-angle)  # clockwise with y down = counter-clockwise negative, y up
    centre = np.array([31.5, 23.5])
    moved = forward[:2, :2] @ centre + forward[:2, 2] - centre
    assert key.offset_x == pytest.approx(moved[0]) and key.offset_y == pytest.approx(-moved[1])


def test_install_with_a_blender_executable_runs_its_extension_command(tmp_path: Path) -> None:
    record = tmp_path / "argv.json"
    fake = tmp_path / "blender"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    zip_path = hb.build_extension(tmp_path / "dist")
    report = hb.install(zip_path, blender=str(fake))
    assert report.how == "blender"
    assert json.loads(record.read_text()) == ["--command", "extension", "install-file", "--repo",
                                              "user_default", "--enable", str(zip_path)]
    failing = tmp_path / "blender-fails"
    failing.write_text(f"#!{sys.executable}\nimport sys\nprint('Error: repo not found', file=sys.stderr)\n"
                       "sys.exit(1)\n")
    failing.chmod(0o755)
    from daflow_vfx.errors import OutputError

    with pytest.raises(OutputError, match="repo not found"):
        hb.install(zip_path, blender=str(failing))
