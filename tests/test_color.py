"""The colour boundary: sanitising and conversion to the display-referred [0, 1] estimators expect."""

from __future__ import annotations

import numpy as np
import pytest

from daflow_vfx.color import (
    COLORSPACES,
    cineon_to_linear,
    from_display,
    linear_to_cineon,
    resolve_colorspace,
    sanitize,
    to_display,
    tone_shoulder,
)
from daflow_vfx.errors import UsageError
from daflow_vfx.io.plate import PlateInfo


def _info(guess: str) -> PlateInfo:
    return PlateInfo(path="p.####.exr", kind="sequence", frames=[1, 2], width=4, height=2,
                     channels=["R", "G", "B"], layers=[""], pixel_type="half", file_format="openexr",
                     colorspace_guess=guess, fps=None)


def _srgb(x: float) -> float:
    """IEC 61966-2-1 encoding, written out here only to check OCIO's."""
    return 12.92 * x if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


def test_resolve_colorspace() -> None:
    assert resolve_colorspace("auto", _info("linear")) == "linear"
    assert resolve_colorspace("auto", _info("srgb")) == "srgb"
    assert resolve_colorspace("Rec709", _info("linear")) == "rec709"
    for name in COLORSPACES[1:]:
        assert resolve_colorspace(name, _info("srgb")) == name
    # short names are aliases of the OCIO config's spaces; any name of the config works as well
    assert resolve_colorspace("linear").ocio == "Linear Rec.709 (sRGB)"
    assert resolve_colorspace("srgb").ocio == "sRGB Encoded Rec.709 (sRGB)"
    acescg = resolve_colorspace("acescg", _info("srgb"))
    assert acescg.ocio == "ACEScg" and acescg.kind == "linear"
    assert resolve_colorspace("ARRI LogC3 (EI800)").kind == "log"


def test_sanitize_counts_bad_pixels_not_values() -> None:
    img = np.full((2, 3, 3), 0.5, np.float32)
    img[0, 0] = [np.nan, np.nan, 0.2]          # one pixel, two bad values
    img[0, 1, 2] = np.inf
    img[1, 0, 0] = -0.25
    img[1, 1, 1] = -np.inf
    img[1, 2, 0] = 4.0                         # largest finite value
    original = img.copy()
    result = sanitize(img)
    assert result.bad_pixels == 4
    np.testing.assert_array_equal(img, original)   # input untouched
    out = result.image
    assert out.dtype == np.float32 and np.isfinite(out).all() and out.min() >= 0
    assert out[0, 0].tolist() == [0.0, 0.0, pytest.approx(0.2)]
    assert out[0, 1, 2] == 4.0                 # +Inf -> largest finite value
    assert out[1, 0, 0] == 0.0 and out[1, 1, 1] == 0.0
    clean = sanitize(np.full((2, 2, 3), 0.25, np.float32))
    assert clean.bad_pixels == 0
    only_inf = sanitize(np.full((1, 1, 3), np.inf, np.float32))
    assert only_inf.bad_pixels == 1 and only_inf.image.max() == 0.0
    assert sanitize(np.array([[np.nan, 1.0]], np.float32)).bad_pixels == 1   # [H, W]: each value a pixel


def test_linear_tone_curve() -> None:
    values = np.array([0.0, 0.0031308, 0.18, 0.5, 1.0, 4.0, 100.0, 1e30], np.float32)
    x = values.reshape(1, -1, 1).repeat(3, -1)   # [1, 8, 3]
    y = to_display(x, "linear")[0, :, 0]
    assert y.dtype == np.float32
    assert y[0] == 0.0
    assert y[2] == pytest.approx(_srgb(0.18), abs=1e-5)   # exposure neutral mid grey
    assert y[2] == pytest.approx(0.4614, abs=1e-3)
    assert y[3] == pytest.approx(_srgb(0.5), abs=1e-5)    # identity up to the knee
    assert y[4] == pytest.approx(_srgb(0.75), abs=1e-5)   # 1.0 -> shoulder 0.75
    assert np.all(np.diff(y) > 0)                      # strictly increasing: highlights keep detail
    assert y[-1] <= 1.0 and y[-2] < 1.0
    dense = np.linspace(0.0, 2.0, 20001, dtype=np.float32)
    slope = np.diff(tone_shoulder(dense)) / np.diff(dense)
    assert np.abs(np.diff(slope)).max() < 1e-2         # no kink at the knee (C1)


def test_display_spaces_clip() -> None:
    img = np.array([[[-0.5, 0.25, 1.5]]], np.float32)
    np.testing.assert_array_equal(to_display(img, "srgb"), [[[0.0, 0.25, 1.0]]])
    # rec709 is Rec.1886 display light (gamma 2.4), re-encoded as sRGB: 0.25 -> 0.25 ** 2.4 -> sRGB
    out = to_display(img, "rec709")
    assert out[0, 0, 0] == 0.0 and out[0, 0, 2] == 1.0
    assert out[0, 0, 1] == pytest.approx(_srgb(0.25 ** 2.4), abs=1e-4)


def test_log_is_cineon() -> None:
    codes = np.array([95, 470, 685, 1023], np.float32) / 1023
    lin = cineon_to_linear(codes)
    assert lin[0] == pytest.approx(0.0, abs=1e-6)
    assert lin[2] == pytest.approx(1.0, abs=1e-6)
    assert lin[1] == pytest.approx(0.18, abs=0.02)     # code 470 is about mid grey
    np.testing.assert_allclose(linear_to_cineon(lin), codes, atol=1e-5)
    img = np.broadcast_to(codes.reshape(1, -1, 1), (1, 4, 3))
    np.testing.assert_allclose(to_display(img, "log"), to_display(cineon_to_linear(img), "linear"), atol=1e-5)


def test_output_is_display_range_and_nan_safe() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(0, 10, (8, 8, 3)).astype(np.float32)
    img[0, 0, 0] = np.nan
    img[1, 1, 1] = np.inf
    for space in COLORSPACES[1:]:
        out = to_display(img, space)
        assert out.shape == (8, 8, 3) and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(UsageError):
        to_display(img, "auto")
    with pytest.raises(ValueError):
        to_display(img[..., :2], "srgb")


@pytest.mark.parametrize("space", ["linear", "srgb", "rec709", "log", "ACEScg", "ARRI LogC3 (EI800)"])
def test_from_display_inverts_to_display(space: str) -> None:
    display = np.linspace(0.0, 0.98, 3 * 50, dtype=np.float32).reshape(5, 10, 3)
    np.testing.assert_allclose(to_display(from_display(display, space), space), display, atol=1e-4)
