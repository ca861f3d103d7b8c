"""Deadline CommandLine job files, submission through a fake deadlinecommand, and `daflow-vfx nuke`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.errors import DaflowError, UsageError
from daflow_vfx.farm import deadline
from daflow_vfx.farm.deadline import DeadlineJob, parse_info
from daflow_vfx.hosts.nuke import NodeSettings, deadline_job


def node_settings(tmp_path: Path, **overrides) -> NodeSettings:
    values = dict(input="/plates/sh 010/sh010.####.exr", output_folder=str(tmp_path / "vec"),
                  output_name="sh010.####.exr", node_name="DAFlow1", frame_range="1001-1100", model="dis",
                  device="cuda", chunk_size=8, executable="/opt/daflow/bin/daflow-vfx")
    values.update(overrides)
    return NodeSettings(**values)


def test_job_files_have_the_deadline_keys(tmp_path) -> None:
    job = deadline_job(node_settings(tmp_path), name="daflow sh010", pool="gpu", priority=70)
    job_file, plugin_file = deadline.write_job_files(job, tmp_path / "jobs")
    info = parse_info(job_file.read_text())
    plugin = parse_info(plugin_file.read_text())
    assert info["Plugin"] == "CommandLine"
    assert info["Name"] == "daflow sh010"
    assert info["Frames"] == "1001-1100"
    assert info["ChunkSize"] == "8"
    assert info["Pool"] == "gpu" and info["Priority"] == "70"
    assert info["OutputDirectory0"] == str(tmp_path / "vec")
    assert info["OutputFilename0"] == "sh010.####.exr"
    assert plugin["Executable"] == "/opt/daflow/bin/daflow-vfx"
    assert plugin["ShellExecute"] == "False"
    args = plugin["Arguments"]
    assert args.startswith('render "/plates/sh 010/sh010.####.exr" -o ')  # a path with a space is quoted
    assert "--frames <STARTFRAME>-<ENDFRAME>" in args
    assert "--model dis" in args and "--device cuda" in args and "--layout nuke" in args
    assert job_file.name == "daflow_sh010.job_info.job" and plugin_file.name == "daflow_sh010.plugin_info.job"
    assert sorted(os.listdir(tmp_path / "jobs")) == [job_file.name, plugin_file.name]  # no temp files


def test_wrapper_executable_goes_into_the_arguments(tmp_path) -> None:
    job = deadline_job(node_settings(tmp_path, executable="rez env daflow -- daflow-vfx"))
    plugin = deadline.plugin_info(job)
    assert plugin["Executable"] == "rez"
    assert plugin["Arguments"].startswith("env daflow -- daflow-vfx render ")


def test_farm_needs_a_contiguous_range(tmp_path) -> None:
    with pytest.raises(UsageError, match="contiguous"):
        deadline_job(node_settings(tmp_path, frame_range="1001-1100x2"))


def test_job_validation() -> None:
    base = dict(name="j", frames="1-10", executable="daflow-vfx", arguments=["render"])
    with pytest.raises(UsageError, match="chunk size"):
        DeadlineJob(**base, chunk_size=0)
    with pytest.raises(UsageError, match="line break"):
        DeadlineJob(**{**base, "arguments": ["render", "a\nb"]})
    with pytest.raises(UsageError, match="frame list is empty"):
        DeadlineJob(**{**base, "frames": " "})
    assert deadline.quote_argument("") == '""'
    assert deadline.quote_argument('say "hi"') == '"say \\"hi\\""'
    env = deadline.job_info(DeadlineJob(**base, environment={"OCIO": "/cfg.ocio"}))
    assert env["EnvironmentKeyValue0"] == "OCIO=/cfg.ocio"


def fake_deadlinecommand(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "deadlinecommand"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_submit_runs_deadlinecommand_from_path(tmp_path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    fake_deadlinecommand(bin_dir, 'echo "$1" > "$(dirname "$0")/args.txt"\n'
                         'echo "$2" >> "$(dirname "$0")/args.txt"\n'
                         'echo "Submitting to Repository: /repo"\necho "Result=Success"\n'
                         'echo "JobID=64f0c0ffee"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = deadline.submit(tmp_path / "a.job_info.job", tmp_path / "a.plugin_info.job")
    assert result.submitted and result.job_id == "64f0c0ffee"
    assert "64f0c0ffee" in result.message
    assert (bin_dir / "args.txt").read_text().split() == [str(tmp_path / "a.job_info.job"),
                                                        str(tmp_path / "a.plugin_info.job")]


def test_submit_failure_is_one_clear_error(tmp_path) -> None:
    fake = fake_deadlinecommand(tmp_path / "bin",
                                'echo "Result=Fail"\necho "Error: pool gpu does not exist"\nexit 1\n')
    expected = r"deadlinecommand failed \(exit 1\): Error: pool gpu does not exist"
    with pytest.raises(DaflowError, match=expected):
        deadline.submit("j.job", "p.job", deadlinecommand=str(fake))


def test_submit_without_deadline_explains_how(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("DEADLINE_PATH", raising=False)
    result = deadline.submit("/jobs/a.job_info.job", "/jobs/a.plugin_info.job")
    assert not result.submitted and result.job_id is None
    assert "deadlinecommand /jobs/a.job_info.job /jobs/a.plugin_info.job" in result.message
    assert "\n" not in result.message


def test_cli_deadline_job(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("DEADLINE_PATH", raising=False)
    out = str(tmp_path / "vec" / "sh010.####.exr")
    result = CliRunner().invoke(main, ["nuke", "deadline-job", "/plates/sh010.####.exr", "-o", out,
                                       "--frames",
                                       "1001-1020", "--chunk-size", "5", "--job-dir", str(tmp_path / "jobs"),
                                       "--executable", "/opt/bin/daflow-vfx", "--submit"])
    assert result.exit_code == 0, result.output
    assert "deadlinecommand not found" in result.output
    (job_file,) = (tmp_path / "jobs").glob("*.job_info.job")
    (plugin_file,) = (tmp_path / "jobs").glob("*.plugin_info.job")
    assert parse_info(job_file.read_text())["ChunkSize"] == "5"
    assert parse_info(plugin_file.read_text())["Arguments"] == (
        f"render /plates/sh010.####.exr -o {out} --frames <STARTFRAME>-<ENDFRAME> --layout nuke "
        "--model default --device auto --input-colorspace auto --detail 1")


def test_cli_deadline_job_passes_the_vector_detail(tmp_path) -> None:
    args = ["nuke", "deadline-job", "/plates/sh010.####.exr", "-o", str(tmp_path / "v.####.exr"), "--frames",
            "1001-1020", "--job-dir", str(tmp_path / "jobs")]
    result = CliRunner().invoke(main, [*args, "--detail", "0.5"])
    assert result.exit_code == 0, result.output
    (plugin_file,) = (tmp_path / "jobs").glob("*.plugin_info.job")
    assert parse_info(plugin_file.read_text())["Arguments"].endswith(" --detail 0.5")
    bad = CliRunner().invoke(main, [*args, "--detail", "0"])
    assert bad.exit_code == 2 and "vector detail 0 must be a fraction" in bad.output


def test_cli_deadline_job_bad_range_is_a_usage_error(tmp_path) -> None:
    result = CliRunner().invoke(main, ["nuke", "deadline-job", "p.####.exr",
                                       "-o", str(tmp_path / "v.####.exr"),
                                       "--frames", "1-9x2", "--job-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "contiguous" in result.output


def test_cli_install_and_path(tmp_path) -> None:
    nuke_dir = tmp_path / "nk"
    runner = CliRunner()
    args = ["nuke", "install", "--nuke-dir", str(nuke_dir), "--executable", "/x/daflow-vfx"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "updated" in first.output
    second = runner.invoke(main, args)
    assert "already up to date" in second.output
    text = (nuke_dir / "init.py").read_text()
    assert text.count("nuke.pluginAddPath(") == 1
    path = runner.invoke(main, ["nuke", "path"])
    assert path.exit_code == 0
    assert Path(path.output.strip(), "menu.py").is_file()
    assert repr(path.output.strip()) in text
