"""The parameters of a clip's degradation (:mod:`daflow_vfx.degrade`) and how each preset draws them.

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
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from daflow_vfx.errors import UsageError

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
_ISOTROPIC = ("iso", "generalized_iso", "plateau_iso")  # kinds whose sigma_y and angle follow sigma_x
# 8-bit code values: the unit Real-ESRGAN quotes noise in, and what JPEG and the video codecs store.
_U8_MAX = float(np.iinfo(np.uint8).max)
_DRIFT = 0.15  # a drifting parameter moves at most this fraction of its range over a clip
_X264_PRESETS = ("ultrafast", "veryfast", "fast", "medium")

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
        raise UsageError(f"unknown degradation preset {preset!r} (`preset`); use one of {', '.join(PRESETS)}",
                         param="preset")
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
