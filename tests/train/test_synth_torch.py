"""Synthetic windows made on the device: layout, determinism, exact flow, motion and appearance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from daflow_vfx.errors import UsageError
from daflow_vfx.train import synth_torch as st
from daflow_vfx.train import textures_torch as tt
from daflow_vfx.train.data import DEGRADE_LEVELS

SIZE = (40, 56)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tensors here are tiny: a thread pool only adds overhead, and contention on shared CI cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bank() -> tt.PhotoBank | None:
    return tt.PhotoBank.load(torch.device("cpu"))


@pytest.fixture
def make(bank: tt.PhotoBank | None):
    """DeviceWindowGenerator with small defaults, sharing one photo bank."""

    def build(**kwargs) -> st.DeviceWindowGenerator:
        args = {"size": SIZE, "batch_size": 4, "device": "cpu", "seed": 0, "photo_bank": bank} | kwargs
        return st.DeviceWindowGenerator(**args)

    return build


def _backward_warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    # img: [N, C, H, W] sampled at x + flow(x), flow: [N, 2, H, W]
    n, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / (w - 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / (h - 1)) - 1.0
    return F.grid_sample(img, torch.stack([gx, gy], -1), mode="bilinear", align_corners=True)


def test_batch_layout(make) -> None:
    out = make(num_frames=3, degrade="mild", clean_fraction=0.0)(0)
    b, f, (h, w) = 4, 3, SIZE
    expected = {"clean": (b, f, 3, h, w), "degraded": (b, f, 3, h, w), "flow_fwd": (b, f - 1, 2, h, w),
                "flow_bwd": (b, f - 1, 2, h, w), "valid_fwd": (b, f - 1, h, w), "valid_bwd": (b, f - 1, h, w),
                "occ_fwd": (b, f - 1, h, w), "occ_bwd": (b, f - 1, h, w), "degrade_level": (b,),
                "finite": (b,)}
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    for key, value in out.items():
        assert value.device.type == "cpu"
        assert value.dtype == {"degrade_level": torch.int64, "finite": torch.bool}.get(key, torch.float32)
    assert out["finite"].all()
    for key in ("clean", "degraded"):
        assert float(out[key].min()) >= 0.0 and float(out[key].max()) <= 1.0
    for key in ("valid_fwd", "valid_bwd", "occ_fwd", "occ_bwd"):
        assert set(torch.unique(out[key]).tolist()) <= {0.0, 1.0}
    assert out["degrade_level"].tolist() == [DEGRADE_LEVELS.index("mild")] * b
    assert not torch.equal(out["clean"], out["degraded"])
    assert torch.isfinite(out["flow_fwd"]).all() and torch.isfinite(out["flow_bwd"]).all()


def test_runs_on_the_given_device(device: str) -> None:
    # every stage, degradations included, on that device; repeatable there
    gen = st.DeviceWindowGenerator(size=(32, 48), batch_size=3, device=device, seed=1, clean_fraction=0.0)
    a, b = gen(0), gen(0)
    for key, value in a.items():
        assert value.device.type == device and torch.equal(value, b[key]), key
    assert float(a["degraded"].min()) >= 0.0 and float(a["degraded"].max()) <= 1.0


def test_deterministic_for_seed_and_step(make) -> None:
    a = make(seed=7, batch_size=2, photo_bank=None)(3)  # loads its own photos
    b = make(seed=7, batch_size=2)(3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = make(seed=7, batch_size=2)
    again(5)  # earlier calls leave no state behind
    assert torch.equal(again(3)["degraded"], a["degraded"])
    assert not torch.equal(again(4)["clean"], a["clean"])
    assert not torch.equal(make(seed=8, batch_size=2)(3)["clean"], a["clean"])


def test_flow_is_exact_on_rendered_frames(make) -> None:
    # No scene blur or brightness drift (haze stays: it does not change over time).
    gen = make(size=(64, 80), batch_size=6, degrade=None, motion_blur_fraction=0.0, brightness_fraction=0.0,
                     haze_fraction=0.5, seed=3)
    out = gen(0)
    assert torch.equal(out["clean"], out["degraded"])
    clean = out["clean"]
    for i in range(2):
        for key, src, dst in (("fwd", clean[:, i], clean[:, i + 1]), ("bwd", clean[:, i + 1], clean[:, i])):
            flow = out[f"flow_{key}"][:, i]
            visible = (out[f"valid_{key}"][:, i] > 0) & (out[f"occ_{key}"][:, i] == 0)  # [B, H, W]
            assert float(visible.float().mean()) > 0.3
            error = (_backward_warp(dst, flow) - src).abs().mean(1)  # [B, H, W]
            assert float(error[visible].mean()) < 0.02
    # Forward then backward comes back where it started on points visible in both frames.
    fwd, bwd = out["flow_fwd"][:, 0], out["flow_bwd"][:, 0]
    visible = (out["valid_fwd"][:, 0] > 0) & (out["occ_fwd"][:, 0] == 0)
    round_trip = (fwd + _backward_warp(bwd, fwd)).norm(dim=1)
    assert float((round_trip[visible] < 0.1).float().mean()) > 0.95


def test_translation_ground_truth_and_masks() -> None:
    h, w = 12, 16
    delta = torch.zeros(1, 3, 3)
    delta[0, 0, 2], delta[0, 1, 2] = 3.25, -1.5  # pure translation
    flow = st.relative_flow(delta, (h, w))
    assert torch.allclose(flow[0, 0], torch.full((h, w), 3.25))
    assert torch.allclose(flow[0, 1], torch.full((h, w), -1.5))
    assert torch.equal(st.relative_flow(torch.zeros(1, 3, 3), (h, w)), torch.zeros(1, 2, h, w))
    ids_src = torch.zeros(1, h, w, dtype=torch.uint8)
    ids_dst = ids_src.clone()
    ids_dst[0, 4:8, 8:12] = 1  # a layer arrives where some of the moved points land
    valid, occ = st.flow_masks(flow, ids_src, ids_dst)
    xs, ys = torch.arange(w) + 3.25, torch.arange(h) - 1.5
    inside = ((xs >= 0) & (xs <= w - 1))[None, :] & ((ys >= 0) & (ys <= h - 1))[:, None]
    assert torch.equal(valid[0], inside)
    assert occ[0, 7, 6] and not occ[0, 2, 2]  # lands on the new layer at (x 9, y 6); lands on background
    assert torch.equal(occ[0] & ~valid[0], ~valid[0])  # leaving the frame counts as hidden


def test_static_layers_do_not_move(make) -> None:
    still = make(static_fraction=1.0, brightness_fraction=0.0, degrade="severe", clean_fraction=0.0)(1)
    assert torch.count_nonzero(still["flow_fwd"]) == 0 and torch.count_nonzero(still["flow_bwd"]) == 0
    assert torch.equal(still["clean"][:, 0], still["clean"][:, 1]) and torch.equal(still["clean"][:, 1],
                                                                                   still["clean"][:, 2])
    # the noise still differs per frame
    assert not torch.equal(still["degraded"][:, 0], still["degraded"][:, 1])
    some = make(static_fraction=0.5, batch_size=6, degrade=None)(2)
    moving = some["flow_fwd"].norm(dim=2) > 0  # [B, F-1, H, W]
    still_share = 1.0 - moving.float().mean(dim=(1, 2, 3))
    assert float(still_share.max()) > 0.2 and bool(moving.any())


def test_motion_reaches_large_and_sub_pixel(make) -> None:
    budgets = st.motion_budgets(np.random.default_rng(0), 4000, 204.8, 0.25)
    assert abs(float((budgets == 0).mean()) - 0.25) < 0.03
    assert float(((budgets > 0) & (budgets < 1)).mean()) > 0.05
    assert budgets.max() > 190 and budgets.max() <= 204.8
    # rendered at 512 px wide, where max_motion defaults to 0.4 x 512
    out = make(size=(24, 512), batch_size=6, degrade=None, photo_fraction=0.0)(0)
    speed = out["flow_fwd"].norm(dim=2)  # [B, F-1, H, W]
    assert float(speed.max()) > 100.0
    assert bool(((speed > 0) & (speed < 1)).any())


def test_appearance_changes_frames_not_flow(make) -> None:
    plain = make(motion_blur_fraction=0.0, brightness_fraction=0.0, haze_fraction=0.0, degrade=None)(4)
    for extra in ({"motion_blur_fraction": 1.0}, {"brightness_fraction": 1.0}, {"haze_fraction": 1.0}):
        args = {"motion_blur_fraction": 0.0, "brightness_fraction": 0.0, "haze_fraction": 0.0} | extra
        out = make(degrade=None, **args)(4)
        assert torch.equal(out["flow_fwd"], plain["flow_fwd"])
        assert torch.equal(out["occ_bwd"], plain["occ_bwd"])
        assert not torch.equal(out["clean"], plain["clean"]), extra
    # Motion blur smooths along the motion: less gradient energy in moving windows.
    blurred = make(motion_blur_fraction=1.0, brightness_fraction=0.0, haze_fraction=0.0, degrade=None)(4)

    def energy(x: torch.Tensor) -> torch.Tensor:
        return (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3, 4))

    fast = plain["flow_fwd"].norm(dim=2).amax(dim=(1, 2, 3)) > 4.0
    assert bool(fast.any()) and bool((energy(blurred["clean"]) < energy(plain["clean"]))[fast].all())


def test_degrade_choices(make) -> None:
    mixed = make(degrade={"clean": 1.0, "extreme": 1.0}, clean_fraction=0.0, batch_size=8)(0)
    assert set(mixed["degrade_level"].tolist()) == {0, DEGRADE_LEVELS.index("extreme")}
    rand = make(degrade="random", clean_fraction=0.0, batch_size=8)(0)
    assert set(rand["degrade_level"].tolist()) <= {1, 2, 3}  # "random" resolves to a concrete preset
    none = make(degrade=None)(0)
    assert torch.equal(none["clean"], none["degraded"]) and none["degrade_level"].tolist() == [0] * 4


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"degrade": "nasty"}, "degrade"), ({"degrade": {"mild": -1.0}}, "degrade"), ({"degrade": {}}, "degrade"),
    ({"degrade": 3}, "degrade"), ({"size": (4, 64)}, "size"), ({"num_frames": 1}, "num_frames"),
    ({"static_fraction": 1.5}, "static_fraction"), ({"num_layers": (3, 2)}, "num_layers"),
    ({"max_motion": -1.0}, "max_motion"), ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments_raise(make, kwargs: dict, name: str) -> None:
    with pytest.raises(UsageError, match=name):
        make(**kwargs)


def test_textures_and_shapes(bank: tt.PhotoBank | None) -> None:
    rng = np.random.default_rng(2)
    gen = torch.Generator().manual_seed(2)
    extent = np.array([[30, 41], [30, 20], [12, 41], [30, 41], [30, 41], [30, 41]])
    tex = tt.random_textures(rng, gen, extent, 30, 41, photo_fraction=0.5, bank=bank)
    assert tex.shape == (6, 3, 30, 41) and tex.dtype == torch.float32
    assert float(tex.min()) >= 0.0 and float(tex.max()) <= 1.0
    for i, (h, w) in enumerate(extent):
        assert float(tex[i, :, :h, :w].std()) > 0.01
    sides = np.array([33, 21, 40, 27, 33, 33])
    alpha = tt.shape_alpha(rng, sides, 40, torch.device("cpu"))
    for i, s in enumerate(sides):
        a = alpha[i]
        border = torch.cat([a[0, :s], a[s - 1, :s], a[:s, 0], a[:s, s - 1]])
        assert float(border.max()) == 0.0 and float(a[s:].sum()) == 0.0 and float(a[:, s:].sum()) == 0.0
        assert float(a.max()) == 1.0 and bool(((a > 0) & (a < 1)).any())  # solid inside, anti-aliased edge


def test_photo_bank_reads_the_bundled_photos(bank: tt.PhotoBank | None) -> None:
    if bank is None:
        pytest.skip("scikit-image is not installed")
    assert bank.sharp.shape == bank.soft.shape and bank.sharp.shape[1] == 3
    assert len(bank.sizes) == bank.sharp.shape[0] and bank.grey.any() and not bank.grey.all()
    assert float(bank.sharp.max()) <= 1.0 and float(bank.sharp.min()) >= 0.0


def test_a_non_finite_window_is_zeroed_and_leaves_the_loss() -> None:
    from daflow_vfx.train.synth_torch import _finite_windows

    b, f, h, w = 3, 3, 8, 8
    batch = {"clean": torch.rand(b, f, 3, h, w), "degraded": torch.rand(b, f, 3, h, w),
             "flow_fwd": torch.randn(b, f - 1, 2, h, w), "flow_bwd": torch.randn(b, f - 1, 2, h, w),
             "valid_fwd": torch.ones(b, f - 1, h, w), "valid_bwd": torch.ones(b, f - 1, h, w)}
    batch["degraded"][1, 2, 0, 3, 3] = float("nan")
    batch["flow_bwd"][2, 0, 1, 0, 0] = float("inf")
    out = _finite_windows(batch)
    assert out["finite"].tolist() == [True, False, False]
    assert all(torch.isfinite(out[k]).all() for k in ("clean", "degraded", "flow_fwd", "flow_bwd"))
    assert out["valid_fwd"][0].all() and not out["valid_fwd"][1:].any() and not out["valid_bwd"][1:].any()
    assert torch.equal(out["degraded"][0], batch["degraded"][0])


def test_inv3_matches_numpy() -> None:
    from daflow_vfx.train.synth_torch import inv3

    m = np.random.default_rng(3).normal(size=(5, 2, 3, 3)) + 3 * np.eye(3)
    np.testing.assert_allclose(inv3(m), np.linalg.inv(m), rtol=1e-10, atol=1e-12)


def test_chunked_batches_resume_where_an_uninterrupted_run_would_be() -> None:
    from itertools import islice

    from daflow_vfx.train.sources import chunked_batches

    calls = []

    def make(c: int) -> dict[str, torch.Tensor]:
        calls.append(c)
        return {"x": torch.arange(c * 12, (c + 1) * 12)}  # batch 3 x chunk 4 windows a call

    whole = [b["x"].tolist() for b in islice(chunked_batches(make, batch_size=3, chunk=4, first_batch=0), 10)]
    assert whole[0] == [0, 1, 2] and whole[5] == [15, 16, 17] and calls == [0, 1, 2]
    later = chunked_batches(make, batch_size=3, chunk=4, first_batch=5)
    resumed = [b["x"].tolist() for b in islice(later, 5)]
    assert resumed == whole[5:]
