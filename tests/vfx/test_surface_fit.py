"""The local affine fit that steadies a correspondence map: exact on affine motion, quieter on noisy
maps, and the raw map kept where two surfaces meet."""

from __future__ import annotations

import numpy as np
import pytest

from daflow_vfx.vfx.surface_fit import local_affine, steady_map


def _affine(h: int, w: int) -> np.ndarray:
    """[H, W, 2] a map with scale, shear and rotation: the motion of a plane, to first order."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([3.0 + 1.02 * xs - 0.015 * ys, -2.0 + 0.01 * xs + 0.97 * ys], axis=-1)


@pytest.mark.parametrize("sigma", [4.0, 16.0, 32.0])
def test_an_affine_map_is_kept_exactly_through_holes(sigma: float) -> None:
    """Half the weights are zero at random (hidden pixels) and a block is empty: the fit still returns
    the affine map everywhere (to a twentieth of a pixel), including over the block and at the borders."""
    h, w = 70, 110
    rng = np.random.default_rng(1)
    truth = _affine(h, w)
    weight = (rng.random((h, w)) > 0.5).astype(np.float32)
    weight[20:40, 30:60] = 0.0
    assert np.abs(local_affine(truth, weight, sigma) - truth).max() < 0.05  # px; the ridge's pull


def test_noise_on_one_surface_is_averaged_out() -> None:
    """Patch-correlated noise of about a pixel (what a flow estimator leaves on a degraded plate) drops
    several-fold; the raw map's error is what a paint would shimmer by."""
    import cv2

    h, w = 96, 160
    rng = np.random.default_rng(2)
    truth = _affine(h, w).astype(np.float32)
    noise = cv2.GaussianBlur(rng.normal(0.0, 3.0, (h, w, 2)).astype(np.float32), (0, 0), 2.0)  # ~1 px
    raw = truth + noise
    steady = steady_map(raw, np.ones((h, w), np.float32), 32.0)
    raw_err = np.linalg.norm(raw - truth, axis=-1).mean()
    steady_err = np.linalg.norm(steady - truth, axis=-1).mean()
    assert raw_err > 0.5
    assert steady_err < raw_err / 3


def test_two_surfaces_keep_their_own_motion() -> None:
    """Left and right halves move 12 px apart (an object edge). One affine fit over both drags each side
    towards the other across the window (2.6 px mean error 8-40 px from the edge, raw 0.55); the misfit
    check hands that band back to the raw map for the most part, the rest of the frame is steadier than
    raw, and nowhere is a pixel pulled by more than half the difference (the documented limit)."""
    import cv2

    h, w = 96, 160
    rng = np.random.default_rng(3)
    truth = _affine(h, w).astype(np.float32)
    truth[:, w // 2:, 0] += 12.0
    noise = cv2.GaussianBlur(rng.normal(0.0, 3.0, (h, w, 2)).astype(np.float32), (0, 0), 2.0)
    raw = truth + noise
    steady = steady_map(raw, np.ones((h, w), np.float32), 32.0)
    err = np.linalg.norm(steady - truth, axis=-1).mean(axis=0)  # [W] mean over rows
    raw_err = np.linalg.norm(raw - truth, axis=-1).mean(axis=0)
    beside = np.r_[w // 2 - 40:w // 2 - 8, w // 2 + 8:w // 2 + 40]
    assert err[beside].mean() < 1.5
    far = np.r_[0:w // 2 - 40, w // 2 + 40:w]
    assert err[far].mean() < 0.85 * raw_err[far].mean()
    assert err.max() < 0.5 * 12.0 + 1.0


def test_off_and_untrusted_maps_come_back_unchanged() -> None:
    raw = _affine(20, 30).astype(np.float32) + 0.3
    assert steady_map(raw, np.ones((20, 30), np.float32), 0.0) is raw
    assert steady_map(raw, np.zeros((20, 30), np.float32), 32.0) is raw


def test_steady_setting_is_checked() -> None:
    from daflow_vfx.errors import UsageError
    from daflow_vfx.vfx.correspondence import TrackSettings, check_track_settings

    with pytest.raises(UsageError) as info:
        check_track_settings(TrackSettings(steady=-1.0))
    assert info.value.param == "steady"
    assert check_track_settings(TrackSettings(steady=0.0)).steady == 0.0
