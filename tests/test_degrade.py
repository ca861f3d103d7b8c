"""The degradation pipeline: shapes, determinism, strength ordering, kernels, codecs, motion blur, drift."""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
import pytest

from daflow_vfx import degrade as dg
from daflow_vfx import degrade_params
from daflow_vfx.errors import UsageError


def _clip(f: int = 3, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """[F, H, W, 3] smooth-plus-detail content moving 2 px/frame to the right."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((6, 8, 3), dtype=np.float32), (w + 8, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.random((h // 3, (w + 8) // 3, 3), dtype=np.float32), (w + 8, h),
                      interpolation=cv2.INTER_CUBIC)
    base = np.clip(0.7 * coarse + 0.3 * fine, 0, 1)
    return np.stack([base[:, 8 - 2 * i: 8 - 2 * i + w] for i in range(f)]).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((a - b) ** 2) + 1e-12))


@pytest.mark.parametrize("preset", dg.PRESETS)
def test_shape_dtype_range_kept(preset: str) -> None:
    frames = _clip(h=33, w=47)  # odd sizes: the codecs pad to even and crop back
    flows = np.zeros((2, 33, 47, 2), np.float32)
    flows[..., 0] = 2.0
    for seed in range(3):
        out = dg.degrade_clip(frames, preset=preset, seed=seed, flows_forward=flows)
        assert out.shape == frames.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_single_frame_clip() -> None:
    out = dg.degrade_clip(_clip(f=1), preset="extreme", seed=3)
    assert out.shape == (1, 48, 64, 3)


def test_deterministic_for_a_seed() -> None:
    frames = _clip()
    a = dg.degrade_clip(frames, preset="severe", seed=11)
    b = dg.degrade_clip(frames, preset="severe", seed=11)
    c = dg.degrade_clip(frames, preset="severe", seed=12)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_explicit_params_match_the_preset_draw(monkeypatch) -> None:
    # What each path hands the pipeline is compared, not the codec's output: libx264 through PyAV
    # 18.1 gives 2-3 different bitstreams for one input over a dozen calls in one process (measured,
    # threads=1), which made this test fail about one run in five.
    frames = _clip()
    params = dg.sample_params("random", np.random.default_rng(5))
    seen = []
    real = dg._degrade

    def spy(frames, params, rng, *args):
        seen.append((params, rng.bit_generator.state))
        return real(frames, dataclasses.replace(params, video=None), rng, *args)

    monkeypatch.setattr(dg, "_degrade", spy)
    a = dg.degrade_clip(frames, params=params, seed=5)
    b = dg.degrade_clip(frames, preset="random", seed=5)
    assert seen[0] == seen[1] and seen[0][0] == params and params.video is not None
    assert np.array_equal(a, b)


def test_mild_weaker_than_severe_weaker_than_extreme() -> None:
    frames = _clip()
    flows = np.zeros((2, 48, 64, 2), np.float32)
    flows[..., 0] = 2.0
    mean = {p: np.mean([_psnr(dg.degrade_clip(frames, preset=p, seed=s, flows_forward=flows), frames)
                        for s in range(6)]) for p in ("mild", "severe", "extreme")}
    assert mean["mild"] > mean["severe"] + 1.0 > mean["extreme"] + 2.0, mean


def test_unknown_preset_and_bad_shapes_raise() -> None:
    with pytest.raises(UsageError, match="mild"):
        dg.sample_params("nasty", np.random.default_rng(0))
    with pytest.raises(UsageError):
        dg.degrade_clip(np.zeros((4, 4, 3), np.float32), seed=0)
    with pytest.raises(UsageError):
        dg.degrade_clip(_clip(), seed=0, flows_forward=np.zeros((3, 48, 64, 2), np.float32))


def test_random_preset_spans_the_union() -> None:
    r = degrade_params._PRESET_RANGES["random"]
    assert r.noise1_sigma == (1.0, 40.0)
    assert r.jpeg1 == (30.0, 95.0)
    assert r.crf == (18.0, 45.0)
    assert {c for c, _ in r.codecs} >= {"libx264", "mpeg4"}


def test_sampled_params_stay_in_documented_ranges() -> None:
    for seed in range(40):
        p = dg.sample_params("extreme", np.random.default_rng(seed))
        assert p.first.jpeg_quality is not None
        assert all(30.0 <= q <= 50.0 for q in p.first.jpeg_quality + p.final.jpeg_quality)
        assert p.video is not None and p.video.codec in ("libx264", "mpeg4") and 35 <= p.video.crf <= 45
        if p.first.blur.kind != "sinc":
            assert all(1.5 <= s <= 4.0 for s in p.first.blur.sigma_x)
            assert abs(p.first.blur.sigma_x[1] - p.first.blur.sigma_x[0]) <= 0.15 * 2.5 + 1e-9  # slow drift
        assert p.first.blur.size % 2 == 1 and 11 <= p.first.blur.size <= 21


def test_kernels() -> None:
    for kind in dg.BLUR_KINDS:
        k = dg.gaussian_family_kernel(kind, 15, 2.0, 0.7, 0.0, beta=1.5)
        assert k.shape == (15, 15) and abs(float(k.sum()) - 1.0) < 1e-5
        assert np.allclose(k, k[::-1, ::-1])  # point-symmetric: correlation == convolution
    iso = dg.gaussian_family_kernel("iso", 9, 1.3, 5.0, 1.0)  # sigma_y / angle ignored for iso
    r = np.arange(9) - 4.0
    g = np.exp(-0.5 * (r[None] ** 2 + r[:, None] ** 2) / 1.3**2)
    assert np.allclose(iso, g / g.sum(), atol=1e-6)
    aniso = dg.gaussian_family_kernel("aniso", 15, 3.0, 0.6, 0.0)
    assert aniso[7].sum() > 2 * aniso[:, 7].sum()  # wide along x
    rotated = dg.gaussian_family_kernel("aniso", 15, 3.0, 0.6, np.pi / 2)
    assert np.allclose(rotated, aniso.T, atol=1e-6)
    sinc = dg.sinc_kernel(21, np.pi / 4)
    assert abs(float(sinc.sum()) - 1.0) < 1e-5 and sinc.min() < 0  # ringing lobes
    assert sinc[10, 10] == sinc.max()


@pytest.mark.parametrize("codec", dg.VIDEO_CODECS)
def test_video_round_trip(codec: str) -> None:
    av = pytest.importorskip("av")
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg build")
    frames = _clip(f=4, h=31, w=45)
    video = dg.VideoParams(codec=codec, crf=32.0, bits_per_pixel=0.1, speed_preset="veryfast", gop=12)
    a = dg.compress_video(frames, video)
    assert a.shape == frames.shape and a.dtype == np.float32
    assert np.array_equal(a, dg.compress_video(frames, video))
    assert 15.0 < _psnr(a, frames) < 60.0  # lossy, but the picture survives


def test_motion_blur_follows_the_flow() -> None:
    frames = np.zeros((2, 16, 32, 3), np.float32)
    frames[:, :, 16] = 1.0  # a vertical line
    flow = np.zeros((1, 16, 32, 2), np.float32)
    flow[..., 0] = 8.0
    out = dg.motion_blur(frames, flow, [1.0, 1.0])
    row = out[0, 5, :, 0]
    assert np.allclose(out[0], out[0, :1])  # every row the same: no vertical smear
    assert (row > 0.01).sum() >= 7  # smeared over about 8 px horizontally
    assert abs(float(row.sum()) - 1.0) < 0.05  # energy kept
    still = dg.motion_blur(frames, np.zeros_like(flow), [1.0, 1.0])
    assert np.array_equal(still, frames)


def test_noise_drifts_across_the_clip() -> None:
    frames = np.full((5, 32, 32, 3), 0.5, np.float32)
    stage = dg.StageParams(blur=None, scale=1.0, interpolation="area", jpeg_quality=None,
                           noise=dg.NoiseParams(kind="gaussian", gray=False, level=(0.01, 0.15)))
    params = dg.DegradeParams(preset="custom", motion_blur=None, first=stage, second=None, video=None,
                              final=dg.FinalParams(sinc=None, interpolation="area", jpeg_quality=(95.0, 95.0),
                                                   jpeg_first=False))
    out = dg.degrade_clip(frames, params=params, seed=0)
    std = [float(out[i].std()) for i in range(5)]
    assert all(b > a for a, b in zip(std, std[1:], strict=False)), std


def test_degrade_plate_writes_a_sequence(tmp_path) -> None:
    io_images = pytest.importorskip("daflow_vfx.io.images")
    pytest.importorskip("daflow_vfx.io")
    frames = _clip(f=3, h=24, w=32)
    for i, img in enumerate(frames):
        io_images.write_image(tmp_path / f"in.{1001 + i:04d}.png", img)
    written = dg.degrade_plate(str(tmp_path / "in.####.png"), str(tmp_path / "out.####.png"),
                               preset="severe", seed=4)
    assert [os.path.basename(p) for p in written] == ["out.1001.png", "out.1002.png", "out.1003.png"]
    from daflow_vfx.io import open_plate

    with open_plate(str(tmp_path / "out.####.png")) as plate:
        assert plate.info.frames == [1001, 1002, 1003]
        first = plate.read(1001)
    assert first.shape == (24, 32, 3)
    again = dg.degrade_plate(str(tmp_path / "in.####.png"), str(tmp_path / "again.####.png"),
                             preset="severe", seed=4, frames="1002-1003")
    assert len(again) == 2
    with pytest.raises(UsageError):
        dg.degrade_plate(str(tmp_path / "in.####.png"), str(tmp_path / "out.png"), preset="mild", seed=0)
