"""OpenCue through the real PyOutline (the `opencue` extra): the XML job spec its serialiser writes."""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("outline")

from tests.farm.conftest import PLATE  # noqa: E402


def _layers(spec: Path) -> list[ET.Element]:
    root = ET.fromstring(spec.read_text())  # PyOutline writes a DOCTYPE, which ElementTree skips
    return root.findall("./job/layers/layer")


@pytest.mark.parametrize(("command", "chunk", "expected_chunk"), [("render", "10", "10"),
                                                                   ("retime", "6", "6"),
                                                                   ("stabilize", "10", "25")])
def test_dry_run_spec_has_the_command_range_and_chunk_of_every_layer(submit, tmp_path: Path, command, chunk,
                                                                      expected_chunk) -> None:
    out = tmp_path / command / "sh010.####.exr"
    options = ["--speed", "0.5"] if command == "retime" else []
    result = submit("opencue", "--dry-run", "--chunk-size", chunk, "--show", "pipe", "--pool", "gpu",
                    job=[command, PLATE, "-o", str(out), "--frames", "1001-1025", *options])
    assert result.exit_code == 0, result.output
    spec = next((out.parent / "farm").glob("*.opencue.xml"))
    assert str(spec) in result.output
    root = ET.fromstring(spec.read_text())
    assert root.findtext("show") == "pipe"
    layers = _layers(spec)
    assert [layer.get("name") for layer in layers] == [command]
    for layer in layers:
        words = shlex.split(layer.findtext("cmd"))
        assert words[:3] == ["daflow-vfx", command, PLATE]
        assert words[words.index("-o") + 1] == str(out)
        assert words[words.index("--frames") + 1] == "#FRAME_START#-#FRAME_END#"
        assert ("--skip-existing" in words) == (command == "render")
        assert layer.findtext("range") == "1001-1025"
        assert layer.findtext("chunk") == expected_chunk
        assert layer.findtext("tags") == "gpu"


def test_dry_run_leaves_no_pyoutline_session_behind(submit, tmp_path: Path, monkeypatch) -> None:
    import outline

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    before = outline.config.get("outline", "session_dir")
    assert submit("opencue", "--dry-run").exit_code == 0
    assert outline.config.get("outline", "session_dir") == before
    assert not (tmp_path / "home").exists()


def test_launch_sends_pyoutlines_spec_to_cuebot(submit, tmp_path: Path) -> None:
    """A stand-in Cuebot (gRPC, OpenCue's own protos) receives the launch; nothing is written locally."""
    from concurrent import futures

    import grpc
    from opencue_proto import cue_pb2, cue_pb2_grpc, job_pb2, job_pb2_grpc

    specs: list[str] = []

    class Cue(cue_pb2_grpc.CueInterfaceServicer):
        def GetSystemStats(self, request, context):  # noqa: N802 - the proto's name
            return cue_pb2.CueGetSystemStatsResponse()

    class Jobs(job_pb2_grpc.JobInterfaceServicer):
        def LaunchSpecAndWait(self, request, context):  # noqa: N802
            specs.append(request.spec)
            job = job_pb2.Job(name="pipe-sh010-me_daflow_render_sh010")
            return job_pb2.JobLaunchSpecAndWaitResponse(jobs=job_pb2.JobSeq(jobs=[job]))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    cue_pb2_grpc.add_CueInterfaceServicer_to_server(Cue(), server)
    job_pb2_grpc.add_JobInterfaceServicer_to_server(Jobs(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = submit("opencue", "--cuebot", f"127.0.0.1:{port}", "--chunk-size", "5")
    finally:
        server.stop(grace=None)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Launched OpenCue job pipe-sh010-me_daflow_render_sh010"
    [spec] = specs
    [layer] = ET.fromstring(spec).findall("./job/layers/layer")
    assert (layer.findtext("range"), layer.findtext("chunk")) == ("1001-1025", "5")
    assert "#FRAME_START#-#FRAME_END#" in layer.findtext("cmd")
    assert not (tmp_path / "vec").exists()
