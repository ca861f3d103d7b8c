"""DAFlow_Propagate: the toolset parses and is wired as the issue describes; its button's command line."""

from __future__ import annotations

import pytest

from daflow_vfx.errors import UsageError
from daflow_vfx.hosts.nuke_propagate import PropagateSettings, propagate_args, propagate_paths
from tests.conftest import REPO_ROOT
from tests.nuke.nkparse import parse

TOOLSET = REPO_ROOT / "plugins" / "nuke" / "toolsets" / "DAFlow_Propagate.nk"


@pytest.fixture(scope="module")
def script():
    text = TOOLSET.read_text()
    assert text.startswith("set cut_paste_input [stack 0]\n")
    return parse(text)


def test_plate_paint_daflow_and_stmap_are_wired(script) -> None:
    plate = script.named("DAFlow_PropagatePlate")
    (daflow,) = script.find("DAFlow")
    (roto,) = script.find("RotoPaint")
    (stmap,) = script.find("STMap")
    stmaps = script.named("DAFlow_PropagateSTMaps")
    hold = script.named("DAFlow_PropagateHold")
    assert plate.cls == "Read" and daflow.inputs == [plate] and roto.inputs == [plate]
    assert script.named("DAFlow_PropagatePremult").inputs == [roto]
    # STMap: input 0 (src) is the paint held on the painted frame, input 1 the STMaps daflow-vfx wrote
    assert stmap.inputs == [hold, stmaps]
    assert stmap.value("uv") == "rgb"
    assert hold.value("first_frame") == "{DAFlow_Propagate1.propagate_at}"
    assert stmaps.value("file") == "[value DAFlow_Propagate1.stmap_file]"
    visible = script.named("DAFlow_PropagateVisible")
    assert visible.value("operation") == "mask" and visible.inputs == [stmaps, stmap]
    comp = script.named("DAFlow_PropagateComp")
    assert comp.value("operation") == "over" and comp.inputs == [plate, visible]
    assert "daflow-vfx propagate" in script.find("StickyNote")[0].value("label")


def test_the_daflow_node_is_set_to_propagate(script) -> None:
    import daflow_nuke

    (daflow,) = script.find("DAFlow")
    for knob in ("propagate_at", "paint_node", "stmap_file", "propagate_button"):
        assert daflow.user_knob(knob) is not None, knob
    button = daflow.user_knob("propagate_button")
    assert button["type"] == 22
    assert button["script"] == "import daflow_nuke\ndaflow_nuke.propagate(nuke.thisNode())"
    assert callable(daflow_nuke.propagate) and "DAFlow_Propagate" in daflow_nuke.TOOLSETS
    assert daflow.value("paint_node") == "DAFlow_PropagatePremult"
    assert script.named(daflow.value("paint_node")) is not None


def test_button_command_line(tmp_path) -> None:
    knobs = {"propagate_at": 1012.0, "output_folder": str(tmp_path), "model": "dis", "device": "cpu",
             "input_colorspace": "linear"}
    settings = PropagateSettings.from_knobs(knobs, input="/plates/sh010.####.exr",
                                            node_name="DAFlow_Propagate1")
    paths = propagate_paths(settings)
    assert propagate_args(settings) == [
        "propagate", "/plates/sh010.####.exr", "--paint", paths["paint"], "--at", "1012",
        "-o", paths["output"], "--stmap", paths["stmap"], "--device", "cpu", "--input-colorspace", "linear",
        "--model", "dis"]
    assert paths["stmap"].endswith("DAFlow_Propagate1_propagate/stmap.####.exr")
    with pytest.raises(UsageError, match="output folder"):
        propagate_paths(PropagateSettings.from_knobs({"propagate_at": 1}, input="x.####.exr", node_name="N"))
    with pytest.raises(UsageError, match="propagate_at"):
        PropagateSettings.from_knobs({"propagate_at": ""}, input="x.####.exr", node_name="N")
