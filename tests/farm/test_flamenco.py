"""Flamenco: the job type's compileJob run under Node, the job JSON against the Manager's OpenAPI
SubmittedJob schema, and POST /api/v3/jobs to a local stand-in Manager."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.farm import flamenco
from daflow_vfx.farm.job import FarmJob, chunks, task_arguments
from tests.farm.conftest import PLATE

HARNESS = Path(__file__).with_name("flamenco_harness.js")
# SubmittedJob in Flamenco's pkg/api/flamenco-openapi.yaml (v3): properties and their types, and the
# required ones. settings is a free-form object; metadata maps strings to strings.
SUBMITTED_JOB = {"name": str, "type": str, "type_etag": str, "priority": int, "settings": dict,
                 "metadata": dict, "submitter_platform": str, "storage": dict, "worker_tag": str,
                 "initial_status": str}
REQUIRED = ("name", "type", "priority", "submitter_platform")


def _job(command: str = "render", **overrides) -> FarmJob:
    values = dict(command=command, input=PLATE, output="/shots/sh010/vec/sh010.####.exr",
                  options=("--model", "dis", "--tile", "512"), frames="1001-1025", chunk_size=10,
                  executable=("rez", "env", "daflow", "--", "daflow-vfx"), pool="gpu")
    values.update(overrides)
    return FarmJob(**values)


def _compile(tmp_path: Path, document: dict) -> dict:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("Node.js is not installed (apt install nodejs)")
    script = flamenco.install_job_type(tmp_path / "scripts")
    job_json = tmp_path / "job.json"
    job_json.write_text(json.dumps(document))
    done = subprocess.run([node, str(HARNESS), str(script), str(job_json)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("command", ["render", "stabilize"])
def test_compile_job_runs_one_exec_task_per_chunk(tmp_path: Path, command: str) -> None:
    job = _job(command)
    compiled = _compile(tmp_path, flamenco.submitted_job(job))
    assert set(compiled["settings"]) >= set(flamenco.submitted_job(job)["settings"])
    expected = [(f"{command}-{a}-{b}", task_arguments(job, f"{a}-{b}")) for a, b in chunks(job)]
    got = []
    for task in compiled["tasks"]:
        assert task["type"] == "misc"
        [cmd] = task["commands"]
        assert cmd["name"] == "exec" and cmd["parameters"]["exe"] == "rez"
        got.append((task["name"], cmd["parameters"]["args"]))
    assert got == expected
    assert len(got) == (3 if command == "render" else 1)


def test_compile_job_refuses_a_stepped_range(tmp_path: Path) -> None:
    document = flamenco.submitted_job(_job())
    document["settings"]["frames"] = "1-10x2"
    assert "not a contiguous range" in _compile(tmp_path, document)["error"]


def test_job_json_matches_the_submitted_job_schema() -> None:
    document = flamenco.submitted_job(_job())
    assert set(REQUIRED) <= set(document) and set(document) <= set(SUBMITTED_JOB)
    for key, value in document.items():
        assert isinstance(value, SUBMITTED_JOB[key]), key
    assert all(isinstance(v, str) for v in document["metadata"].values())
    assert document["type"] == flamenco.JOB_TYPE and document["worker_tag"] == "gpu"


class _Manager(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Manager.received.append((self.path, body))
        reply = json.dumps({"id": "f1a2b3c4", **body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:
        pass


def test_submit_posts_the_job_to_the_manager(submit, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Manager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = submit("flamenco", "--manager", f"http://127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    assert "Submitted Flamenco job f1a2b3c4" in result.output
    [(path, body)] = _Manager.received
    assert path == "/api/v3/jobs"
    assert body["type"] == "daflow-vfx" and body["settings"]["input"] == PLATE
    assert not (tmp_path / "vec").exists()  # a real submit writes no job file


def test_install_job_type_writes_the_script(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["flamenco", "install-job-type", str(tmp_path / "scripts")])
    assert result.exit_code == 0, result.output
    script = tmp_path / "scripts" / "daflow-vfx.js"
    assert script.read_text() == flamenco.job_type_script() and "function compileJob" in script.read_text()
