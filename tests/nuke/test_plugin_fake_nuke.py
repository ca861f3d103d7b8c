"""daflow_nuke's button code against a stand-in `nuke` module.

This is not Nuke: the stand-in records calls (Write, execute, ProgressTask, executeInMainThread, knob
values) so the thin layer's own decisions are exercised: which plate it renders, the command it runs, the
knobs it sets for the read-back, and the `daflow-vfx submit` arguments. The executable is a tiny script
that prints Progress lines and records its arguments instead of rendering or submitting.
"""

from __future__ import annotations

import contextlib
import json
import stat
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PLUGIN_DIR = REPO_ROOT / "plugins" / "nuke"


class Knob:
    def __init__(self, value=None) -> None:
        self._value = value
        self.executed = 0

    def value(self):
        return self._value

    def evaluate(self):
        return self._value

    def setValue(self, value) -> None:  # noqa: N802 - Nuke's API
        self._value = value

    def execute(self) -> None:
        self.executed += 1


class Node:
    def __init__(self, cls: str, name: str, knobs: dict | None = None, *, frames=(1001, 1003)) -> None:
        self._cls, self._name, self._frames = cls, name, frames
        self.knobs = {k: Knob(v) for k, v in (knobs or {}).items()}
        self.inputs: dict[int, Node] = {}
        self.children: dict[str, Node] = {}

    def Class(self) -> str:  # noqa: N802
        return self._cls

    def name(self) -> str:
        return self._name

    fullName = name  # noqa: N815

    def knob(self, name):
        return self.knobs.get(name)

    def __getitem__(self, name):
        return self.knobs[name]

    def input(self, index):
        return self.inputs.get(index)

    def setInput(self, index, node) -> None:  # noqa: N802
        self.inputs[index] = node

    def firstFrame(self) -> int:  # noqa: N802
        return self._frames[0]

    def lastFrame(self) -> int:  # noqa: N802
        return self._frames[1]

    def node(self, name):
        return self.children.get(name)


class ProgressTask:
    instances: list[ProgressTask] = []

    def __init__(self, title: str) -> None:
        self.title, self.values, self.message = title, [], ""
        ProgressTask.instances.append(self)

    def setProgress(self, value: int) -> None:  # noqa: N802
        self.values.append(value)

    def setMessage(self, text: str) -> None:  # noqa: N802
        self.message = text

    def isCancelled(self) -> bool:  # noqa: N802
        return False


def make_fake_nuke(tmp_path: Path, graph: dict[str, Node], working: str = "linear") -> types.ModuleType:
    fake = types.ModuleType("nuke")
    fake.GUI = True
    fake.messages = []
    fake.executed = []
    fake.ProgressTask = ProgressTask
    fake.message = fake.messages.append
    fake.toNode = graph.get
    fake.executeInMainThread = lambda fn, args=(): fn(*args)

    class Root(contextlib.nullcontext):
        knobs = {"workingSpaceLUT": Knob(working)}   # Project Settings > working space

        def name(self) -> str:
            return str(tmp_path / "comp_v001.nk")

        def knob(self, name):
            return self.knobs.get(name)

        def __getitem__(self, name):
            return self.knobs[name]

    fake.root = Root

    def write(**knobs):
        node = Node("Write", "Write1", knobs)
        fake.written = node
        return node

    fake.nodes = types.SimpleNamespace(Write=write)
    fake.execute = lambda node, first, last: fake.executed.append((node["file"].value(), first, last))
    fake.delete = lambda node: None
    return fake


def daflow_node(tmp_path: Path, executable: Path, **knobs) -> Node:
    values = {"model": "dis", "device": "cpu", "frame_range": "", "layout": "nuke",
              "input_colorspace": "auto",
              "output_folder": str(tmp_path / "vec"), "output_name": "sh.####.exr",
              "executable": str(executable), "chunk_size": 2.0, "skip_existing": False, "vector_detail": 1.0,
              "vectors_file": "", "read_first": 1.0, "read_last": 100.0, "vectors_ready": False}
    values.update(knobs)
    node = Node("DAFlow", "DAFlow1", values)
    node.children["VectorRead"] = Node("Read", "VectorRead", {"reload": None})
    return node


def fake_executable(tmp_path: Path) -> Path:
    record = tmp_path / "argv.json"
    path = tmp_path / "fake-daflow-vfx"
    path.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
                    "for p in (0, 50, 100):\n    print(f'Progress: {p}%', flush=True)\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture()
def plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    import daflow_nuke

    return daflow_nuke


def test_render_button_uses_the_read_plate_and_wires_the_read_back(tmp_path, monkeypatch, plugin) -> None:
    for f in (1001, 1002, 1003):
        (tmp_path / f"sh.{f}.exr").write_bytes(b"")
    upstream = Node("Read", "Read1", {"file": str(tmp_path / "sh.%04d.exr")})
    node = daflow_node(tmp_path, fake_executable(tmp_path), vector_detail=0.25)
    node.setInput(0, upstream)
    fake = make_fake_nuke(tmp_path, {"DAFlow1": node})
    monkeypatch.setattr(plugin, "nuke", fake)
    ProgressTask.instances.clear()

    thread = plugin.render_vectors(node)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert fake.executed == []  # already a sequence on disk: nothing written
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:2] == ["render", str(tmp_path / "sh.%04d.exr")]
    assert argv[argv.index("--frames") + 1] == "1001-1003"
    assert argv[argv.index("--input-colorspace") + 1] == "auto"
    assert argv[argv.index("--detail") + 1] == "0.25"  # the vector detail knob
    assert ProgressTask.instances[-1].values == [0, 50, 100]
    assert fake.messages == []
    assert node["vectors_file"].value() == str(tmp_path / "vec" / "sh.####.exr")
    assert (node["read_first"].value(), node["read_last"].value()) == (1001, 1003)
    assert node["vectors_ready"].value() is True
    assert node.node("VectorRead")["reload"].executed == 1


def test_render_button_writes_a_non_sequence_input_first(tmp_path, monkeypatch, plugin) -> None:
    upstream = Node("Grade", "Grade1", frames=(1, 10))
    node = daflow_node(tmp_path, fake_executable(tmp_path), frame_range="3-5")
    node.setInput(0, upstream)
    fake = make_fake_nuke(tmp_path, {"DAFlow1": node})
    monkeypatch.setattr(plugin, "nuke", fake)

    plugin.render_vectors(node).join(timeout=30)
    plate = str(tmp_path / "vec" / "plate" / "DAFlow1.plate.####.exr")
    assert fake.executed == [(plate, 2, 6)]  # one neighbour frame either side for the flow
    assert fake.written.inputs[0] is upstream
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[1] == plate
    assert argv[argv.index("--input-colorspace") + 1] == "linear"  # Nuke wrote linear EXRs
    assert argv[argv.index("--frames") + 1] == "3-5"


@pytest.mark.parametrize(("knob", "expected"), [("AlexaV3LogC", "ARRI LogC3 (EI800)"),
                                                 ("default (ACES - ACEScg)", "ACES - ACEScg"),
                                                 ("Cineon", "log")])
def test_render_button_reads_a_read_plate_in_the_reads_colorspace(tmp_path, monkeypatch, plugin, knob,
                                                                  expected) -> None:
    for f in (1001, 1002, 1003):
        (tmp_path / f"sh.{f}.exr").write_bytes(b"")
    upstream = Node("Read", "Read1", {"file": str(tmp_path / "sh.%04d.exr"), "colorspace": knob})
    node = daflow_node(tmp_path, fake_executable(tmp_path))
    node.setInput(0, upstream)
    monkeypatch.setattr(plugin, "nuke", make_fake_nuke(tmp_path, {"DAFlow1": node}))
    plugin.render_vectors(node).join(timeout=30)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[argv.index("--input-colorspace") + 1] == expected
    # a colour space chosen on the node wins over the Read's
    node["input_colorspace"].setValue("srgb")
    plugin.render_vectors(node).join(timeout=30)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[argv.index("--input-colorspace") + 1] == "srgb"


def test_written_plate_is_read_in_the_working_space(tmp_path, monkeypatch, plugin) -> None:
    node = daflow_node(tmp_path, fake_executable(tmp_path), frame_range="3-5")
    node.setInput(0, Node("Grade", "Grade1", frames=(1, 10)))
    monkeypatch.setattr(plugin, "nuke", make_fake_nuke(tmp_path, {"DAFlow1": node}, working="ACES - ACEScg"))
    plugin.render_vectors(node).join(timeout=30)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[argv.index("--input-colorspace") + 1] == "ACES - ACEScg"


def test_render_button_reports_knob_errors_as_a_message(tmp_path, monkeypatch, plugin) -> None:
    node = daflow_node(tmp_path, fake_executable(tmp_path), output_folder="")
    node.setInput(0, Node("Grade", "Grade1"))
    fake = make_fake_nuke(tmp_path, {"DAFlow1": node})
    monkeypatch.setattr(plugin, "nuke", fake)
    assert plugin.render_vectors(node) is None
    assert len(fake.messages) == 1 and "output folder is empty" in fake.messages[0]
    node.inputs.clear()
    plugin.render_vectors(node)
    assert "nothing is connected" in fake.messages[-1]


@pytest.mark.parametrize("farm", ["deadline", "opencue", "flamenco"])
def test_submit_button_runs_submit_for_the_chosen_farm(tmp_path, monkeypatch, plugin, farm) -> None:
    for f in range(1001, 1004):
        (tmp_path / f"sh.{f}.exr").write_bytes(b"")
    node = daflow_node(tmp_path, fake_executable(tmp_path), farm=farm)
    node.setInput(0, Node("Read", "Read1", {"file": str(tmp_path / "sh.####.exr")}))
    fake = make_fake_nuke(tmp_path, {"DAFlow1": node})
    monkeypatch.setattr(plugin, "nuke", fake)

    plugin.submit_to_farm(node).join(timeout=30)
    argv = json.loads((tmp_path / "argv.json").read_text())  # a list of arguments: no shell in between
    assert argv[:3] == ["submit", "--farm", farm]
    assert argv[argv.index("--chunk-size") + 1] == "2"
    assert argv[argv.index("--job-dir") + 1] == str(tmp_path / "vec" / "farm")
    job = argv[argv.index("render"):]
    assert job[1] == str(tmp_path / "sh.####.exr") and job[job.index("--frames") + 1] == "1001-1003"
    assert fake.messages == ["DAFlow1: Progress: 100%"]  # the fake's last line
    assert node["vectors_ready"].value() is True


def test_submit_button_shows_the_error_line(tmp_path, monkeypatch, plugin) -> None:
    for f in range(1001, 1004):
        (tmp_path / f"sh.{f}.exr").write_bytes(b"")
    failing = tmp_path / "failing-daflow-vfx"
    failing.write_text(f"#!{sys.executable}\nprint('Error: no Cuebot answered at cue:8443')\n"
                       "raise SystemExit(1)\n")
    failing.chmod(failing.stat().st_mode | stat.S_IXUSR)
    node = daflow_node(tmp_path, failing, farm="opencue")
    node.setInput(0, Node("Read", "Read1", {"file": str(tmp_path / "sh.####.exr")}))
    fake = make_fake_nuke(tmp_path, {"DAFlow1": node})
    monkeypatch.setattr(plugin, "nuke", fake)
    plugin.submit_to_farm(node).join(timeout=30)
    assert fake.messages == ["DAFlow1: opencue: Error: no Cuebot answered at cue:8443"]
    assert node["vectors_ready"].value() is False
