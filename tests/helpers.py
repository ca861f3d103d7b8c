"""Tiny plates made inside tests: textures, translated sequences, EXR channel reading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from daflow_vfx.estimators.base import FlowEstimator, WindowFlows


def noise_texture(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """Smooth multi-scale colour noise ``[H, W, 3]`` in [0.05, 0.95]: easy for any flow method."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((16, 1.0), (6, 0.6), (3, 0.4)):
        grid = rng.random((height // cell + 2, width // cell + 2, 3), dtype=np.float32)
        out += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    out -= out.min()
    out /= out.max()
    return out * 0.9 + 0.05


def translated_frames(count: int, height: int, width: int, *, dx: int, dy: int, seed: int = 0) -> np.ndarray:
    """``[N, H, W, 3]``: frame k is the texture moved by (k*dx, k*dy) pixels, +y down.

    The texture is rolled (integer, exact) and the frame cropped from its middle, with a margin larger
    than the total motion, so every pixel of every frame is real texture and the motion is exact.
    """
    margin = (count + 1) * max(abs(dx), abs(dy)) + 8
    base = noise_texture(height + 2 * margin, width + 2 * margin, seed=seed)
    frames = [np.roll(base, (k * dy, k * dx), axis=(0, 1))[margin:margin + height, margin:margin + width]
              for k in range(count)]
    return np.stack(frames).astype(np.float32)


def write_sequence(folder: Path, frames: np.ndarray, *, name: str = "plate", first: int = 1001,
                   ext: str = "png") -> str:
    """Write ``frames`` ``[N, H, W, 3]`` as ``folder/name.####.ext``; returns the pattern."""
    from daflow_vfx.io.images import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for k, image in enumerate(frames):
        write_image(folder / f"{name}.{first + k:04d}.{ext}", image)
    return str(folder / f"{name}.####.{ext}")


def read_exr(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All channels of an EXR by name (``[H, W]`` float32) and its string/number attributes."""
    import OpenImageIO as oiio

    buf = oiio.ImageBuf(os.fspath(path))
    spec = buf.spec()
    pixels = buf.get_pixels(oiio.FLOAT)  # [H, W, C]
    channels = {name: np.asarray(pixels[..., i]) for i, name in enumerate(spec.channelnames)}
    attrs = {a.name: a.value for a in spec.extra_attribs}
    return channels, attrs


class LocalEstimator(FlowEstimator):
    """Pairwise, stride 1, each output pixel a function of the same input pixel only.

    Padding and tiling must therefore reproduce the untiled result exactly.
    """

    name = "local"
    version = "test"
    window = 2
    stride = 1

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        diff = frames[1:] - frames[:-1]  # [F-1, H, W, 3]
        return WindowFlows(forward=10.0 * diff[..., :2], backward=-10.0 * diff[..., 1:],
                           confidence_forward=frames[1:, ..., 0], confidence_backward=frames[:-1, ..., 1])


class WindowedEstimator(FlowEstimator):
    """Window of 3, stride 8: every output depends on all frames of its window (like DA-Flow's joint
    attention), so results change if windows are cut differently, and inputs must be padded."""

    name = "windowed"
    version = "test"
    window = 3
    stride = 8

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        assert frames.shape[1] % self.stride == 0 and frames.shape[2] % self.stride == 0, frames.shape
        self.shapes.append(tuple(frames.shape))
        context = frames.mean(axis=(0, 3))[None, ..., None]  # [1, H, W, 1]: the whole window
        diff = frames[1:] - frames[:-1]  # [F-1, H, W, 3]
        return WindowFlows(forward=diff[..., :2] + context, backward=-diff[..., 1:] + context)


def write_shift_pairs(folder: Path) -> Path:
    """Two textured 64x80 pairs moved by known integer shifts, laid out like flow-dev (pairs.csv, .flo)."""
    import cv2

    from daflow_vfx.io import write_flo, write_image

    rng = np.random.default_rng(0)
    rows = ["name,img1,img2,flow"]
    for i, (dx, dy) in enumerate([(2, 1), (-3, 2)]):
        base = cv2.GaussianBlur(rng.random((80, 96, 3), dtype=np.float32), (0, 0), 1.5)
        a = base[8:72, 8:88]
        b = np.roll(base, (dy, dx), axis=(0, 1))[8:72, 8:88]
        write_image(folder / f"p{i}_1.png", a)
        write_image(folder / f"p{i}_2.png", b)
        write_flo(folder / f"p{i}.flo", np.broadcast_to(np.float32([dx, dy]), (64, 80, 2)).copy())
        rows.append(f"p{i},p{i}_1.png,p{i}_2.png,p{i}.flo")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder
