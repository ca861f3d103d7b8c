"""Propagate Paint in real headless Blender (PyPI ``bpy``): registered, drawn, run as the background job."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from tests.helpers import read_exr, translated_frames, write_sequence  # noqa: E402


def _strip_source(tmp_path: Path, *, start: int = 11):
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 32, 48, dx=2, dy=0), name="sh030")
    scene = bpy.context.scene
    scene.sequence_editor_create()
    strip = scene.sequence_editor.strips.new_image(name="sh030", filepath=plate.replace("####", "1001"),
                                                   channel=2, frame_start=start)
    for k in (1, 2):
        strip.elements.append(os.path.basename(plate.replace("####", f"{1001 + k}")))
    scene.sequence_editor.active_strip = strip
    return strip


def _paint(path: Path) -> str:
    from daflow_vfx.io.images import write_image

    ys, xs = np.mgrid[0:32, 0:48].astype(np.float32)
    a = np.clip(6.5 - np.hypot(xs - 20, ys - 15), 0, 1)
    write_image(path, np.dstack([a, a, a, a]), half=False)
    return str(path)


def test_operator_and_panel_entry_are_registered(extension) -> None:
    assert "DAFLOW_OT_propagate" in dir(bpy.types)
    props = bpy.context.scene.daflow.bl_rna.properties
    assert props["paint_image"].subtype == "FILE_PATH" and props["paint_frame"].default == -1
    drawn: list[str] = []

    class Layout:
        def __getattr__(self, name):
            return lambda *a, **k: drawn.append(a[0]) or self if name == "operator" else self

    class Ctx:
        scene = bpy.context.scene

    extension.ui.draw_panel(Layout(), Ctx())
    assert "daflow.propagate" in drawn


def test_no_paint_image_is_reported(settings, tmp_path: Path) -> None:
    _strip_source(tmp_path)
    with pytest.raises(RuntimeError, match="no paint image"):
        bpy.ops.daflow.propagate("EXEC_DEFAULT")
    assert "no paint image" in settings.last_error and not settings.running


@pytest.mark.slow
def test_propagate_adds_an_alpha_over_strip(settings, extension, tmp_path: Path) -> None:
    source = _strip_source(tmp_path, start=11)
    settings.paint_image = _paint(tmp_path / "paint.exr")
    settings.paint_frame = 12  # timeline frame 12 shows plate frame 1002
    assert bpy.ops.daflow.propagate("EXEC_DEFAULT") == {"FINISHED"}
    jobs = extension.core.wait(timeout=240)
    assert jobs[0].messages[-1][0] == "INFO", jobs[0].job.lines
    strip = {s.name: s for s in bpy.context.scene.sequence_editor.strips}["sh030.propagate"]
    assert strip.blend_type == "ALPHA_OVER" and strip.frame_start == source.frame_start
    assert len(strip.elements) == 3 and strip.channel == 3
    channels, _ = read_exr(tmp_path / "out" / "sh030.propagate.1003.exr")
    xs = np.mgrid[0:32, 0:48][1]
    a = channels["A"]
    assert abs((xs * a).sum() / a.sum() - 22.0) < 0.5  # painted on 1002, one frame on: 2 px right
