"""The demo plate: a short clip with known motion, degraded like a real plate, generated deterministically.

A textured background pans at a constant sub-pixel speed while a textured disc travels on a known
curve in front of it. The clean clip is blurred, given noise and compressed with H.264 (libx264
through PyAV); the decoded frames become the PNG plate, so the plate carries real codec artefacts.
The exact forward flow of every frame is known and written as Middlebury ``.flo`` next to it.

Layout of ``DIR`` after :func:`run_demo`::

    plate/demo.1001.png .. demo.1024.png   the degraded plate (decoded H.264, 8-bit sRGB)
    plate/demo.mp4                         the same clip as the H.264 file
    gt/demo.1001.flo .. demo.1023.flo      ground-truth forward flow (.flo convention, +y down)
    vectors/demo.1001.exr ..               motion vectors rendered by `daflow-vfx render`

Everything is seeded, and the encoder runs single-threaded, so the same seed gives the same files.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from daflow_vfx.jobs.options import EngineOptions
from daflow_vfx.jobs.render import RenderJob, RenderReport, render

log = logging.getLogger(__name__)

__all__ = ["DemoJob", "DemoReport", "make_clip", "degrade_simple", "write_demo_plate", "run_demo"]

FIRST_FRAME = 1001
_U8_MAX = float(np.iinfo(np.uint8).max)  # 8-bit code range for the encoder's rgb24 input

# Motion of the demo, in pixels per frame, .flo convention (+x right, +y down)
BACKGROUND_VELOCITY = (-2.5, 0.75)  # the camera pans right and tilts up: content drifts left and down
DISC_RADIUS = 30.0


@dataclass(frozen=True, kw_only=True)
class DemoJob:
    output_dir: str
    model: str = "default"
    device: str = "auto"
    layout: str = "both"
    seed: int = 0
    frames: int = 24
    width: int = 320
    height: int = 192


@dataclass(kw_only=True)
class DemoReport:
    plate: str  # PNG sequence pattern
    video: str  # the H.264 file
    gt: str  # ground-truth .flo pattern
    vectors: str  # rendered EXR pattern
    frames: int
    width: int
    height: int
    render: RenderReport
    mean_epe: float | None  # mean endpoint error of the rendered forward flow vs ground truth, in pixels


def _value_noise(rng: np.random.Generator, height: int, width: int, cells: list[int]) -> np.ndarray:
    """Multi-octave colour value noise ``[H, W, 3]`` in [0, 1]: texture flow methods can lock on to."""
    import cv2

    out = np.zeros((height, width, 3), np.float32)
    total = 0.0
    for i, cell in enumerate(cells):
        grid = rng.random((max(2, height // cell + 2), max(2, width // cell + 2), 3), dtype=np.float32)
        layer = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        weight = 0.6**i
        out += weight * layer
        total += weight
    out /= total
    lo, hi = np.percentile(out, [1, 99])
    return np.clip((out - lo) / max(hi - lo, 1e-6) * 0.8 + 0.1, 0.0, 1.0)


def disc_centre(k: int, *, width: int, height: int, frames: int) -> tuple[float, float]:
    """Centre of the disc in frame index ``k``: left to right with a sine bob, sub-pixel positions."""
    x = width * 0.2 + k * (width * 0.6) / max(frames - 1, 1)
    y = height * 0.5 + height * 0.18 * math.sin(2.0 * math.pi * k / max(frames, 1))
    return x, y


def make_clip(*, frames: int = 24, width: int = 320, height: int = 192, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """The clean clip ``[N, H, W, 3]`` (display [0, 1]) and its forward flows ``[N-1, H, W, 2]``."""
    import cv2

    rng = np.random.default_rng(seed)
    bu, bv = BACKGROUND_VELOCITY
    margin = 8
    canvas_w = width + int(math.ceil(abs(bu) * frames)) + 2 * margin
    canvas_h = height + int(math.ceil(abs(bv) * frames)) + 2 * margin
    background = _value_noise(rng, canvas_h, canvas_w, [40, 12, 4, 2])  # [Hc, Wc, 3]
    size = int(2 * DISC_RADIUS + 4)
    # the disc: a warm checkerboard modulated by fine noise, so it reads apart from the background
    cy_, cx_ = np.mgrid[0:size, 0:size]
    checker = (((cy_ // 6) + (cx_ // 6)) % 2).astype(np.float32)[..., None]  # [S, S, 1]
    warm, cool = np.array([0.95, 0.75, 0.25], np.float32), np.array([0.35, 0.1, 0.05], np.float32)
    grain = 0.75 + 0.25 * _value_noise(rng, size, size, [6, 2])
    disc_tex = (checker * warm + (1.0 - checker) * cool) * grain

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    # where the background content of frame 0 sits on the canvas (so every frame samples inside it)
    ox = margin + max(bu, 0.0) * frames
    oy = margin + max(bv, 0.0) * frames
    clip = np.empty((frames, height, width, 3), np.float32)
    alphas = np.empty((frames, height, width), np.float32)
    for k in range(frames):
        # content at (x, y) in frame k came from canvas position (x - k*u, y - k*v) + offset
        bg = cv2.remap(background, xs - k * bu + ox, ys - k * bv + oy, cv2.INTER_CUBIC,
                       borderMode=cv2.BORDER_REFLECT101)
        cx, cy = disc_centre(k, width=width, height=height, frames=frames)
        fg = cv2.remap(disc_tex, xs - cx + size / 2, ys - cy + size / 2, cv2.INTER_CUBIC,
                       borderMode=cv2.BORDER_REFLECT101)
        dist = np.hypot(xs - cx, ys - cy)
        alpha = np.clip(DISC_RADIUS + 0.5 - dist, 0.0, 1.0)  # one-pixel anti-aliased edge
        clip[k] = alpha[..., None] * fg + (1.0 - alpha[..., None]) * bg
        alphas[k] = alpha
    flows = np.empty((max(frames - 1, 0), height, width, 2), np.float32)
    for k in range(frames - 1):
        c0 = disc_centre(k, width=width, height=height, frames=frames)
        c1 = disc_centre(k + 1, width=width, height=height, frames=frames)
        on_disc = alphas[k] >= 0.5  # a pixel follows whatever surface covers it in frame k
        flows[k, ..., 0] = np.where(on_disc, c1[0] - c0[0], bu)
        flows[k, ..., 1] = np.where(on_disc, c1[1] - c0[1], bv)
    return np.clip(clip, 0.0, 1.0), flows


def degrade_simple(clip: np.ndarray, *, seed: int = 0, blur_sigma: float = 1.0, noise_sigma: float = 0.02
                   ) -> np.ndarray:
    """Lens-like Gaussian blur, then Gaussian sensor noise: ``[N, H, W, 3]`` -> same, in [0, 1]."""
    import cv2

    rng = np.random.default_rng([seed, 1])
    out = np.empty_like(clip, dtype=np.float32)
    for k, frame in enumerate(clip):
        blurred = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), blur_sigma)
        out[k] = blurred + rng.normal(0.0, noise_sigma, size=frame.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def encode_h264(clip: np.ndarray, path: str, *, crf: int = 30, fps: int = 24) -> np.ndarray:
    """Encode ``[N, H, W, 3]`` [0, 1] to an H.264 mp4 at ``path`` and return the decoded frames as uint8.

    Single-threaded so the bitstream, and hence the plate, is identical on every machine.
    """
    import av

    frames_u8 = np.clip(clip * _U8_MAX + 0.5, 0, _U8_MAX).astype(np.uint8)  # [N, H, W, 3]
    height, width = frames_u8.shape[1:3]
    tmp = f"{path}.tmp-{os.getpid()}.mp4"
    try:
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1
            stream.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
            for image in frames_u8:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with av.open(tmp) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return np.stack(decoded)  # [N, H, W, 3] uint8


def write_demo_plate(output_dir: str, *, frames: int = 24, width: int = 320, height: int = 192, seed: int = 0
                     ) -> tuple[str, str, str]:
    """Write plate/, the mp4 and gt/ under ``output_dir``; returns (plate pattern, video, gt pattern)."""
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io.flo import write_flo
    from daflow_vfx.io.images import write_image

    if frames < 2:
        raise ValueError("the demo needs at least two frames")
    plate_dir, gt_dir = os.path.join(output_dir, "plate"), os.path.join(output_dir, "gt")
    os.makedirs(plate_dir, exist_ok=True)
    os.makedirs(gt_dir, exist_ok=True)
    clean, flows = make_clip(frames=frames, width=width, height=height, seed=seed)
    degraded = degrade_simple(clean, seed=seed)
    video = os.path.join(plate_dir, "demo.mp4")
    decoded = encode_h264(degraded, video)
    plate = os.path.join(plate_dir, "demo.####.png")
    plate_files = SequencePattern.parse(plate)
    for k, image in enumerate(decoded):
        # back to float by the pixel type's range; the PNG writer quantises it to the same 8-bit codes
        write_image(plate_files.path(FIRST_FRAME + k), image.astype(np.float32) / _U8_MAX)
    gt = os.path.join(gt_dir, "demo.####.flo")
    gt_files = SequencePattern.parse(gt)
    for k, flow in enumerate(flows):
        write_flo(gt_files.path(FIRST_FRAME + k), flow)
    return plate, video, gt


def run_demo(job: DemoJob, *, progress: Callable[[int, int], None] | None = None) -> DemoReport:
    """Generate the demo plate under ``job.output_dir`` and render its vectors into ``vectors/``."""
    from daflow_vfx.frames import SequencePattern
    from daflow_vfx.io import prepare_output_folder
    from daflow_vfx.io.exr import read_motion_exr
    from daflow_vfx.io.flo import read_flo

    # the model and device first: a demo that cannot render must not leave a plate behind
    engine = EngineOptions(model=job.model, device=job.device)
    engine.resolved_device()
    prepare_output_folder(job.output_dir)
    plate, video, gt = write_demo_plate(job.output_dir, frames=job.frames, width=job.width, height=job.height,
                                        seed=job.seed)
    vectors = os.path.join(job.output_dir, "vectors", "demo.####.exr")
    job_render = RenderJob(input=plate, output=vectors, layout=job.layout, engine=engine)
    report = render(job_render, progress=progress)
    errors = []
    gt_files, vector_files = SequencePattern.parse(gt), SequencePattern.parse(vectors)
    for frame in report.written:
        gt_path = gt_files.path(frame)
        if not os.path.exists(gt_path):
            continue  # the last frame has no forward flow
        forward = read_motion_exr(vector_files.path(frame)).forward
        if forward is not None:
            errors.append(float(np.linalg.norm(forward - read_flo(gt_path), axis=-1).mean()))
    return DemoReport(plate=plate, video=video, gt=gt, vectors=vectors, frames=job.frames, width=job.width,
                      height=job.height, render=report, mean_epe=float(np.mean(errors)) if errors else None)
