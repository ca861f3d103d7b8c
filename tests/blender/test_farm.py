"""The panel's farm menu in real headless Blender (PyPI ``bpy``): `daflow-vfx submit` as the background
job."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from tests.helpers import translated_frames, write_sequence  # noqa: E402


def test_farm_menu_is_drawn_with_the_three_farms(settings, extension) -> None:
    assert [item.identifier for item in settings.bl_rna.properties["farm"].enum_items] == \
        ["deadline", "opencue", "flamenco"]
    drawn: list[tuple[str, str]] = []

    class Layout:  # records what the panel draws
        def __getattr__(self, name):
            return lambda *a, **k: self

        def prop(self, data, name, **kwargs):
            drawn.append(("prop", name))
            return self

        def operator(self, idname, **kwargs):
            drawn.append(("operator", idname))
            return self

    class Ctx:
        scene = bpy.context.scene

    extension.ui.draw_panel(Layout(), Ctx())
    assert ("prop", "farm") in drawn and ("prop", "chunk_size") in drawn
    assert drawn.count(("operator", "daflow.submit_farm")) == 3


def test_submit_runs_as_a_background_job_with_an_argument_list(settings, fake_daflow, extension,
                                                                tmp_path: Path) -> None:
    plate = write_sequence(tmp_path / "my plate", translated_frames(3, 16, 16, dx=1, dy=0))
    record = tmp_path / "argv.json"
    fake_daflow(f"import json\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
                "print('Submitted job 7')\n")
    settings.farm, settings.chunk_size = "opencue", 2
    assert bpy.ops.daflow.submit_farm("EXEC_DEFAULT", source=plate, job="stabilize") == {"FINISHED"}
    [job] = extension.core.wait(timeout=30)
    argv = json.loads(record.read_text())
    assert argv[:5] == ["submit", "--farm", "opencue", "--chunk-size", "2"]
    action = argv[argv.index("stabilize"):]
    assert action[1] == plate  # the space in the folder is kept: no shell in between
    assert action[action.index("--frames") + 1] == "1001-1003"  # the sequence's own frames
    assert settings.status == "Submit to Farm: Submitted job 7"


class _Manager(http.server.BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        _Manager.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        reply = b'{"id": "job-42"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:
        pass


def test_submit_to_flamenco_reaches_the_manager(settings, extension, tmp_path: Path, monkeypatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Manager)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FLAMENCO_MANAGER", f"http://127.0.0.1:{server.server_port}")
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 16, 16, dx=1, dy=0))
    settings.farm = "flamenco"
    try:
        assert bpy.ops.daflow.submit_farm("EXEC_DEFAULT", source=plate, job="render") == {"FINISHED"}
        extension.core.wait(timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert settings.status == "Submit to Farm: Submitted Flamenco job job-42", settings.last_error
    [body] = _Manager.bodies
    assert (body["type"], body["settings"]["command"], body["settings"]["frames"]) == \
        ("daflow-vfx", "render", "1001-1003")


def test_bad_farm_settings_reach_the_status_bar(settings, extension, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLAMENCO_MANAGER", "http://127.0.0.1:9")
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 16, 16, dx=1, dy=0))
    settings.farm = "flamenco"
    assert bpy.ops.daflow.submit_farm("EXEC_DEFAULT", source=plate, job="render") == {"FINISHED"}
    extension.core.wait(timeout=120)
    assert settings.last_error.startswith("Submit to Farm: Error: Flamenco Manager at http://127.0.0.1:9 is "
                                          "not answering")
