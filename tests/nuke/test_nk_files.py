"""The gizmo and toolsets are well-formed Nuke scripts with the nodes, knobs and channels the plugin needs."""

from __future__ import annotations

import numpy as np
import pytest

from daflow_vfx.farm.job import FARMS
from daflow_vfx.hosts.nuke import CHANNELS, COLORSPACES, NODE_LAYOUTS
from tests.conftest import REPO_ROOT
from tests.nuke.nkparse import NkSyntaxError, parse

PLUGIN = REPO_ROOT / "plugins" / "nuke"
GIZMO = PLUGIN / "gizmos" / "DAFlow.gizmo"
TOOLSETS = ["DAFlow_VectorBlur", "DAFlow_Retime", "DAFlow_Stabilize"]


@pytest.fixture(scope="module")
def gizmo():
    script = parse(GIZMO.read_text())
    (node,) = [n for n in script.nodes if n.cls == "Gizmo"]
    return node


def test_parser_rejects_broken_syntax() -> None:
    with pytest.raises(NkSyntaxError):
        parse("Read {\n file x\n")
    with pytest.raises(NkSyntaxError):
        parse("Group {\n}\n Read {\n  inputs 0\n }\n")  # no end_group
    with pytest.raises(NkSyntaxError):
        parse('Read {\n file "abc\n}\n')


def test_gizmo_user_knobs(gizmo) -> None:
    names = gizmo.user_knob_names()
    for knob in ("model", "device", "frame_range", "layout", "input_colorspace", "vector_detail",
                 "output_folder", "output_name", "executable", "chunk_size", "skip_existing",
                 "render_vectors", "submit_farm", "vectors_file", "read_first", "read_last", "vectors_ready"):
        assert knob in names, knob
    assert len(names) == len(set(names))
    types = {name: gizmo.user_knob(name)["type"] for name in names}
    assert types["output_folder"] == types["executable"] == 2  # file knobs
    assert types["chunk_size"] == types["read_first"] == 3  # integers
    assert types["render_vectors"] == types["submit_farm"] == 22  # PyScript buttons
    assert gizmo.user_knob("render_vectors")["label"] == "Render Vectors"
    assert gizmo.user_knob("submit_farm")["label"] == "Submit to Farm"
    assert gizmo.user_knob("layout")["items"].split() == list(NODE_LAYOUTS)
    assert gizmo.user_knob("input_colorspace")["items"].split() == list(COLORSPACES)
    assert gizmo.user_knob("model")["items"].split()[:2] == ["default", "dis"]
    assert gizmo.user_knob("farm")["items"].split() == list(FARMS)  # what `daflow-vfx submit --farm` takes
    assert gizmo.value("output_name") == "vectors.####.exr"
    assert gizmo.value("chunk_size") == "10"
    # Kronos' Vector Detail: a floating-point knob, full detail by default, a 0-1 slider
    detail = gizmo.user_knob("vector_detail")
    assert (detail["type"], detail["label"]) == (7, "vector detail")
    assert gizmo.value("vector_detail") == "1"
    assert gizmo.value("inputs") == "1"


def test_gizmo_buttons_call_the_plugin(gizmo) -> None:
    import daflow_nuke

    for knob, function in (("render_vectors", "render_vectors"), ("submit_farm", "submit_to_farm")):
        script = gizmo.user_knob(knob)["script"]
        assert script == f"import daflow_nuke\ndaflow_nuke.{function}(nuke.thisNode())"
        assert callable(getattr(daflow_nuke, function))
        compile(script, knob, "exec")  # valid Python
    # the knobs the buttons read are all on the node
    assert set(daflow_nuke.KNOBS) <= set(gizmo.user_knob_names())


def test_gizmo_reads_vectors_back_into_the_input(gizmo) -> None:
    classes = [n.cls for n in gizmo.children]
    assert sorted(classes) == ["Copy", "Input", "Output", "Read"]
    read = next(n for n in gizmo.children if n.cls == "Read")
    copy = next(n for n in gizmo.children if n.cls == "Copy")
    output = next(n for n in gizmo.children if n.cls == "Output")
    source = next(n for n in gizmo.children if n.cls == "Input")
    assert read.value("file") == "[value parent.vectors_file]"
    assert read.value("first") == "{parent.read_first}" and read.value("last") == "{parent.read_last}"
    assert read.value("on_error") == "black"  # frames still rendering show black, not an error
    assert read.value("inputs") == "0"
    # Copy: input 0 (B) is the node's input and passes through, input 1 (A) is the Read
    assert copy.inputs == [source, read]
    assert output.inputs == [copy]
    pairs = [(copy.value(f"from{i}"), copy.value(f"to{i}")) for i in range(4)]
    assert pairs == [(c, c) for c in CHANNELS]
    assert CHANNELS == ("forward.u", "forward.v", "backward.u", "backward.v")
    assert copy.value("disable") == read.value("disable") == "{!parent.vectors_ready}"


@pytest.mark.parametrize("name", TOOLSETS)
def test_toolsets_parse_and_start_at_the_paste_point(name) -> None:
    text = (PLUGIN / "toolsets" / f"{name}.nk").read_text()
    script = parse(text)
    assert text.startswith("set cut_paste_input [stack 0]\n")
    (daflow,) = script.find("DAFlow")
    assert daflow.inputs[0] is not None and daflow.inputs[0].cls == "<paste input>"
    assert script.find("StickyNote"), "each toolset explains itself"


def test_vector_blur_toolset() -> None:
    script = parse((PLUGIN / "toolsets" / "DAFlow_VectorBlur.nk").read_text())
    (blur,) = script.find("VectorBlur2")
    (daflow,) = script.find("DAFlow")
    assert blur.inputs == [daflow]
    assert blur.value("uv") == "forward"


def test_retime_toolset() -> None:
    script = parse((PLUGIN / "toolsets" / "DAFlow_Retime.nk").read_text())
    (kronos,) = script.find("Kronos")
    (daflow,) = script.find("DAFlow")
    assert kronos.inputs == [daflow]
    (read,) = script.find("Read")
    assert read.value("file") == "[value this.retime_file]"
    assert read.user_knob("retime_file")["type"] == 2
    note = script.find("StickyNote")[0].value("label")
    assert "daflow-vfx retime" in note and "--vectors" in note


def test_stabilize_toolset_loads_the_snippet() -> None:
    import daflow_nuke

    script = parse((PLUGIN / "toolsets" / "DAFlow_Stabilize.nk").read_text())
    loader = script.named("DAFlow_StabilizeLoader")
    assert loader.user_knob("nk_file")["type"] == 2
    button = loader.user_knob("load_transform")
    assert button["type"] == 22
    assert button["script"] == "import daflow_nuke\ndaflow_nuke.load_stabilize(nuke.thisNode())"
    assert callable(daflow_nuke.load_stabilize)
    assert "--nk" in script.find("StickyNote")[0].value("label")


@pytest.mark.parametrize("node", ["Transform", "CornerPin2D"])
def test_stabilize_snippet_pastes_below_the_selected_node(node) -> None:
    """The `.nk` that `daflow-vfx stabilize --nk` writes (vfx.nuke_snippet) parses and connects to the
    paste point, which is what the Stabilize toolset's Load Transform relies on."""
    from daflow_vfx.vfx.nuke_snippet import nuke_snippet

    shift = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])
    text = nuke_snippet([1001, 1002], [np.eye(3), shift], width=64, height=48, node=node)
    script = parse(text)
    (pasted,) = script.nodes
    assert pasted.cls == node
    assert pasted.inputs[0].cls == "<paste input>"
    assert "curve x1001" in (pasted.value("translate") or pasted.value("to1"))


def test_init_and_menu() -> None:
    init = (PLUGIN / "init.py").read_text()
    menu = (PLUGIN / "menu.py").read_text()
    assert "nuke.pluginAddPath" in init
    for ui in ("nuke.menu", "addCommand", "toolbar", "import daflow_nuke"):
        assert ui not in init  # init.py also runs in render sessions: no UI
    assert 'nuke.menu("Nodes").addMenu("DAFlow"' in menu
    assert "daflow_nuke.create_node()" in menu and "daflow_nuke.load_toolset(" in menu
    compile(init, "init.py", "exec")
    compile(menu, "menu.py", "exec")
    for name in TOOLSETS:
        assert (PLUGIN / "toolsets" / f"{name}.nk").is_file()
