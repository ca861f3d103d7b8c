"""Synthetic layered scenes: sample layout, determinism, and that the ground-truth flow is exact."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from daflow_vfx.errors import UsageError
from daflow_vfx.train import data as td
from daflow_vfx.train import textures as tt

SIZE = (48, 64)


def _translation(num_frames: int, start: tuple[float, float], step: tuple[float, float]) -> np.ndarray:
    hms = np.tile(np.eye(3), (num_frames, 1, 1))
    for t in range(num_frames):
        hms[t, 0, 2] = start[0] + step[0] * t
        hms[t, 1, 2] = start[1] + step[1] * t
    return hms


def _backward_warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR)


def test_sample_layout() -> None:
    ds = td.SyntheticFlowDataset(size=SIZE, num_frames=3, seed=1, length=10, degrade_preset="mild",
                                 clean_fraction=0.0)
    s = ds[0]
    f, (h, w) = 3, SIZE
    expected = {"clean": (f, 3, h, w), "degraded": (f, 3, h, w), "flow_fwd": (f - 1, 2, h, w),
                "flow_bwd": (f - 1, 2, h, w), "valid_fwd": (f - 1, h, w), "valid_bwd": (f - 1, h, w),
                "occ_fwd": (f - 1, h, w), "occ_bwd": (f - 1, h, w), "degrade_level": ()}
    assert {k: tuple(v.shape) for k, v in s.items()} == expected
    for key in ("clean", "degraded", "flow_fwd", "valid_fwd", "occ_bwd"):
        assert s[key].dtype == torch.float32
    assert 0.0 <= float(s["clean"].min()) and float(s["degraded"].max()) <= 1.0
    assert set(torch.unique(s["valid_fwd"]).tolist()) <= {0.0, 1.0}
    assert int(s["degrade_level"]) == td.DEGRADE_LEVELS.index("mild")
    assert not torch.equal(s["clean"], s["degraded"])
    assert len(ds) == 10
    with pytest.raises(IndexError):
        ds[10]


def test_default_collate_batches() -> None:
    ds = td.SyntheticFlowDataset(size=SIZE, seed=0, length=4, degrade_preset=None)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert tuple(batch["clean"].shape) == (2, 3, 3, *SIZE)
    assert torch.equal(batch["clean"], batch["degraded"])  # no preset: degraded is the clean window
    assert batch["degrade_level"].tolist() == [0, 0]


def test_deterministic_from_seed_and_index() -> None:
    a = td.SyntheticFlowDataset(size=SIZE, seed=7, degrade_preset="random", clean_fraction=0.0)
    b = td.SyntheticFlowDataset(size=SIZE, seed=7, degrade_preset="random", clean_fraction=0.0)
    s1, s2 = a[3], b[3]
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not torch.equal(a[4]["clean"], s1["clean"])
    c = td.SyntheticFlowDataset(size=SIZE, seed=8, degrade_preset="random")
    assert not torch.equal(c[3]["clean"], s1["clean"])


def test_flow_is_exact_on_rendered_frames() -> None:
    ds = td.SyntheticFlowDataset(size=(96, 128), seed=3, degrade_preset=None)
    errors = []
    for idx in range(4):
        s = ds.sample_numpy(idx)
        for i in range(2):
            for flow, valid, occ, src, dst in (
                (s["flow_fwd"][i], s["valid_fwd"][i], s["occ_fwd"][i], s["clean"][i], s["clean"][i + 1]),
                (s["flow_bwd"][i], s["valid_bwd"][i], s["occ_bwd"][i], s["clean"][i + 1], s["clean"][i]),
            ):
                visible = valid & ~occ
                assert visible.mean() > 0.3
                errors.append(float(np.abs(_backward_warp(dst, flow) - src)[visible].mean()))
    assert max(errors) < 0.02, errors


def test_pure_translation_flow_is_the_translation() -> None:
    rng = np.random.default_rng(0)
    h, w = SIZE
    step = (3.25, -1.5)
    layer = td.Layer(texture=td.random_texture(rng, h + 20, w + 20), alpha=None,
                     homographies=_translation(3, (-10.0, -10.0), step))
    scene = td.render_layers([layer], size=SIZE)
    assert np.allclose(scene.flow_fwd[..., 0], step[0], atol=1e-4)
    assert np.allclose(scene.flow_fwd[..., 1], step[1], atol=1e-4)
    assert np.allclose(scene.flow_bwd, -np.array(step, np.float32), atol=1e-4)
    xx = np.arange(w)[None, :] + step[0]
    yy = np.arange(h)[:, None] + step[1]
    inside = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
    assert np.array_equal(scene.valid_fwd[0], inside)
    assert np.array_equal(scene.occ_fwd[0], ~inside)  # one layer: only leaving the frame hides a point
    # The rendered content moved by exactly that much.
    warped = _backward_warp(scene.frames[1], scene.flow_fwd[0])
    assert np.abs(warped - scene.frames[0])[inside].mean() < 0.01


def test_occlusion_by_a_moving_square() -> None:
    rng = np.random.default_rng(1)
    h, w = SIZE
    background = td.Layer(texture=td.random_texture(rng, h, w), alpha=None,
                          homographies=_translation(2, (0.0, 0.0), (0.0, 0.0)))
    alpha = np.zeros((20, 20), np.float32)
    alpha[2:18, 2:18] = 1.0
    square = td.Layer(texture=td.random_texture(rng, 20, 20), alpha=alpha,
                      homographies=_translation(2, (10.0, 14.0), (6.0, 0.0)))
    scene = td.render_layers([background, square], size=SIZE)
    ids0 = scene.layer_ids[0]
    assert ids0[20, 20] == 1 and ids0[5, 5] == 0
    assert np.allclose(scene.flow_fwd[0][ids0 == 1], [6.0, 0.0], atol=1e-5)
    assert np.allclose(scene.flow_fwd[0][ids0 == 0], 0.0, atol=1e-5)
    occ = scene.occ_fwd[0]
    assert occ[20, 30] and occ[20, 33]  # background about to be covered by the square's leading edge
    assert not occ[20, 20] and not occ[20, 14] and not occ[5, 5]  # the square itself, far background
    # Backward: the trail the square leaves is hidden in the earlier frame.
    assert scene.occ_bwd[0][20, 14] and not scene.occ_bwd[0][20, 30]


def test_textures_and_shapes() -> None:
    rng = np.random.default_rng(2)
    for _ in range(12):
        tex = td.random_texture(rng, 30, 41, photo_fraction=0.5)
        assert tex.shape == (30, 41, 3) and tex.dtype == np.float32
        assert 0.0 <= tex.min() and tex.max() <= 1.0 and tex.std() > 0.01
    alpha = td.shape_alpha(rng, 33)
    assert alpha.shape == (33, 33) and alpha[0].max() == 0 and alpha[16, 16] == 1.0
    assert 0 < ((alpha > 0) & (alpha < 1)).sum()  # anti-aliased edge


def test_bundled_photos_load_without_network() -> None:
    paths = tt._photo_paths()
    if not paths:
        pytest.skip("scikit-image is not installed")
    photo = tt._load_photo(paths[0])
    assert photo is not None and photo.dtype == np.float32 and photo.max() <= 1.0
    # Textures come from installed packages, never from the evaluation pairs in ../shared (checked by
    # location, not by a substring of the path, which a checkout's own folder names could contain).
    shared = (Path(__file__).resolve().parents[2].parent / "shared").resolve()
    assert not any(Path(p).resolve().is_relative_to(shared) for p in paths)


def test_motion_mixes_small_and_large() -> None:
    ds = td.SyntheticFlowDataset(size=SIZE, seed=5, degrade_preset=None)
    peaks = [float(np.abs(ds.sample_numpy(i)["flow_fwd"]).max()) for i in range(12)]
    assert min(peaks) < 6.0 and max(peaks) > 0.2 * SIZE[1]


def test_static_layers_do_not_move() -> None:
    # every layer still: the clean frames repeat exactly and the flow is zero everywhere
    still = td.SyntheticFlowDataset(size=SIZE, seed=5, degrade_preset="severe", clean_fraction=0.0,
                                    static_fraction=1.0)
    for i in range(3):
        s = still.sample_numpy(i)
        # zero up to the round-off of composing each frame's homography with the inverse of the next
        assert np.abs(s["flow_fwd"]).max() < 1e-6 and np.abs(s["flow_bwd"]).max() < 1e-6
        assert np.abs(s["clean"][0] - s["clean"][1]).max() < 1e-6
        assert np.abs(s["clean"][1] - s["clean"][2]).max() < 1e-6
        assert not np.array_equal(s["degraded"][0], s["degraded"][1])  # the noise still differs per frame
    # a share: some layers still, some moving; and 0 leaves the samples of older configs unchanged
    some = td.SyntheticFlowDataset(size=SIZE, seed=5, degrade_preset=None, static_fraction=0.5)
    flows = [some.sample_numpy(i)["flow_fwd"] for i in range(12)]
    still_share = [float((np.abs(f).max(axis=-1) < 1e-6).mean()) for f in flows]  # pixels not moving
    assert max(still_share) > 0.2 and max(float(np.abs(f).max()) for f in flows) > 1.0
    default = td.SyntheticFlowDataset(size=SIZE, seed=5, degrade_preset=None)
    zero = td.SyntheticFlowDataset(size=SIZE, seed=5, degrade_preset=None, static_fraction=0.0)
    assert np.array_equal(default.sample_numpy(2)["flow_fwd"], zero.sample_numpy(2)["flow_fwd"])
    with pytest.raises(UsageError, match="static_fraction"):
        td.SyntheticFlowDataset(size=SIZE, static_fraction=1.5)


def test_bad_preset_raises() -> None:
    with pytest.raises(UsageError):
        td.SyntheticFlowDataset(size=SIZE, degrade_preset="nasty")
    with pytest.raises(UsageError):
        td.SyntheticFlowDataset(size=SIZE, degrade_preset={"mild": -1.0})
    mixed = td.SyntheticFlowDataset(size=SIZE, seed=0, degrade_preset={"clean": 1.0, "extreme": 1.0},
                                    clean_fraction=0.0)
    levels = {int(mixed[i]["degrade_level"]) for i in range(8)}
    assert levels <= {0, td.DEGRADE_LEVELS.index("extreme")} and len(levels) == 2


def test_dis_initial_flow_is_dis_on_the_degraded_frames() -> None:
    from daflow_vfx.estimators.classical import DISEstimator

    ds = td.SyntheticFlowDataset(size=(48, 64), num_frames=3, seed=5, length=4, degrade_preset="severe",
                                 clean_fraction=0.0, init_flow="dis")
    s = ds[1]
    assert s["init_fwd"].shape == s["flow_fwd"].shape == (2, 2, 48, 64)
    want = DISEstimator().estimate(s["degraded"].permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(s["init_bwd"].permute(0, 2, 3, 1).numpy(), want.backward, atol=1e-5)
    assert "init_fwd" not in td.SyntheticFlowDataset(size=(48, 64), length=2)[0]
