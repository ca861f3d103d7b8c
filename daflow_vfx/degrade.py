"""Real-world degradations for clips: what a plate goes through between the scene and our input.

The model follows Real-ESRGAN's *second-order* degradation (Wang et al., 2021), extended to
video the way RealBasicVSR does it, and runs on a whole clip so that inter-frame effects are
real:

1. **Motion blur along the true motion** (only when ``flows_forward`` is given): each frame is
   the average of N copies of itself warped along fractions of its flow over the shutter
   interval (box shutter centred on the frame, constant velocity within it).
2. **Round 1**: blur (isotropic / anisotropic Gaussian, generalized Gaussian, plateau kernels,
   or a sinc filter), random resize up or down, noise (Gaussian or Poisson, colour or grey),
   JPEG.
3. **Round 2** (with a preset-dependent probability): blur, resize, noise.
4. **Final**: resize back to the original size with a sinc filter (or none), and the second
   JPEG, in a random order (Real-ESRGAN: half of the clips JPEG first, half resize+sinc first).
5. **Video compression** of the whole clip through PyAV (libx264 and VP9 by CRF, mpeg4 and
   mpeg2video by bit rate), encoded to an in-memory container and decoded back, so the P/B-frame
   artifacts are those of a real codec. (libx265 is left out on purpose: the FFmpeg build PyAV
   ships corrupts its heap on small frames and sometimes emits packets without timestamps.)

Blur sigmas, sinc cut-offs, noise levels, JPEG qualities and the shutter *drift* slowly across
a clip: each has a start and an end value (the end at most 15% of the range away from the
start) and frame ``i`` of ``F`` uses ``start + (end - start) * i / (F - 1)``. Resize factors,
kernel shapes and the codec stay fixed for the clip.

Everything is deterministic for a given ``seed``: parameters come from
``np.random.default_rng(seed)`` (see :func:`sample_params`), per-frame noise from
``np.random.default_rng([seed, 1])``; OpenCV draws no random numbers and the encoders run
single-threaded. The output always has the input's shape.

The parameters and their ranges per preset are :mod:`daflow_vfx.degrade_params`; this module applies them.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import cv2
import numpy as np

from daflow_vfx.degrade_params import (
    _ISOTROPIC,
    _U8_MAX,
    BLUR_KINDS,
    INTERPOLATIONS,
    PRESETS,
    VIDEO_CODECS,
    BlurParams,
    DegradeParams,
    Drift,
    FinalParams,
    MotionBlurParams,
    NoiseParams,
    StageParams,
    VideoParams,
    sample_params,
)
from daflow_vfx.errors import DaflowError, UsageError

if TYPE_CHECKING:
    from daflow_vfx.jobs.options import VideoOptions

# The parameters (degrade_params.py) are part of this module's interface: degrade_clip(params=...) takes them.
__all__ = [
    "BLUR_KINDS",
    "INTERPOLATIONS",
    "PRESETS",
    "VIDEO_CODECS",
    "BlurParams",
    "DegradeJob",
    "DegradeParams",
    "FinalParams",
    "MotionBlurParams",
    "NoiseParams",
    "StageParams",
    "VideoParams",
    "compress_video",
    "degrade_clip",
    "degrade_plate",
    "gaussian_family_kernel",
    "motion_blur",
    "run_degrade",
    "sample_params",
    "sinc_kernel",
]

logger = logging.getLogger(__name__)

_CV2_INTERP = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
# Real-ESRGAN's Poisson noise treats the image as counts of 2**ceil(log2(#levels)) = 256 for 8-bit content.
_POISSON_PEAK = 256.0
_NOISE_STREAM = 1  # default_rng([seed, _NOISE_STREAM]) draws the per-frame noise
_MIN_SIDE = 8  # resizes never go below this many pixels, so kernels and codecs stay meaningful
_VIDEO_FPS = 24
_CONTAINERS = {"libx264": "mp4", "mpeg4": "avi", "mpeg2video": "mpeg", "libvpx-vp9": "webm"}


# --------------------------------------------------------------------------------------------- kernels
def _lerp(d: Drift, a: float) -> float:
    return d[0] + (d[1] - d[0]) * a


def _offsets(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(r, r)  # [size, size] each
    return xx, yy


def gaussian_family_kernel(kind: str, size: int, sigma_x: float, sigma_y: float, angle: float,
                           beta: float = 1.0) -> np.ndarray:
    """Normalised ``[size, size]`` float32 kernel of one of :data:`BLUR_KINDS`.

    q = d^T S^-1 d with S = R diag(sigma_x^2, sigma_y^2) R^T; Gaussian exp(-q/2), generalized
    exp(-q^beta / 2), plateau 1 / (q^beta + 1).
    """
    if kind in _ISOTROPIC:
        sigma_y, angle = sigma_x, 0.0
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    inv = rot @ np.diag([1.0 / sigma_x**2, 1.0 / sigma_y**2]) @ rot.T
    xx, yy = _offsets(size)
    q = inv[0, 0] * xx * xx + 2.0 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy
    if kind.startswith("generalized"):
        k = np.exp(-0.5 * np.power(q, beta))
    elif kind.startswith("plateau"):
        k = 1.0 / (np.power(q, beta) + 1.0)
    elif kind in ("iso", "aniso"):
        k = np.exp(-0.5 * q)
    else:
        raise UsageError(f"unknown blur kernel {kind!r}; use one of {', '.join(BLUR_KINDS)}")
    return (k / k.sum()).astype(np.float32)


def sinc_kernel(size: int, omega_c: float) -> np.ndarray:
    """Normalised ``[size, size]`` float32 circular low-pass (2-D sinc) with cut-off ``omega_c`` rad/px."""
    from scipy.special import j1  # Bessel J1: numpy has no Bessel functions of the first kind

    xx, yy = _offsets(size)
    r = np.hypot(xx, yy)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = omega_c * j1(omega_c * r) / (2.0 * math.pi * r)
    k[r == 0] = omega_c**2 / (4.0 * math.pi)  # the limit at the centre
    return (k / k.sum()).astype(np.float32)


def _kernel(blur: BlurParams, a: float) -> np.ndarray:
    if blur.kind == "sinc":
        return sinc_kernel(blur.size, _lerp(blur.omega_c, a))
    return gaussian_family_kernel(blur.kind, blur.size, _lerp(blur.sigma_x, a), _lerp(blur.sigma_y, a),
                                  blur.angle, blur.beta)


# --------------------------------------------------------------------------------------------- operations
def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # Every kernel here is point-symmetric, so OpenCV's correlation equals convolution.
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def _resize(img: np.ndarray, hw: tuple[int, int], interpolation: str) -> np.ndarray:
    if img.shape[:2] == hw:
        return img
    return cv2.resize(img, (hw[1], hw[0]), interpolation=_CV2_INTERP[interpolation])


def _add_noise(img: np.ndarray, noise: NoiseParams, a: float, rng: np.random.Generator) -> np.ndarray:
    # img: [h, w, 3]
    level = _lerp(noise.level, a)
    if noise.kind == "gaussian":
        shape = img.shape[:2] + (1,) if noise.gray else img.shape
        return img + rng.standard_normal(shape, dtype=np.float32) * np.float32(level)
    base = np.clip(img, 0.0, 1.0)
    if noise.gray:
        base = cv2.cvtColor(base, cv2.COLOR_RGB2GRAY)[..., None]  # [h, w, 1]
    counts = rng.poisson(base * _POISSON_PEAK).astype(np.float32)
    return img + (counts / np.float32(_POISSON_PEAK) - base) * np.float32(level)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * _U8_MAX + 0.5, 0, _U8_MAX).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    # JPEG is an 8-bit format: quantise, encode, decode.
    ok, buf = cv2.imencode(".jpg", _to_u8(img)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(round(quality))])
    if not ok:
        raise DaflowError(f"OpenCV could not JPEG-encode a {img.shape[1]}x{img.shape[0]} frame; "
                          "check the OpenCV install")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / np.float32(_U8_MAX)


def _scaled(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    return (max(_MIN_SIDE, int(round(hw[0] * scale))), max(_MIN_SIDE, int(round(hw[1] * scale))))


def _stage(img: np.ndarray, st: StageParams, a: float, rng: np.random.Generator, hw: tuple[int, int]
           ) -> np.ndarray:
    if st.blur is not None:
        img = _filter(img, _kernel(st.blur, a))
    img = _resize(img, _scaled(hw, st.scale), st.interpolation)
    if st.noise is not None:
        img = _add_noise(img, st.noise, a, rng)
    if st.jpeg_quality is not None:
        img = _jpeg(img, _lerp(st.jpeg_quality, a))
    return img


def _final(img: np.ndarray, fp: FinalParams, a: float, hw: tuple[int, int]) -> np.ndarray:
    def resize_sinc(x: np.ndarray) -> np.ndarray:
        x = _resize(x, hw, fp.interpolation)
        return _filter(x, _kernel(fp.sinc, a)) if fp.sinc is not None else x

    if fp.jpeg_first:
        return resize_sinc(_jpeg(img, _lerp(fp.jpeg_quality, a)))
    return _jpeg(resize_sinc(img), _lerp(fp.jpeg_quality, a))


def motion_blur(frames: np.ndarray, flows_forward: np.ndarray, shutter: Sequence[float], *,
                max_samples: int = 16) -> np.ndarray:
    """Blur each frame along its motion over a box shutter ``shutter[i]`` (fraction of a frame) long.

    frames: [F, H, W, 3]; flows_forward: [F-1, H, W, 2] (.flo convention, i -> i+1). The last frame
    reuses the previous flow (constant velocity). A point at p in frame i is at p + t*v at time
    i + t, so the frame at i + t is frame i sampled at x - t*v(x) (a backward warp).
    """
    f, h, w, _ = frames.shape
    if f < 2:
        return frames.copy()
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))  # [H, W]
    out = np.empty_like(frames)
    for i in range(f):
        v = flows_forward[min(i, f - 2)].astype(np.float32)  # [H, W, 2]
        s = float(shutter[i])
        extent = s * float(np.sqrt((v * v).sum(-1)).max())  # longest streak, px
        if extent < 0.25:
            out[i] = frames[i]
            continue
        n = int(np.clip(math.ceil(extent) + 1, 2, max_samples))
        acc = np.zeros((h, w, 3), np.float32)
        for t in np.linspace(-s / 2.0, s / 2.0, n, dtype=np.float32):
            acc += cv2.remap(frames[i], xx - t * v[..., 0], yy - t * v[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        out[i] = acc / np.float32(n)
    return out


def compress_video(frames: np.ndarray, video: VideoParams) -> np.ndarray:
    """Encode ``frames`` ([F, H, W, 3] float [0, 1]) with PyAV in memory and decode them back.

    Odd sizes are edge-padded to even (yuv420p needs them) and cropped back. A codec that is not
    in :data:`VIDEO_CODECS`, or missing from this FFmpeg build, falls back to libx264.
    """
    import av

    f, h, w, _ = frames.shape
    codec = video.codec
    if codec not in VIDEO_CODECS or codec not in av.codecs_available:
        logger.warning("codec %s is not supported here; using libx264", codec)
        codec = "libx264"
    u8 = np.pad(_to_u8(frames), ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # [F, H', W', 3] even
    ph, pw = u8.shape[1:3]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=_CONTAINERS.get(codec, "matroska")) as container:
        stream = container.add_stream(codec, rate=_VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.codec_context.thread_count = 1  # deterministic output, and the data loader shares the cores
        stream.codec_context.gop_size = video.gop
        if codec == "libx264":
            stream.options = {"crf": f"{video.crf:.1f}", "preset": video.speed_preset, "threads": "1"}
        elif codec == "libvpx-vp9":
            vp9_crf = int(np.clip(round(video.crf * 63 / 51), 0, 63))
            stream.options = {"crf": str(vp9_crf), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        else:
            stream.bit_rate = max(8000, int(video.bits_per_pixel * pw * ph * _VIDEO_FPS))
        for i, frame in enumerate(u8):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            # Explicit timestamps, so no muxer has to make them up.
            vf.pts, vf.time_base = i, Fraction(1, _VIDEO_FPS)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buf.seek(0)
    with av.open(buf, mode="r") as container:
        container.streams.video[0].codec_context.thread_count = 1
        decoded = [fr.to_ndarray(format="rgb24") for fr in container.decode(video=0)]
    if len(decoded) != f:
        raise DaflowError(f"{codec} round trip returned {len(decoded)} of {f} frames; "
                          "use another codec or report this FFmpeg build")
    out = np.stack(decoded)[:, :h, :w]  # [F, H, W, 3] uint8
    return out.astype(np.float32) / np.float32(_U8_MAX)


def _degrade(frames: np.ndarray, params: DegradeParams, rng: np.random.Generator,
             flows_forward: np.ndarray | None, t0: int, total: int) -> np.ndarray:
    # frames: [F, H, W, 3]; t0/total place this chunk in the whole clip so drift spans the clip.
    f, h, w, _ = frames.shape
    x = np.clip(frames.astype(np.float32, copy=False), 0.0, 1.0)
    alphas = [(t0 + i) / max(total - 1, 1) for i in range(f)]
    if params.motion_blur is not None and flows_forward is not None and f >= 2:
        x = motion_blur(x, flows_forward, [_lerp(params.motion_blur.shutter, a) for a in alphas],
                        max_samples=params.motion_blur.max_samples)
    out = np.empty((f, h, w, 3), np.float32)
    for i in range(f):
        img = np.ascontiguousarray(x[i])
        img = _stage(img, params.first, alphas[i], rng, (h, w))
        if params.second is not None:
            img = _stage(img, params.second, alphas[i], rng, (h, w))
        out[i] = _final(img, params.final, alphas[i], (h, w))
    np.clip(out, 0.0, 1.0, out=out)
    if params.video is not None:
        out = compress_video(out, params.video)
    return out


def degrade_clip(frames: np.ndarray, *, params: DegradeParams | None = None, preset: str = "severe",
                 seed: int, flows_forward: np.ndarray | None = None) -> np.ndarray:
    """Degrade a clip as a camera, a bad scan and a streaming service would.

    frames: [F, H, W, 3] float display-referred [0, 1]. ``params`` (default: drawn from ``preset``
    with ``np.random.default_rng(seed)``) says what happens; ``seed`` (>= 0) also drives the
    per-frame noise. ``flows_forward`` ([F-1, H, W, 2], .flo convention) enables motion blur.
    Returns float32 [F, H, W, 3] in [0, 1], the input's shape.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise UsageError(f"degrade_clip needs frames shaped [F, H, W, 3]; got {list(frames.shape)}")
    f, h, w, _ = frames.shape
    if flows_forward is not None and f >= 2 and tuple(flows_forward.shape) != (f - 1, h, w, 2):
        raise UsageError(f"flows_forward must be shaped {[f - 1, h, w, 2]} for these frames; "
                         f"got {list(flows_forward.shape)}")
    if params is None:
        params = sample_params(preset, np.random.default_rng(seed))
    rng = np.random.default_rng([seed, _NOISE_STREAM])
    return _degrade(frames, params, rng, flows_forward, 0, f)


# --------------------------------------------------------------------------------------------- plates
def _dis_flows(frames: np.ndarray) -> np.ndarray:
    # frames: [F, H, W, 3] display [0, 1] -> [F-1, H, W, 2]; DIS is the cheapest usable stand-in
    # for the true motion of a real plate.
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = [cv2.cvtColor(_to_u8(fr), cv2.COLOR_RGB2GRAY) for fr in frames]
    return np.stack([dis.calc(a, b, None) for a, b in zip(grey[:-1], grey[1:], strict=True)])


def degrade_plate(input_path: str | os.PathLike, output_pattern: str | os.PathLike, *, preset: str = "severe",
                  seed: int = 0, frames: Sequence[int] | str | None = None, colorspace: str = "auto",
                  motion_blur: bool = True, chunk: int = 48, ocio_config: str | None = None,
                  video: VideoOptions | None = None) -> list[str]:
    """Degrade a plate on disk into an image sequence or a video (the ``daflow-vfx degrade`` command).

    The plate is converted to display-referred [0, 1] (``colorspace``, see daflow_vfx.color),
    degraded with parameters drawn once from ``preset``/``seed`` and drifting over the whole frame
    range, and written to ``output_pattern`` (a sequence pattern such as ``out.####.png`` or a video file)
    at the plate's frame numbers. EXR outputs go back to the plate's colour space (a linear plate stays
    linear, ready to comp); other image formats get the display-referred values, a video those of
    ``video.output_colorspace`` with its codec. Motion blur, when asked for,
    follows motion estimated with OpenCV's DIS. The clip is processed ``chunk`` frames at a time
    (each chunk is its own video stream) so long plates fit in memory. Returns the written paths.
    """
    from daflow_vfx.color import check_colorspace, from_display, resolve_colorspace, to_display
    from daflow_vfx.frames import SequencePattern, parse_frames_option
    from daflow_vfx.io import VIDEO_EXTENSIONS, open_plate
    from daflow_vfx.io.images import write_image
    from daflow_vfx.jobs.options import VideoOptions
    from daflow_vfx.jobs.safety import check_outputs
    from daflow_vfx.jobs.video_out import check_video_output, write_plate_video

    video = video or VideoOptions()
    is_video = os.path.splitext(str(output_pattern))[1].lower() in VIDEO_EXTENSIONS
    pattern = None if is_video else SequencePattern.parse(output_pattern)
    if pattern is None and not is_video:
        raise UsageError(f"{output_pattern}: the output needs a frame token, e.g. degraded.####.png, or a "
                         "video extension such as .mov")
    check_colorspace(colorspace, ocio_config)
    if is_video:
        check_video_output(video, str(output_pattern), ocio_config=ocio_config)
    params = sample_params(preset, np.random.default_rng(seed))
    written: list[str] = []
    # gaps count only where this job reads: a chunk is not failed by a gap elsewhere
    with open_plate(input_path, allow_gaps=True) as plate:
        available = list(plate.info.frames)
        if frames is None:
            wanted = available
        else:
            wanted = parse_frames_option(frames) if isinstance(frames, str) else sorted(set(frames))
            missing = sorted(set(wanted) - set(available))
            if missing:
                raise UsageError(f"{input_path}: frames {missing[:5]} are not in the plate "
                                 f"({available[0]}-{available[-1]}); pick frames it has", param="frames")
        plate.info.check_gaps(wanted, allow_gaps=False)
        if is_video:
            check_video_output(video, str(output_pattern), ocio_config=ocio_config,
                               size=(plate.info.width, plate.info.height))
        space = resolve_colorspace(colorspace, plate.info, ocio_config=ocio_config)
        # the one output-safety check: never over the plate, folders made only now that the job can run
        paths = [str(output_pattern)] if pattern is None else [pattern.path(n) for n in wanted]
        check_outputs({"output": paths}, plate.source_files()).prepare()
        to_plate_space = str(output_pattern).lower().endswith(".exr")

        def degraded() -> Iterator[tuple[int, np.ndarray]]:
            for start in range(0, len(wanted), max(chunk, 1)):
                numbers = wanted[start:start + max(chunk, 1)]
                clip = np.stack([to_display(plate.read(n), space) for n in numbers])  # [F, H, W, 3]
                flows = _dis_flows(clip) if motion_blur and len(numbers) > 1 else None
                rng = np.random.default_rng([seed, _NOISE_STREAM, start])
                out = _degrade(clip, params, rng, flows, start, len(wanted))   # [F, H, W, 3] display
                yield from zip(numbers, out, strict=True)

        if pattern is None:
            fps = plate.info.fps or 24.0
            # back to plate values, so --output-colorspace converts from the plate's space like elsewhere
            write_plate_video(str(output_pattern), (from_display(img, space) for _, img in degraded()),
                              fps=fps, space=space, video=video)
            return paths
        for n, img in degraded():
            path = pattern.path(n)
            write_image(path, from_display(img, space) if to_plate_space else img)
            written.append(path)
    return written


@dataclass(frozen=True, kw_only=True)
class DegradeJob:
    """What `daflow-vfx degrade` runs (see :func:`degrade_plate`)."""

    input: str
    output: str
    preset: str = "severe"
    seed: int = 0
    frames: str | None = None
    colorspace: str = "auto"
    ocio_config: str | None = None  # OCIO config file or URI; None: $OCIO, else the built-in studio config
    motion_blur: bool = True
    video: VideoOptions | None = None  # codec etc. of a video output; None: h264, high


def run_degrade(job: DegradeJob) -> list[str]:
    if job.preset not in PRESETS:
        raise UsageError(f"unknown preset {job.preset!r}; use one of {', '.join(PRESETS)}")
    return degrade_plate(job.input, job.output, preset=job.preset, seed=job.seed, frames=job.frames,
                         colorspace=job.colorspace, motion_blur=job.motion_blur, ocio_config=job.ocio_config,
                         video=job.video)
