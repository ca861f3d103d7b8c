"""The Blender extension in real headless Blender (PyPI ``bpy``): enabling, the operators, Vector Blur."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from tests.helpers import read_exr, translated_frames, write_sequence  # noqa: E402

OPERATORS = ("compute_vectors", "retime", "stabilize", "setup_vector_blur", "cancel")


def _registered_names() -> set[str]:
    names = {name for name in dir(bpy.types) if name.startswith(("DAFLOW_", "DaflowSettings", "DaflowPref"))}
    names |= {name for name in OPERATORS if hasattr(bpy.ops.daflow, name) and
              _op_exists(getattr(bpy.ops.daflow, name))}
    if hasattr(bpy.types.Scene, "daflow"):
        names.add("Scene.daflow")
    return names


def _op_exists(op) -> bool:
    try:
        op.get_rna_type()
    except KeyError:
        return False
    return True


def test_enable_registers_and_disable_removes_everything(extension) -> None:
    module = extension.__name__
    on = _registered_names()
    assert {"Scene.daflow", "DAFLOW_PT_clip", "DAFLOW_PT_sequencer", *OPERATORS} <= on
    assert bpy.types.DAFLOW_PT_clip.bl_space_type == "CLIP_EDITOR"
    assert bpy.types.DAFLOW_PT_sequencer.bl_space_type == "SEQUENCE_EDITOR"
    assert bpy.context.preferences.addons[module].preferences.python == ""
    bpy.ops.preferences.addon_disable(module=module)
    try:
        assert _registered_names() == set()
        assert not bpy.app.timers.is_registered(extension.core._timer)
    finally:
        bpy.ops.preferences.addon_enable(module=module)
    assert _registered_names() == on  # and it comes back identical


def test_no_source_and_missing_file_report_errors(settings) -> None:
    with pytest.raises(RuntimeError, match="no source"):
        bpy.ops.daflow.compute_vectors("EXEC_DEFAULT")
    with pytest.raises(RuntimeError, match="no such file"):
        bpy.ops.daflow.retime("EXEC_DEFAULT", source="/no/such/clip.mov")
    with pytest.raises(RuntimeError, match="no frames on disk"):
        bpy.ops.daflow.stabilize("EXEC_DEFAULT", source="/no/such/plate.####.exr")
    assert "no frames" in settings.last_error
    assert not settings.running and bpy.context.scene.name  # Blender is still alive


def test_failing_process_reports_its_error_line(settings, fake_daflow, extension, tmp_path: Path) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(2, 16, 16, dx=1, dy=0))
    fake_daflow("print('Progress: 50%', flush=True)\n"
                "print('Error: plate.1002.png: truncated; re-render it', flush=True)\nsys.exit(1)\n")
    assert bpy.ops.daflow.compute_vectors("EXEC_DEFAULT", source=plate) == {"FINISHED"}
    jobs = extension.core.wait(timeout=30)
    message = "Compute Vectors: Error: plate.1002.png: truncated; re-render it"
    assert jobs[0].messages[-1] == ("ERROR", message)
    assert "truncated" in settings.last_error and not settings.running


def test_cancel_stops_the_background_process(settings, fake_daflow, extension, tmp_path: Path) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(2, 16, 16, dx=1, dy=0))
    pid_file = tmp_path / "pid"
    fake_daflow(f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                "print('Progress: 7%', flush=True)\ntime.sleep(120)\n")
    bpy.ops.daflow.compute_vectors("EXEC_DEFAULT", source=plate)
    job = extension.core.JOBS[0]
    deadline = time.monotonic() + 20
    while settings.progress != 7 and time.monotonic() < deadline:
        extension.core.poll()  # what the timer does in the UI
        time.sleep(0.05)
    assert settings.running and settings.progress == 7
    assert bpy.ops.daflow.cancel("EXEC_DEFAULT") == {"FINISHED"}
    pid = int(pid_file.read_text())
    assert job.job.result is not None and job.job.result.cancelled
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not settings.running and "cancelled" in settings.status


@pytest.mark.slow
def test_compute_vectors_writes_blender_layout_exrs(settings, extension, tmp_path: Path) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 32, 48, dx=2, dy=1), name="sh010")
    assert bpy.ops.daflow.compute_vectors("EXEC_DEFAULT", source=plate) == {"FINISHED"}
    assert settings.running
    jobs = extension.core.wait(timeout=240)
    assert jobs[0].messages[-1][0] == "INFO", jobs[0].job.lines
    pattern = settings.vectors
    assert pattern == str(tmp_path / "out" / "sh010.vectors.####.exr")
    channels, _ = read_exr(pattern.replace("####", "1002"))
    # texture moving 2 px right and 1 px down: Vector.X = -2, Y = +1, Z = -2, W = +1 (README Conventions)
    for name, want in (("Vector.X", -2), ("Vector.Y", 1), ("Vector.Z", -2), ("Vector.W", 1)):
        assert np.median(channels[name][8:-8, 8:-8]) == pytest.approx(want, abs=0.3), name
    assert settings.progress == 100


def _sequencer_source(tmp_path: Path, frames: np.ndarray, *, start: int = 11):
    plate = write_sequence(tmp_path / "plate", frames, name="sh020")
    scene = bpy.context.scene
    scene.sequence_editor_create()
    first = plate.replace("####", "1001")
    strip = scene.sequence_editor.strips.new_image(name="sh020", filepath=first, channel=2, frame_start=start)
    for k in range(1, len(frames)):
        strip.elements.append(os.path.basename(plate.replace("####", f"{1001 + k}")))
    scene.sequence_editor.active_strip = strip
    return strip


@pytest.mark.slow
def test_retime_adds_the_retimed_strip_aligned_on_the_timeline(settings, extension, tmp_path: Path) -> None:
    source = _sequencer_source(tmp_path, translated_frames(3, 32, 32, dx=2, dy=0))
    settings.speed = 0.5
    assert bpy.ops.daflow.retime("EXEC_DEFAULT") == {"FINISHED"}  # the active strip
    jobs = extension.core.wait(timeout=240)
    assert jobs[0].messages[-1][0] == "INFO", jobs[0].job.lines
    strips = {s.name: s for s in bpy.context.scene.sequence_editor.strips}
    retimed = strips["sh020.retime"]
    written = sorted(Path(tmp_path / "out").glob("sh020.retime.*.exr"))
    assert len(written) >= 4  # 2x slow motion of 3 frames
    assert len(retimed.elements) == len(written)
    assert retimed.frame_start == source.frame_start and retimed.channel == 3
    assert retimed["daflow_source"].endswith("sh020.####.png")


@pytest.mark.slow
def test_stabilize_adds_the_strip_and_keeps_the_transforms(settings, extension, tmp_path: Path) -> None:
    from tests.helpers import noise_texture

    base = noise_texture(80, 80, seed=3)
    jitter = [0, 4, 0, 4, 0]  # a shaking camera: every other frame 4 px to the right
    frames = np.stack([base[16:64, 16 + j:64 + j] for j in jitter])
    source = _sequencer_source(tmp_path, frames)
    settings.stabilize_mode = "translation"
    settings.crop = "none"
    assert bpy.ops.daflow.stabilize("EXEC_DEFAULT") == {"FINISHED"}
    jobs = extension.core.wait(timeout=240)
    assert jobs[0].messages[-1][0] == "INFO", jobs[0].job.lines
    strips = {s.name: s for s in bpy.context.scene.sequence_editor.strips}
    stabilized, live = strips["sh020.stabilize"], strips["sh020.stabilize.live"]
    assert len(stabilized.elements) == 5 and stabilized.frame_start == source.frame_start
    json_path = stabilized["daflow_transforms"]
    assert os.path.isfile(json_path) and os.path.basename(json_path) in bpy.data.texts
    assert live.mute and live["daflow_transforms"] == json_path
    curves = {fc.data_path: fc for fc in bpy.context.scene.animation_data.action.fcurves} \
        if hasattr(bpy.context.scene.animation_data.action, "fcurves") else None
    if curves is None:  # Blender 5: layered actions
        from bpy_extras import anim_utils

        action = bpy.context.scene.animation_data.action
        slot = bpy.context.scene.animation_data.action_slot
        curves = {fc.data_path: fc for fc in anim_utils.action_get_channelbag_for_slot(action, slot).fcurves}
    offset = curves[f'sequence_editor.strips_all["{live.name}"].transform.offset_x']
    assert len(offset.keyframe_points) == 5
    # the shake is taken out: the shaken frames move the other way than the still ones
    xs = [k.co[1] for k in offset.keyframe_points]
    assert xs[1] - xs[0] > 2 and xs[3] - xs[2] > 2, xs


def _write_vectors(folder: Path, frames: int, height: int, width: int, dx: float) -> str:
    from daflow_vfx.io.exr import write_motion_exr

    folder.mkdir(parents=True, exist_ok=True)
    fwd = np.zeros((height, width, 2), np.float32)  # [H, W, 2]: the right half moves dx px right
    fwd[:, width // 2:, 0] = dx
    for k in range(frames):
        write_motion_exr(folder / f"v.{1001 + k:04d}.exr", forward=fwd, backward=-fwd, layout="blender")
    return str(folder / "v.####.exr")


def test_vector_blur_graph_renders_blur_where_there_is_motion(settings, extension, tmp_path: Path) -> None:
    import OpenImageIO as oiio

    height, width = 32, 48
    stripes = np.zeros((2, height, width, 3), np.float32)
    stripes[:, :, ::6] = 1.0  # vertical lines: horizontal motion smears them
    plate = write_sequence(tmp_path / "plate", stripes, name="lines", ext="exr")
    vectors = _write_vectors(tmp_path / "vec", 2, height, width, dx=5.0)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    assert bpy.ops.daflow.setup_vector_blur("EXEC_DEFAULT", source=plate, vectors=vectors) == {"FINISHED"}
    tree = scene.compositing_node_group
    nodes = {n.name: n for n in tree.nodes}
    blur = nodes["DAFlow Vector Blur"]
    assert blur.bl_idname == "CompositorNodeVecBlur"
    speed_link = blur.inputs["Speed"].links[0]
    assert speed_link.from_node.name == "DAFlow Vectors" and speed_link.from_socket.name == "Vector"
    assert blur.inputs["Image"].links[0].from_node.name == "DAFlow Plate"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (width, height)
    scene.frame_set(1001)
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.filepath = str(tmp_path / "comp.exr")
    bpy.ops.render.render(write_still=True)
    out = oiio.ImageBuf(str(tmp_path / "comp.exr")).get_pixels(oiio.FLOAT)[..., :3]  # [H, W, 3]
    diff = np.abs(out - stripes[0]).mean(axis=-1)  # [H, W]
    still, moving = diff[:, 4:width // 2 - 8].mean(), diff[:, width // 2 + 8:-4].mean()
    assert moving > 0.1
    assert moving > still + 0.03


def test_vector_blur_without_vectors_reports_an_error(settings, tmp_path: Path) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(2, 16, 16, dx=1, dy=0))
    with pytest.raises(RuntimeError, match="no vector EXRs on disk"):
        bpy.ops.daflow.setup_vector_blur("EXEC_DEFAULT", source=plate, vectors=str(tmp_path / "v.####.exr"))


def test_panels_draw_in_both_editors(extension) -> None:
    """The panel's draw code runs against the scene settings (no window needed)."""
    class Layout:
        def __getattr__(self, name):
            return lambda *a, **k: self

    class Ctx:
        scene = bpy.context.scene

    bpy.context.scene.daflow.running = True
    extension.ui.draw_panel(Layout(), Ctx())
    bpy.context.scene.daflow.running = False
    assert sys.modules[extension.__name__ + ".ui"] is extension.ui


def test_vector_detail_control_reaches_every_action(settings, fake_daflow, extension, tmp_path: Path) -> None:
    prop = settings.bl_rna.properties["detail"]
    assert (prop.name, prop.default, prop.hard_min, prop.hard_max) == ("Vector Detail", 1.0,
                                                                       pytest.approx(0.01), 1.0)
    drawn: list[str] = []

    class Layout:  # records the properties the panel draws
        def __getattr__(self, name):
            return lambda *a, **k: self

        def prop(self, data, name, **kwargs):
            drawn.append(name)
            return self

    class Ctx:
        scene = bpy.context.scene

    extension.ui.draw_panel(Layout(), Ctx())
    assert "detail" in drawn
    plate = write_sequence(tmp_path / "plate", translated_frames(2, 16, 16, dx=1, dy=0))
    record = tmp_path / "argv.json"
    fake_daflow(f"import json\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    settings.detail = 0.5
    for action in ("compute_vectors", "retime", "stabilize"):
        record.unlink(missing_ok=True)
        assert getattr(bpy.ops.daflow, action)("EXEC_DEFAULT", source=plate) == {"FINISHED"}
        extension.core.wait(timeout=30)
        argv = json.loads(record.read_text())
        assert argv[argv.index("--detail") + 1] == "0.5", action


def test_install_with_bpy_into_an_extension_repository(extension, tmp_path: Path) -> None:
    from daflow_vfx.hosts.blender import build_extension, install

    repo = bpy.context.preferences.extensions.repos.new(
        name="daflow_install_test", module="daflow_install_test", custom_directory=str(tmp_path / "repo"),
        source="USER")
    try:
        # not enabled: the session's copy of the extension already owns the class names
        report = install(build_extension(tmp_path / "dist"), repo="daflow_install_test", enable=False)
        assert report.how == "bpy"
        assert (Path(repo.directory) / "daflow_vfx" / "blender_manifest.toml").is_file()
    finally:
        bpy.context.preferences.extensions.repos.remove(repo)


def test_source_from_the_active_clip_and_from_a_strip(settings, extension, tmp_path: Path) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 16, 16, dx=1, dy=0), name="sh030")
    clip = bpy.data.movieclips.load(plate.replace("####", "1001"))
    clip.frame_start = 40
    bpy.context.scene.active_clip = clip
    source = extension.ops.resolve_source(bpy.context)
    assert (source.path, source.kind, source.first_frame, source.timeline_start, source.name) == \
        (plate, "sequence", 1001, 40, "sh030")
    strip = _sequencer_source(tmp_path / "strip", translated_frames(2, 16, 16, dx=1, dy=0), start=7)
    source = extension.ops.resolve_source(bpy.context)  # the active strip wins over the scene's clip
    assert source.strip == strip.name and source.timeline_start == 7 and source.channel == 2
    movie = tmp_path / "shot.mov"
    movie.write_bytes(b"")  # only its name and existence matter here; the process reads it
    source = extension.ops.resolve_source(bpy.context, str(movie))
    assert (source.kind, source.path, source.first_frame) == ("movie", str(movie), 1)


def test_the_strips_colour_space_reaches_the_command(settings, fake_daflow, extension,
                                                     tmp_path: Path) -> None:
    strip = _sequencer_source(tmp_path, translated_frames(2, 16, 16, dx=1, dy=0))
    record = tmp_path / "argv.json"
    fake_daflow(f"import json\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")

    def passed() -> str:
        record.unlink(missing_ok=True)
        assert bpy.ops.daflow.compute_vectors("EXEC_DEFAULT") == {"FINISHED"}   # the active strip
        extension.core.wait(timeout=30)
        argv = json.loads(record.read_text())
        return argv[argv.index("--input-colorspace") + 1]

    assert strip.colorspace_settings.name == "sRGB"   # Blender's pick for these PNGs
    assert passed() == "srgb"
    strip.colorspace_settings.name = "Linear Rec.709"
    assert passed() == "linear"
    strip.colorspace_settings.name = "ACEScg"
    assert passed() == "ACEScg"
    settings.input_colorspace = "srgb"   # the panel's choice wins over the strip's
    assert passed() == "srgb"
    settings.input_colorspace = "auto"


def test_external_python_preference_finds_daflow_vfx(extension) -> None:
    import daflow_vfx

    root = extension.core._external_root(sys.executable)
    assert root is not None
    assert Path(root, "daflow_vfx").resolve() == Path(daflow_vfx.__file__).parent.resolve()
