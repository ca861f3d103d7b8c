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

Parameter ranges per preset (noise sigmas in 8-bit code values, i.e. units of 1/255 of the full
range, as Real-ESRGAN quotes them; "random" samples uniformly over the union of the three
ranges, with averaged probabilities):

==============================  ================  ===================  ==================
parameter                       mild              severe               extreme
==============================  ================  ===================  ==================
motion blur probability         0.5               0.7                  1.0
shutter (fraction of a frame)   0.1 - 0.3         0.2 - 0.5            0.5 - 1.0
kernel size (odd, px)           7 - 13            7 - 21               11 - 21
blur 1 sigma (px)               0.2 - 1.0         0.2 - 3.0            1.5 - 4.0
sinc probability (rounds 1/2)   0                 0.1                  0.1
resize 1 up/down/keep prob      0.2/0.3/0.5       0.2/0.7/0.1          0/1/0
resize 1 scale                  0.8 - 1.2         0.3 - 1.5            0.25 - 0.6
Gaussian (vs Poisson) prob      0.5               0.5                  0.5
grey noise probability          0.4               0.4                  0.4
noise 1 Gaussian sigma          1 - 5             1 - 25               15 - 40
noise 1 Poisson scale           0.05 - 0.5        0.05 - 2.5           1.0 - 3.0
JPEG 1 quality                  70 - 95           40 - 90              30 - 50
round 2 probability             0.3               1.0                  1.0
blur 2 probability              0.5               0.8                  1.0
blur 2 sigma (px)               0.2 - 0.6         0.2 - 1.5            0.5 - 2.0
resize 2 up/down/keep prob      0.2/0.3/0.5       0.3/0.4/0.3          0/1/0
resize 2 scale                  0.8 - 1.2         0.3 - 1.2            0.25 - 0.6
noise 2 Gaussian sigma          1 - 3             1 - 20               10 - 25
noise 2 Poisson scale           0.05 - 0.3        0.05 - 2.0           0.5 - 2.5
final sinc probability          0.1               0.8                  0.8
final JPEG quality              75 - 95           40 - 90              30 - 50
video compression probability   0.7               0.8                  1.0
codecs (weight)                 libx264           libx264 .5, mpeg4    libx264 .5,
                                                  .25, vp9 .15,        mpeg4 .5
                                                  mpeg2video .1
CRF (x264 scale)                18 - 26           26 - 35              35 - 45
bits per pixel (mpeg4/mpeg2)    0.3 - 0.6         0.08 - 0.3           0.02 - 0.06
==============================  ================  ===================  ==================

Fixed everywhere (Real-ESRGAN's values): kernel type probabilities iso .45, aniso .25,
generalized iso .12, generalized aniso .03, plateau iso .12, plateau aniso .03; generalized
beta 0.5 - 4, plateau beta 1 - 2; sinc cut-off pi/3 - pi (pi/5 - pi for kernels of 13 px and
more); resize interpolation area / bilinear / bicubic with equal odds; x264 speed preset
ultrafast / veryfast / fast / medium; GOP 8 - 250 frames; 24 fps.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from daflow_vfx.errors import DaflowError, UsageError

logger = logging.getLogger(__name__)

PRESETS: tuple[str, ...] = ("mild", "severe", "extreme", "random")
BLUR_KINDS: tuple[str, ...] = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)
VIDEO_CODECS: tuple[str, ...] = ("libx264", "mpeg4", "mpeg2video", "libvpx-vp9")
INTERPOLATIONS: tuple[str, ...] = ("area", "linear", "cubic")

_KERNEL_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # Real-ESRGAN's mix, in BLUR_KINDS order
_ISOTROPIC = ("iso", "generalized_iso", "plateau_iso")
_CV2_INTERP = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
# 8-bit code values: the unit Real-ESRGAN quotes noise in, and what JPEG and the video codecs store.
_U8_MAX = float(np.iinfo(np.uint8).max)
# Real-ESRGAN's Poisson noise treats the image as counts of 2**ceil(log2(#levels)) = 256 for 8-bit content.
_POISSON_PEAK = 256.0
_DRIFT = 0.15  # a drifting parameter moves at most this fraction of its range over a clip
_NOISE_STREAM = 1  # default_rng([seed, _NOISE_STREAM]) draws the per-frame noise
_MIN_SIDE = 8  # resizes never go below this many pixels, so kernels and codecs stay meaningful
_VIDEO_FPS = 24
_X264_PRESETS = ("ultrafast", "veryfast", "fast", "medium")
_CONTAINERS = {"libx264": "mp4", "mpeg4": "avi", "mpeg2video": "mpeg", "libvpx-vp9": "webm"}

Drift = tuple[float, float]  # (value at the first frame, value at the last frame), linear in between


# --------------------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class BlurParams:
    """One blur kernel, rebuilt per frame from the drifting values.

    ``kind`` is one of :data:`BLUR_KINDS` or ``"sinc"``. Gaussian-family kernels use
    ``sigma_x``/``sigma_y`` (px, 0.2 - 4) along axes rotated by ``angle`` (radians) and the shape
    ``beta`` (generalized 0.5 - 4, plateau 1 - 2, ignored otherwise); the sinc filter uses the
    cut-off ``omega_c`` (radians per pixel, pi/5 - pi).
    """

    kind: str
    size: int  # odd kernel side, 7 - 21 px
    sigma_x: Drift = (1.0, 1.0)
    sigma_y: Drift = (1.0, 1.0)
    angle: float = 0.0
    beta: float = 1.0
    omega_c: Drift = (math.pi, math.pi)


@dataclass(frozen=True)
class NoiseParams:
    """Additive noise: ``kind`` "gaussian" (``level`` = sigma as a fraction of full range) or
    "poisson" (``level`` = Real-ESRGAN's scale, 0.05 - 3); ``gray`` uses one noise field for
    all three channels."""

    kind: str
    gray: bool
    level: Drift


@dataclass(frozen=True)
class StageParams:
    """One round of the second-order model: blur, resize, noise, JPEG (each optional)."""

    blur: BlurParams | None
    scale: float  # output size relative to the ORIGINAL frame size (1.0 = no resize)
    interpolation: str  # one of INTERPOLATIONS
    noise: NoiseParams | None
    jpeg_quality: Drift | None  # 30 - 95; None in round 2, whose JPEG is the final one


@dataclass(frozen=True)
class FinalParams:
    """Resize back to the original size with an optional sinc filter, and the last JPEG."""

    sinc: BlurParams | None
    interpolation: str
    jpeg_quality: Drift
    jpeg_first: bool  # True: JPEG then resize+sinc; False: resize+sinc then JPEG


@dataclass(frozen=True)
class VideoParams:
    """Whole-clip compression through PyAV.

    CRF codecs (libx264, libvpx-vp9) use ``crf`` on x264's 0 - 51 scale (VP9's 0 - 63
    scale is mapped from it); bit-rate codecs (mpeg4, mpeg2video) use ``bits_per_pixel`` per
    frame, times width x height x 24 fps.
    """

    codec: str  # one of VIDEO_CODECS
    crf: float
    bits_per_pixel: float
    speed_preset: str  # x264 preset
    gop: int  # frames between key frames


@dataclass(frozen=True)
class MotionBlurParams:
    """Box shutter open for ``shutter`` (0 - 1) of the frame interval, at most ``max_samples`` taps."""

    shutter: Drift
    max_samples: int = 16


@dataclass(frozen=True)
class DegradeParams:
    """Everything :func:`degrade_clip` does to a clip; :func:`sample_params` draws one per preset."""

    preset: str
    motion_blur: MotionBlurParams | None
    first: StageParams
    second: StageParams | None
    final: FinalParams
    video: VideoParams | None


@dataclass(frozen=True)
class _Ranges:
    """Sampling ranges of one preset (see the module docstring's table)."""

    motion_blur_prob: float
    shutter: tuple[float, float]
    kernel_size: tuple[int, int]
    blur1_sigma: tuple[float, float]
    sinc_prob: float
    resize1_probs: tuple[float, float, float]  # up, down, keep
    resize1_scale: tuple[float, float]
    gaussian_prob: float
    gray_prob: float
    noise1_sigma: tuple[float, float]  # 8-bit code values
    noise1_poisson: tuple[float, float]
    jpeg1: tuple[float, float]
    second_prob: float
    blur2_prob: float
    blur2_sigma: tuple[float, float]
    resize2_probs: tuple[float, float, float]
    resize2_scale: tuple[float, float]
    noise2_sigma: tuple[float, float]
    noise2_poisson: tuple[float, float]
    final_sinc_prob: float
    jpeg_final: tuple[float, float]
    video_prob: float
    codecs: tuple[tuple[str, float], ...]
    crf: tuple[float, float]
    bits_per_pixel: tuple[float, float]


_PRESET_RANGES: dict[str, _Ranges] = {
    "mild": _Ranges(
        motion_blur_prob=0.5, shutter=(0.1, 0.3), kernel_size=(7, 13), blur1_sigma=(0.2, 1.0), sinc_prob=0.0,
        resize1_probs=(0.2, 0.3, 0.5), resize1_scale=(0.8, 1.2), gaussian_prob=0.5, gray_prob=0.4,
        noise1_sigma=(1.0, 5.0), noise1_poisson=(0.05, 0.5), jpeg1=(70.0, 95.0), second_prob=0.3,
        blur2_prob=0.5, blur2_sigma=(0.2, 0.6), resize2_probs=(0.2, 0.3, 0.5), resize2_scale=(0.8, 1.2),
        noise2_sigma=(1.0, 3.0), noise2_poisson=(0.05, 0.3), final_sinc_prob=0.1, jpeg_final=(75.0, 95.0),
        video_prob=0.7, codecs=(("libx264", 1.0),), crf=(18.0, 26.0), bits_per_pixel=(0.3, 0.6),
    ),
    "severe": _Ranges(
        motion_blur_prob=0.7, shutter=(0.2, 0.5), kernel_size=(7, 21), blur1_sigma=(0.2, 3.0), sinc_prob=0.1,
        resize1_probs=(0.2, 0.7, 0.1), resize1_scale=(0.3, 1.5), gaussian_prob=0.5, gray_prob=0.4,
        noise1_sigma=(1.0, 25.0), noise1_poisson=(0.05, 2.5), jpeg1=(40.0, 90.0), second_prob=1.0,
        blur2_prob=0.8, blur2_sigma=(0.2, 1.5), resize2_probs=(0.3, 0.4, 0.3), resize2_scale=(0.3, 1.2),
        noise2_sigma=(1.0, 20.0), noise2_poisson=(0.05, 2.0), final_sinc_prob=0.8, jpeg_final=(40.0, 90.0),
        video_prob=0.8,
        codecs=(("libx264", 0.5), ("mpeg4", 0.25), ("libvpx-vp9", 0.15), ("mpeg2video", 0.1)),
        crf=(26.0, 35.0), bits_per_pixel=(0.08, 0.3),
    ),
    "extreme": _Ranges(
        motion_blur_prob=1.0, shutter=(0.5, 1.0), kernel_size=(11, 21), blur1_sigma=(1.5, 4.0), sinc_prob=0.1,
        resize1_probs=(0.0, 1.0, 0.0), resize1_scale=(0.25, 0.6), gaussian_prob=0.5, gray_prob=0.4,
        noise1_sigma=(15.0, 40.0), noise1_poisson=(1.0, 3.0), jpeg1=(30.0, 50.0), second_prob=1.0,
        blur2_prob=1.0, blur2_sigma=(0.5, 2.0), resize2_probs=(0.0, 1.0, 0.0), resize2_scale=(0.25, 0.6),
        noise2_sigma=(10.0, 25.0), noise2_poisson=(0.5, 2.5), final_sinc_prob=0.8, jpeg_final=(30.0, 50.0),
        video_prob=1.0, codecs=(("libx264", 0.5), ("mpeg4", 0.5)), crf=(35.0, 45.0),
        bits_per_pixel=(0.02, 0.06),
    ),
}


def _union(ranges: Sequence[_Ranges]) -> _Ranges:
    """The "random" preset: every range spans the union of the presets', probabilities averaged."""
    values = {}
    for field in dataclasses.fields(_Ranges):
        items = [getattr(r, field.name) for r in ranges]
        if field.name == "codecs":
            weights: dict[str, float] = {}
            for item in items:
                for codec, w in item:
                    weights[codec] = weights.get(codec, 0.0) + w / len(items)
            values[field.name] = tuple(sorted(weights.items()))
        elif field.name.endswith("_probs"):
            values[field.name] = tuple(float(np.mean([it[k] for it in items])) for k in range(3))
        elif isinstance(items[0], tuple):
            values[field.name] = (min(it[0] for it in items), max(it[1] for it in items))
        else:
            values[field.name] = float(np.mean(items))
    return _Ranges(**values)


_PRESET_RANGES["random"] = _union([_PRESET_RANGES[p] for p in ("mild", "severe", "extreme")])


# --------------------------------------------------------------------------------------------- sampling
def _drift(rng: np.random.Generator, lo: float, hi: float) -> Drift:
    start = float(rng.uniform(lo, hi))
    span = (hi - lo) * _DRIFT
    end = float(np.clip(start + rng.uniform(-span, span), lo, hi))
    return (start, end)


def _odd_size(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.choice(np.arange(lo | 1, hi + 1, 2)))


def _sample_sinc(rng: np.random.Generator, size: int) -> BlurParams:
    # Small kernels cannot represent low cut-offs, hence Real-ESRGAN's size-dependent lower bound.
    lo = math.pi / 3 if size < 13 else math.pi / 5
    return BlurParams(kind="sinc", size=size, omega_c=_drift(rng, lo, math.pi))


def _sample_blur(rng: np.random.Generator, r: _Ranges, sigma: tuple[float, float]) -> BlurParams:
    size = _odd_size(rng, *r.kernel_size)
    if rng.random() < r.sinc_prob:
        return _sample_sinc(rng, size)
    kind = BLUR_KINDS[int(rng.choice(len(BLUR_KINDS), p=_KERNEL_PROBS))]
    sigma_x = _drift(rng, *sigma)
    if kind in _ISOTROPIC:
        sigma_y, angle = sigma_x, 0.0
    else:
        sigma_y, angle = _drift(rng, *sigma), float(rng.uniform(-math.pi, math.pi))
    beta = 1.0
    if kind.startswith("generalized"):
        # Real-ESRGAN: half the kernels sharper-peaked (beta < 1), half flatter (beta > 1).
        beta = float(rng.uniform(0.5, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, 4.0))
    elif kind.startswith("plateau"):
        beta = float(rng.uniform(1.0, 2.0))
    return BlurParams(kind=kind, size=size, sigma_x=sigma_x, sigma_y=sigma_y, angle=angle, beta=beta)


def _sample_scale(rng: np.random.Generator, probs: tuple[float, float, float], rng_scale: tuple[float, float]
                  ) -> float:
    mode = int(rng.choice(3, p=np.asarray(probs) / sum(probs)))
    lo, hi = rng_scale
    if mode == 0 and hi > 1.0:
        return float(rng.uniform(max(lo, 1.0), hi))
    if mode == 1 and lo < 1.0:
        return float(rng.uniform(lo, min(hi, 1.0)))
    return 1.0


def _sample_noise(rng: np.random.Generator, r: _Ranges, sigma: tuple[float, float],
                  poisson: tuple[float, float]) -> NoiseParams:
    gaussian = rng.random() < r.gaussian_prob
    gray = bool(rng.random() < r.gray_prob)
    if gaussian:
        start, end = _drift(rng, *sigma)
        return NoiseParams(kind="gaussian", gray=gray, level=(start / _U8_MAX, end / _U8_MAX))
    return NoiseParams(kind="poisson", gray=gray, level=_drift(rng, *poisson))


def _interp(rng: np.random.Generator) -> str:
    return INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]


def sample_params(preset: str, rng: np.random.Generator) -> DegradeParams:
    """Draw one clip's degradation from ``preset`` (one of :data:`PRESETS`; ranges in the module doc)."""
    if preset not in _PRESET_RANGES:
        raise UsageError(f"unknown degradation preset {preset!r}; use one of {', '.join(PRESETS)}")
    r = _PRESET_RANGES[preset]
    motion = None
    if rng.random() < r.motion_blur_prob:
        motion = MotionBlurParams(shutter=_drift(rng, *r.shutter))
    first = StageParams(
        blur=_sample_blur(rng, r, r.blur1_sigma),
        scale=_sample_scale(rng, r.resize1_probs, r.resize1_scale),
        interpolation=_interp(rng),
        noise=_sample_noise(rng, r, r.noise1_sigma, r.noise1_poisson),
        jpeg_quality=_drift(rng, *r.jpeg1),
    )
    second = None
    if rng.random() < r.second_prob:
        second = StageParams(
            blur=_sample_blur(rng, r, r.blur2_sigma) if rng.random() < r.blur2_prob else None,
            scale=_sample_scale(rng, r.resize2_probs, r.resize2_scale),
            interpolation=_interp(rng),
            noise=_sample_noise(rng, r, r.noise2_sigma, r.noise2_poisson),
            jpeg_quality=None,
        )
    sinc = _sample_sinc(rng, _odd_size(rng, 7, 21)) if rng.random() < r.final_sinc_prob else None
    final = FinalParams(sinc=sinc, interpolation=_interp(rng), jpeg_quality=_drift(rng, *r.jpeg_final),
                        jpeg_first=bool(rng.random() < 0.5))
    video = None
    if rng.random() < r.video_prob:
        names = [c for c, _ in r.codecs]
        weights = np.asarray([w for _, w in r.codecs])
        video = VideoParams(
            codec=names[int(rng.choice(len(names), p=weights / weights.sum()))],
            crf=float(rng.uniform(*r.crf)),
            bits_per_pixel=float(rng.uniform(*r.bits_per_pixel)),
            speed_preset=_X264_PRESETS[int(rng.integers(len(_X264_PRESETS)))],
            gop=int(rng.integers(8, 251)),
        )
    return DegradeParams(preset=preset, motion_blur=motion, first=first, second=second, final=final,
                         video=video)


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
                  motion_blur: bool = True, chunk: int = 48) -> list[str]:
    """Degrade a plate on disk into an image sequence (the ``daflow-vfx degrade`` command).

    The plate is converted to display-referred [0, 1] (``colorspace``, see daflow_vfx.color),
    degraded with parameters drawn once from ``preset``/``seed`` and drifting over the whole frame
    range, and written to ``output_pattern`` (a sequence pattern such as ``out.####.png``) at the
    plate's frame numbers. EXR outputs go back to the plate's colour space (a linear plate stays
    linear, ready to comp); other formats get the display-referred values. Motion blur, when asked for,
    follows motion estimated with OpenCV's DIS. The clip is processed ``chunk`` frames at a time
    (each chunk is its own video stream) so long plates fit in memory. Returns the written paths.
    """
    from daflow_vfx.color import from_display, resolve_colorspace, to_display
    from daflow_vfx.frames import SequencePattern, parse_frame_spec
    from daflow_vfx.io import open_plate
    from daflow_vfx.io.images import write_image

    pattern = SequencePattern.parse(output_pattern)
    if pattern is None:
        raise UsageError(f"{output_pattern}: the output needs a frame token, e.g. degraded.####.png")
    params = sample_params(preset, np.random.default_rng(seed))
    written: list[str] = []
    with open_plate(input_path) as plate:
        available = list(plate.info.frames)
        if frames is None:
            wanted = available
        else:
            wanted = parse_frame_spec(frames) if isinstance(frames, str) else sorted(set(frames))
            missing = sorted(set(wanted) - set(available))
            if missing:
                raise UsageError(f"{input_path}: frames {missing[:5]} are not in the plate "
                                 f"({available[0]}-{available[-1]}); pick frames it has")
        space = resolve_colorspace(colorspace, plate.info)
        to_plate_space = str(output_pattern).lower().endswith(".exr")
        for start in range(0, len(wanted), max(chunk, 1)):
            numbers = wanted[start:start + max(chunk, 1)]
            clip = np.stack([to_display(plate.read(n), space) for n in numbers])  # [F, H, W, 3]
            flows = _dis_flows(clip) if motion_blur and len(numbers) > 1 else None
            rng = np.random.default_rng([seed, _NOISE_STREAM, start])
            out = _degrade(clip, params, rng, flows, start, len(wanted))
            for n, img in zip(numbers, out, strict=True):
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
    motion_blur: bool = True


def run_degrade(job: DegradeJob) -> list[str]:
    from daflow_vfx.io import prepare_output_folder

    if job.preset not in PRESETS:
        raise UsageError(f"unknown preset {job.preset!r}; use one of {', '.join(PRESETS)}")
    prepare_output_folder(os.path.dirname(os.path.abspath(job.output)))
    return degrade_plate(job.input, job.output, preset=job.preset, seed=job.seed, frames=job.frames,
                         colorspace=job.colorspace, motion_blur=job.motion_blur)
