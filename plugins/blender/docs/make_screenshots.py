"""Render the README pictures headless with PyPI ``bpy`` (no window, no GPU).

    python plugins/blender/docs/make_screenshots.py      # in a venv with `pip install -e ".[blender]"`

- ``vector_blur.png``: a plate (left) and the compositor graph built by **Setup Vector Blur** rendering it
  with our vectors (right): the right half moves 8 px per frame and is smeared, the left half is still.
- ``cycles_convention.png``: a Cycles frame of a moving textured plane, Blender's own Vector pass (Z, W as
  red, green) and the vectors daflow-vfx computed from the rendered frames, written in the Blender layout.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))


def _enable_extension(root: Path) -> str:
    import bpy

    from daflow_vfx.hosts.blender import build_extension, install

    repo = bpy.context.preferences.extensions.repos.new(name="daflow_docs", module="daflow_docs",
                                                        custom_directory=str(root / "repo"), source="USER")
    install(build_extension(root / "dist"), extensions_dir=repo.directory)
    module = "bl_ext.daflow_docs.daflow_vfx"
    bpy.ops.preferences.addon_enable(module=module)
    return module


def _save(path: Path, panels: list[np.ndarray]) -> None:
    from daflow_vfx.io.images import write_image

    gap = np.ones((panels[0].shape[0], 4, 3), np.float32)
    row = [p for pair in zip(panels, [gap] * len(panels), strict=True) for p in pair][:-1]
    write_image(path, np.concatenate(row, axis=1))


def vector_blur(root: Path) -> None:
    import bpy
    import OpenImageIO as oiio

    from daflow_vfx.io.exr import write_motion_exr
    from daflow_vfx.io.images import write_image
    from tests.helpers import noise_texture

    height, width = 96, 160
    plate = noise_texture(height, width, seed=5) ** 2  # [H, W, 3]
    plate[:, ::12] = 1.0
    forward = np.zeros((height, width, 2), np.float32)  # [H, W, 2]: right half moves 8 px right
    forward[:, width // 2:, 0] = 8.0
    for frame in (1, 2):
        write_image(root / f"plate.{frame:04d}.exr", plate)
        write_motion_exr(root / f"vec.{frame:04d}.exr", forward=forward, backward=-forward, layout="blender")
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.view_settings.view_transform = "Standard"
    bpy.ops.daflow.setup_vector_blur("EXEC_DEFAULT", source=str(root / "plate.####.exr"),
                                     vectors=str(root / "vec.####.exr"))
    scene.frame_set(1)
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.filepath = str(root / "blurred.exr")
    bpy.ops.render.render(write_still=True)
    blurred = oiio.ImageBuf(str(root / "blurred.exr")).get_pixels(oiio.FLOAT)[..., :3]
    srgb = [np.clip(p, 0, 1) ** (1 / 2.2) for p in (plate, blurred)]
    _save(HERE / "vector_blur.png", srgb)


def cycles_convention(root: Path) -> None:
    import bpy
    import OpenImageIO as oiio

    from tests.blender import test_cycles_convention as t
    from tests.helpers import read_exr

    bpy.ops.wm.read_homefile(use_empty=True)
    t._scene()
    for frame in (1, 2, 3):
        bpy.context.scene.frame_set(frame)
        t._render(root / f"cyc.{frame:04d}.png", vectors=False)
    bpy.context.scene.frame_set(2)
    t._render(root / "cyc_vector.exr", vectors=True)
    blender = oiio.ImageBuf(str(root / "cyc_vector.exr")).get_pixels(oiio.FLOAT)  # [H, W, 4]
    subprocess.run([sys.executable, "-c", "import sys; from daflow_vfx.cli import main; sys.exit(main())",
                    "render", str(root / "cyc.####.png"), "-o", str(root / "dis.####.exr"), "--model", "dis",
                    "--device", "cpu", "--layout", "blender", "--float"], check=True, capture_output=True)
    ours, _ = read_exr(root / "dis.0002.exr")
    beauty = oiio.ImageBuf(str(root / "cyc.0002.png")).get_pixels(oiio.FLOAT)[..., :3]

    def colour(z: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.stack([0.5 + z / 8, 0.5 + w / 8, np.full_like(z, 0.5)], -1).clip(0, 1)

    _save(HERE / "cycles_convention.png", [beauty, colour(blender[..., 2], blender[..., 3]),
                                           colour(ours["Vector.Z"], ours["Vector.W"])])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="daflow-shots-"))
    try:
        _enable_extension(root)
        vector_blur(root)
        cycles_convention(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
