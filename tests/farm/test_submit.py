"""`daflow-vfx submit` for every farm: one job description, the farm's files, and one Error line for bad
settings with nothing written."""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path

import pytest

from daflow_vfx.farm.deadline import parse_info
from daflow_vfx.farm.job import FarmJob, chunks, task_arguments
from tests.farm.conftest import PLATE


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_chunks_cover_the_range_and_stabilize_is_one_task() -> None:
    render = FarmJob(command="render", input="p.####.exr", output="/v/o.####.exr", frames="1001-1025",
                     chunk_size=10)
    assert chunks(render) == [(1001, 1010), (1011, 1020), (1021, 1025)]
    stabilize = FarmJob(command="stabilize", input="p.####.exr", output="/s/o.####.exr", frames="1-40",
                        chunk_size=10)
    assert chunks(stabilize) == [(1, 40)]
    assert "--skip-existing" in task_arguments(render, "X") and "--skip-existing" not in \
        task_arguments(stabilize, "X")


def test_deadline_dry_run_writes_the_commandline_job(submit, tmp_path: Path) -> None:
    result = submit("deadline", "--dry-run", "--pool", "gpu", "--after", "64f0c0ffee", "--chunk-size", "8")
    assert result.exit_code == 0, result.output
    job_file = next((tmp_path / "vec" / "farm").glob("*.job_info.job"))
    info = parse_info(job_file.read_text())
    assert (info["Frames"], info["ChunkSize"], info["Pool"], info["JobDependencies"]) == \
        ("1001-1025", "8", "gpu", "64f0c0ffee")
    plugin = parse_info(job_file.with_name(job_file.name.replace("job_info", "plugin_info")).read_text())
    args = shlex.split(plugin["Arguments"])
    assert args[:2] == ["render", PLATE]
    assert args[args.index("--frames") + 1] == "<STARTFRAME>-<ENDFRAME>"
    assert "--skip-existing" in args and "dis" in args
    assert str(job_file) in result.output


def test_deadline_submits_through_deadlinecommand(submit, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "deadlinecommand"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "Result=Success"\necho "JobID=64f0c0ffee"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    result = submit("deadline", "--deadlinecommand", str(fake))
    assert result.exit_code == 0, result.output
    assert "Submitted Deadline job 64f0c0ffee" in result.output


def test_retime_job_keeps_its_options_and_output_frames(submit, tmp_path: Path) -> None:
    out = tmp_path / "retime" / "sh010.####.exr"
    result = submit("flamenco", "--dry-run", "--frames", "1-48",
                    job=["retime", PLATE, "--speed", "0.5", "-o", str(out), "--method", "blend"])
    assert result.exit_code == 0, result.output
    document = json.loads(next((out.parent / "farm").glob("*.flamenco.json")).read_text())
    settings = document["settings"]
    assert (settings["command"], settings["input"], settings["output"], settings["frames"]) == \
        ("retime", PLATE, str(out), "1-48")
    assert json.loads(settings["options"]) == ["--speed", "0.5", "--method", "blend"]
    assert settings["skip_existing"] is False


@pytest.mark.parametrize(("farm", "options", "expected"), [
    ("pbs", [], "unknown --farm 'pbs'"),
    ("deadline", ["--chunk-size", "0"], "--chunk-size 0 must be 1 or more"),
    ("deadline", ["--deadlinecommand", "/nowhere/deadlinecommand"], "deadlinecommand not found"),
    ("opencue", ["--cuebot", "127.0.0.1:9"], "no Cuebot answered at 127.0.0.1:9"),
    ("flamenco", ["--manager", "http://127.0.0.1:9"], "Manager at http://127.0.0.1:9 is not answering"),
    ("flamenco", ["--dry-run", "--after", "job1"], "Flamenco has no job dependencies"),
])
def test_bad_farm_settings_are_one_error_line_and_write_nothing(submit, tmp_path: Path, farm, options,
                                                                 expected) -> None:
    if farm == "opencue":
        pytest.importorskip("outline")
    result = submit(farm, *options)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], result.output
    assert _files(tmp_path) == []


def test_job_options_are_checked_by_the_command_before_anything_is_written(submit, tmp_path: Path) -> None:
    result = submit("deadline", "--dry-run", job=["render", PLATE, "-o", str(tmp_path / "v.####.exr"),
                                                  "--frames", "1-9", "--tile", "not-a-number"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: render:") and "--tile" in result.output
    assert _files(tmp_path) == []


def test_a_dry_run_contacts_no_farm(submit, tmp_path: Path, monkeypatch) -> None:
    # every farm's address points at a port nothing listens on: a contact attempt would fail the command
    monkeypatch.setenv("CUEBOT_HOSTS", "127.0.0.1:9")
    monkeypatch.setenv("FLAMENCO_MANAGER", "http://127.0.0.1:9")
    monkeypatch.setenv("PATH", os.defpath)
    farms = ["deadline", "flamenco"] + (["opencue"] if _has_outline() else [])
    for farm in farms:
        result = submit(farm, "--dry-run")
        assert result.exit_code == 0, (farm, result.output)
        assert result.output.startswith("Dry run: wrote")


def _has_outline() -> bool:
    try:
        import outline  # noqa: F401
    except ImportError:
        return False
    return True


def test_farm_modules_import_no_farm_library() -> None:
    import subprocess
    import sys

    code = ("import sys, daflow_vfx, daflow_vfx.farm.submit, daflow_vfx.farm.opencue, "
            "daflow_vfx.farm.flamenco; "
            "print(sorted(m for m in ('outline', 'opencue', 'grpc', 'nuke', 'bpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_plugins_submit_arguments_make_valid_jobs(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from daflow_vfx.cli import main
    from daflow_vfx.hosts import blender, nuke

    node = nuke.NodeSettings(input=PLATE, output_folder=str(tmp_path / "vec"), output_name="sh.####.exr",
                             frame_range="1001-1010", model="dis", chunk_size=4, skip_existing=True)
    panel = blender.ActionSettings(action="stabilize", input=PLATE, output_folder=str(tmp_path / "stab"),
                                   name="sh010", frame_range="1001-1010", model="dis", fps=24.0)
    runs = [
        nuke.submit_args(node, "deadline", name="daflow comp DAFlow1", job_dir=str(tmp_path / "a"),
                         dry_run=True),
        blender.submit_args(panel, "deadline", chunk_size=4, job_dir=str(tmp_path / "b"), dry_run=True),
    ]
    chunk_sizes = []
    for args, folder in zip(runs, ("a", "b"), strict=True):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        info = parse_info(next((tmp_path / folder).glob("*.job_info.job")).read_text())
        assert info["Frames"] == "1001-1010"
        chunk_sizes.append(info["ChunkSize"])
    assert chunk_sizes == ["4", "10"]  # stabilize: one task over the whole range


def test_a_chunked_job_needs_an_image_sequence_output(submit, tmp_path: Path) -> None:
    result = submit("deadline", "--dry-run", job=["retime", PLATE, "--speed", "0.5", "-o",
                                                  str(tmp_path / "slow.mp4"), "--frames", "1-48"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: --output ") and "has no frame token" in result.output
    assert _files(tmp_path) == []


def test_job_options_keep_flags_and_attached_values(submit, tmp_path: Path) -> None:
    out = tmp_path / "vec" / "sh010.####.exr"
    result = submit("flamenco", "--dry-run", job=["render", "--float", f"--output={out}", "--tile-pad=8",
                                                  "--skip-existing", PLATE, "--frames=1-4", "--iters", "2"])
    assert result.exit_code == 0, result.output
    settings = json.loads(next((out.parent / "farm").glob("*.json")).read_text())["settings"]
    assert (settings["input"], settings["output"], settings["frames"]) == (PLATE, str(out), "1-4")
    assert json.loads(settings["options"]) == ["--float", "--tile-pad=8", "--iters", "2"]
