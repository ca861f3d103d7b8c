"""Our Blender layout against Cycles' own Vector pass, rendered in real headless Blender.

A textured plane seen by an orthographic camera moves a known number of pixels per frame. Blender's
Vector pass for that motion must equal what ``write_motion_exr(layout="blender")`` writes, and the vectors
daflow-vfx computes from the rendered frames (``--model dis``) must match Blender's pass on the plane.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from tests.helpers import read_exr  # noqa: E402

WIDTH, HEIGHT = 96, 64
PIXEL = 0.1  # Blender units per pixel (ortho_scale = WIDTH * PIXEL)
DX, DY = 3, 2  # the plane moves 3 px right and 2 px DOWN per frame


def _scene() -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    scene.render.resolution_percentage = 100
    scene.render.use_motion_blur = False  # Cycles writes no Vector pass with motion blur on
    scene.view_settings.view_transform = "Standard"
    scene.view_layers[0].use_pass_vector = True
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = WIDTH * PIXEL
    camera.location = (0.0, 0.0, 10.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    bpy.ops.mesh.primitive_plane_add(size=30)
    plane = bpy.context.active_object
    material = bpy.data.materials.new("texture")
    if material.node_tree is None:  # Blender < 5 makes the node tree on request
        material.use_nodes = True
    nodes = material.node_tree.nodes
    emission = nodes.new("ShaderNodeEmission")
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 40.0
    noise.inputs["Detail"].default_value = 6.0
    output = next(n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial")
    material.node_tree.links.new(noise.outputs["Color"], emission.inputs["Color"])
    material.node_tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    plane.data.materials.append(material)
    for frame in (1, 2, 3):
        # Blender's y is up: moving DOWN in the image is -y
        plane.location = ((frame - 1) * DX * PIXEL, -(frame - 1) * DY * PIXEL, 0.0)
        plane.keyframe_insert("location", frame=frame)


def _render(path: Path, *, vectors: bool) -> None:
    """One frame: the beauty (PNG), or the Vector pass through the compositor (float EXR RGBA = XYZW)."""
    scene = bpy.context.scene
    tree = bpy.data.node_groups.new("convention", "CompositorNodeTree")
    scene.compositing_node_group = tree
    tree.interface.new_socket(name="Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    layers = tree.nodes.new("CompositorNodeRLayers")
    out = tree.nodes.new("NodeGroupOutput")
    tree.links.new(layers.outputs["Vector" if vectors else "Image"], out.inputs[0])
    settings = scene.render.image_settings
    if vectors:
        settings.file_format, settings.color_depth, settings.color_mode = "OPEN_EXR", "32", "RGBA"
    else:
        settings.file_format, settings.color_mode = "PNG", "RGB"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    bpy.data.node_groups.remove(tree)


@pytest.fixture(scope="module")
def cycles_render(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """Frames 1-3 as PNGs and Blender's Vector pass of frame 2 (``[H, W, 4]`` X, Y, Z, W)."""
    import OpenImageIO as oiio

    bpy.ops.wm.read_homefile(use_empty=True)
    folder = tmp_path_factory.mktemp("cycles")
    _scene()
    for frame in (1, 2, 3):
        bpy.context.scene.frame_set(frame)
        _render(folder / f"plate.{frame:04d}.png", vectors=False)
    bpy.context.scene.frame_set(2)
    _render(folder / "blender_vector.exr", vectors=True)
    blender = oiio.ImageBuf(str(folder / "blender_vector.exr")).get_pixels(oiio.FLOAT)  # [H, W, 4]
    return folder, np.asarray(blender, np.float32)


def test_cycles_vector_pass_equals_our_blender_layout(cycles_render, tmp_path: Path) -> None:
    from daflow_vfx.io.exr import write_motion_exr

    _, blender = cycles_render
    forward = np.zeros((HEIGHT, WIDTH, 2), np.float32)  # [H, W, 2] .flo convention: +x right, +y down
    forward[..., 0], forward[..., 1] = DX, DY
    write_motion_exr(tmp_path / "ours.exr", forward=forward, backward=-forward, layout="blender", half=False)
    ours, _ = read_exr(tmp_path / "ours.exr")
    for index, name in enumerate(("Vector.X", "Vector.Y", "Vector.Z", "Vector.W")):
        np.testing.assert_allclose(blender[..., index], ours[name], atol=0.01, err_msg=name)


@pytest.mark.slow
def test_daflow_vectors_from_the_rendered_frames_match_blender(cycles_render) -> None:
    folder, blender = cycles_render
    out = folder / "daflow" / "vec.####.exr"
    cmd = [sys.executable, "-c", "import sys; from daflow_vfx.cli import main; sys.exit(main())", "render",
           str(folder / "plate.####.png"), "-o", str(out), "--model", "dis", "--device", "cpu",
           "--layout", "blender", "--float"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ours, _ = read_exr(str(out).replace("####", "0002"))
    inner = (slice(8, -8), slice(8, -8))  # away from the frame edges, where flow has no support
    errors = {}
    for index, name in enumerate(("Vector.X", "Vector.Y", "Vector.Z", "Vector.W")):
        errors[name] = float(np.abs(ours[name][inner] - blender[..., index][inner]).mean())
    endpoint = float(np.hypot(ours["Vector.Z"][inner] - blender[..., 2][inner],
                              ours["Vector.W"][inner] - blender[..., 3][inner]).mean())
    print(f"daflow dis vs Cycles Vector pass, mean abs error per channel {errors}, "
          f"forward endpoint error {endpoint:.3f} px")
    assert endpoint < 0.5
    assert max(errors.values()) < 0.5
