"""Paint propagation as arrays: STMap conventions, the paint following a known motion, occlusion."""

from __future__ import annotations

import numpy as np
import pytest

from daflow_vfx.errors import UsageError
from daflow_vfx.vfx.correspondence import TrackSettings
from daflow_vfx.vfx.paint_maps import compose, identity_map, map_to_stmap, sample, stmap_to_map
from tests.helpers import translated_frames


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    alpha = np.clip(r + 0.5 - np.hypot(xs - cx, ys - cy), 0.0, 1.0)
    return np.dstack([0.5 * alpha, 0.25 * alpha, 0.75 * alpha, alpha]).astype(np.float32)  # premultiplied


def _centroid(alpha: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]]
    return np.array([(xs * alpha).sum(), (ys * alpha).sum()]) / alpha.sum()


def test_stmap_is_nuke_convention_and_round_trips() -> None:
    h, w = 4, 8
    where = identity_map(h, w)
    st = map_to_stmap(where, np.ones((h, w), np.float32), (h, w))
    # Nuke: s, t normalised, origin bottom-left, pixel centres -> top-left pixel (0, 0) is (0.5/w, 1-0.5/h)
    assert st[0, 0, 0] == pytest.approx(0.5 / w) and st[0, 0, 1] == pytest.approx(1 - 0.5 / h)
    assert st[h - 1, w - 1, 0] == pytest.approx(1 - 0.5 / w) and st[h - 1, w - 1, 1] == pytest.approx(0.5 / h)
    assert np.allclose(stmap_to_map(st, (h, w)), where, atol=1e-5)


def test_compose_follows_both_maps() -> None:
    h, w = 16, 20
    inner = identity_map(h, w) + np.float32([2.0, -1.0])  # k -> a: 2 px right, 1 px up
    outer = identity_map(h, w) + np.float32([0.5, 3.0])  # a -> r
    assert np.allclose(compose(outer, inner), identity_map(h, w) + np.float32([2.5, 2.0]), atol=1e-4)


@pytest.mark.parametrize("method", ["anchored", "chain"])
def test_paint_follows_a_known_motion(method: str) -> None:
    from daflow_vfx.vfx import propagate

    frames = translated_frames(6, 48, 64, dx=2, dy=1)  # frame k: texture moved (2k, k) px
    paint = _disc(48, 64, 30.0, 22.0, 6.0)
    result = propagate(frames, paint, 1001, first=1001, model="dis", device="cpu",
                       settings=TrackSettings(method=method))
    assert result.rgba.shape == (6, 48, 64, 4) and result.stmaps.shape == (6, 48, 64, 4)
    assert np.allclose(result.rgba[0], paint, atol=1e-5)  # the reference frame keeps its paint
    for k in (2, 5):
        alpha = result.rgba[k, ..., 3]
        assert alpha.sum() > 0.8 * paint[..., 3].sum()  # not lost, not shrunk
        assert np.linalg.norm(_centroid(alpha) - (30.0 + 2 * k, 22.0 + k)) < 0.5


def test_stmap_through_nukes_formula_puts_the_paint_where_the_output_is() -> None:
    from daflow_vfx.vfx import propagate

    frames = translated_frames(3, 40, 56, dx=-2, dy=1)
    paint = _disc(40, 56, 28.0, 20.0, 6.0)
    result = propagate(frames, paint, 0, model="dis", device="cpu")
    for k in range(3):
        st = result.stmaps[k]
        # what Nuke's STMap does: sample the source at x = s * W - 0.5, y = (1 - t) * H - 0.5 (pixel indices)
        moved = sample(paint, stmap_to_map(st, (40, 56)))
        assert np.allclose(moved * st[..., 3:4], result.rgba[k], atol=1e-4)


def test_hidden_paint_goes_to_zero_and_comes_back() -> None:
    from daflow_vfx.bench.propagate import ground_truth
    from daflow_vfx.bench.propagate_plate import make_test_plate, paint_disc
    from daflow_vfx.vfx import propagate

    plate = make_test_plate(frames=15, width=128, height=80, preset=None)
    paint = paint_disc(80, 128, plate.paint_centre, 8.0)
    result = propagate(plate.frames, paint, 0, model="dis", device="cpu")
    hidden_alpha = []
    for k in range(1, 15):
        # truly hidden paint: the disc covers the pixel and its true reference point is painted
        _, painted, _ = ground_truth(plate, k, paint[..., 3])
        hidden_alpha.append(result.rgba[k, ..., 3][painted & plate.occluder[k]])
    hidden = np.concatenate(hidden_alpha)
    assert hidden.size > 50  # the disc does cross the paint
    assert (hidden <= 0.1).mean() >= 0.8
    assert result.rgba[-1, ..., 3].sum() > 0.7 * paint[..., 3].sum()  # back once the disc has passed


def test_bad_arguments_name_the_parameter() -> None:
    from daflow_vfx.vfx import propagate

    frames = translated_frames(3, 16, 16, dx=1, dy=0)
    with pytest.raises(UsageError) as info:
        propagate(frames, np.zeros((8, 8, 4), np.float32), 0, model="dis")
    assert info.value.param == "paint"
    with pytest.raises(UsageError) as info:
        propagate(frames, np.zeros((16, 16, 3), np.float32), 0, model="dis")
    assert info.value.param == "paint" and "alpha" in str(info.value)
    with pytest.raises(UsageError) as info:
        propagate(frames, np.zeros((16, 16, 4), np.float32), 3, model="dis")
    assert info.value.param == "at"
    with pytest.raises(UsageError) as info:
        propagate(frames, np.zeros((16, 16, 4), np.float32), 0, model="dis",
                  settings=TrackSettings(method="teleport"))
    assert info.value.param == "method"


def test_the_photometric_tolerance_follows_the_plates_typical_difference() -> None:
    """3x the median difference where the match held, between a floor and the settings' ceiling: a noisy
    plate keeps its seen surface, a hidden one (far above the typical difference) is cleared."""
    from daflow_vfx.vfx.correspondence import PHOTO_FLOOR, PHOTO_SPREAD, TrackSettings, _photo_tolerance

    settings = TrackSettings()
    rng = np.random.default_rng(0)
    noisy = np.abs(rng.normal(0.0, 0.02, (40, 60))).astype(np.float32)  # a grainy plate: median ~0.0135
    matched = np.ones((40, 60), bool)
    tol = _photo_tolerance(noisy, matched, settings)
    assert tol == pytest.approx(PHOTO_SPREAD * float(np.median(noisy)))
    assert PHOTO_FLOOR < tol < settings.photo_tolerance
    # a hidden patch (another surface, 0.15 off) fades to 0; the plate's own noise stays visible
    assert 0.15 > 2 * tol and np.mean(noisy < tol) > 0.95
    # only pixels that passed the forward-backward check set the typical difference
    with_hidden = noisy.copy()
    with_hidden[:, :20] = 0.3
    partly = matched.copy()
    partly[:, :20] = False
    assert _photo_tolerance(with_hidden, partly, settings) == pytest.approx(
        PHOTO_SPREAD * float(np.median(noisy[:, 20:])))
    # bounds: a clean plate is held at the floor, a plate with a global change at the fixed ceiling
    assert _photo_tolerance(np.zeros((8, 8), np.float32), np.ones((8, 8), bool), settings) == PHOTO_FLOOR
    assert _photo_tolerance(np.full((8, 8), 0.2, np.float32), np.ones((8, 8), bool),
                            settings) == settings.photo_tolerance
    assert _photo_tolerance(noisy, np.zeros((40, 60), bool), settings) == settings.photo_tolerance
