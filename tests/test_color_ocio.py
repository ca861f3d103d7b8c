"""The colour boundary through OCIO: names, configs, file tags, camera log plates and video outputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from daflow_vfx.color import (
    check_output_colorspace,
    convert_colorspace,
    output_transfer,
    resolve_colorspace,
    to_display,
    to_output,
)
from daflow_vfx.errors import ConfigError, UsageError
from daflow_vfx.io import open_plate
from tests.helpers import noise_texture

LOGC3 = "ARRI LogC3 (EI800)"


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(UsageError, match=r"close matches: 'ARRI LogC3 \(EI800\)'") as caught:
        resolve_colorspace("logc3")
    assert caught.value.param == "input_colorspace"
    with pytest.raises(UsageError, match="'ACEScg'"):
        resolve_colorspace("acesgc")


def test_config_comes_from_the_option_then_ocio_then_the_builtin(monkeypatch, tmp_path) -> None:
    assert resolve_colorspace(LOGC3).config == "ocio://studio-config-latest"
    # the CG config has no camera spaces: with it in $OCIO a LogC name is unknown ...
    monkeypatch.setenv("OCIO", "ocio://cg-config-latest")
    with pytest.raises(UsageError, match="cg-config-latest"):
        resolve_colorspace(LOGC3)
    # ... unless --ocio-config names a config that has it
    assert resolve_colorspace(LOGC3, ocio_config="ocio://studio-config-latest").kind == "log"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        resolve_colorspace("linear", ocio_config=str(tmp_path / "missing.ocio"))
    assert caught.value.param == "ocio_config"
    bad = tmp_path / "bad.ocio"
    bad.write_text("not: an ocio config\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        resolve_colorspace("linear", ocio_config=str(bad))


def _exr(path, image: np.ndarray, colorspace: str | None = None) -> None:
    from daflow_vfx.io.images import write_oiio_image

    attributes = {"colorspace": colorspace} if colorspace else {}
    write_oiio_image(path, image, channel_names=("R", "G", "B"), pixel_type="half", attributes=attributes)


def test_auto_honours_the_files_colorspace_attribute(tmp_path, caplog) -> None:
    image = noise_texture(8, 8)   # [8, 8, 3]
    _exr(tmp_path / "plain.exr", image)
    _exr(tmp_path / "tagged.exr", image, "ACEScg")
    with open_plate(tmp_path / "plain.exr") as plate, caplog.at_level(logging.WARNING):
        plain = resolve_colorspace("auto", plate.info)
    assert (plain, plain.kind) == ("linear", "linear") and not caplog.records
    with open_plate(tmp_path / "tagged.exr") as plate, caplog.at_level(logging.WARNING):
        tagged = resolve_colorspace("auto", plate.info)
        named = resolve_colorspace("srgb", plate.info)   # a name given wins over the tag
    assert tagged.ocio == "ACEScg" and "colorspace attribute" in tagged.reason
    assert "ACEScg" in caplog.text and named == "srgb"


def test_a_logc3_plate_read_as_logc3_looks_like_its_source() -> None:
    linear = (noise_texture(16, 16) ** 2.2).astype(np.float32)   # [16, 16, 3] scene-linear, 0..0.9
    logc = convert_colorspace(linear, "linear", LOGC3)             # what the camera would record
    assert 0.05 < logc.min() and logc.max() < 0.8                 # flat log code values
    right = to_display(logc, LOGC3)
    np.testing.assert_allclose(right, to_display(linear, "linear"), atol=2e-3)
    careless = to_display(logc, "srgb")
    assert careless.std() < 0.6 * right.std()                     # the flat, low-contrast picture


def test_video_outputs_convert_and_tag() -> None:
    logc = resolve_colorspace(LOGC3)
    greys = np.linspace(0.1, 0.9, 8, dtype=np.float32)
    ramp = np.repeat(greys[:, None], 3, axis=1).reshape(2, 4, 3)   # [2, 4, 3] neutral LogC code values
    review = to_output(ramp, logc, "Rec.1886 Rec.709 - Display")
    assert review.min() >= 0 and review.max() <= 1 and np.all(np.diff(review[..., 1].reshape(-1)) > 0)
    np.testing.assert_allclose(to_output(ramp, logc, LOGC3), ramp, atol=1e-5)   # delivered in the plate's log
    np.testing.assert_allclose(to_output(ramp, logc, None), to_display(ramp, logc), atol=1e-6)
    assert output_transfer(logc, None) == 13          # sRGB display
    assert output_transfer(logc, "rec709") == 1
    assert output_transfer(logc, LOGC3) == 2          # log: unspecified
    with pytest.raises(UsageError, match="output_colorspace"):
        check_output_colorspace("rec7O9")


@pytest.mark.parametrize(("trc", "expected", "warns"), [(13, "srgb", False), (1, "rec709", True)])
def test_auto_reads_a_videos_transfer_characteristics(tmp_path, caplog, trc: int, expected: str,
                                                      warns: bool) -> None:
    from daflow_vfx.io import write_video

    path = tmp_path / "clip.mp4"
    write_video(path, [noise_texture(16, 16)] * 2, fps=24, color_trc=trc)
    with open_plate(path) as plate, caplog.at_level(logging.WARNING):
        space = resolve_colorspace("auto", plate.info)
    assert space == expected and "transfer characteristics" in space.reason
    assert bool(caplog.records) == warns   # only a tag that changes what auto picks is a warning


def test_a_ppm_is_read_as_srgb_not_as_openimageios_rec709_guess(tmp_path):
    import numpy as np
    import OpenImageIO as oiio

    from daflow_vfx.io.sequence import read_image_header

    path = str(tmp_path / "frame.ppm")  # flow-dev's FlyingChairs frames are PPM
    out = oiio.ImageOutput.create(path)
    out.open(path, oiio.ImageSpec(8, 8, 3, "uint8"))
    out.write_image(np.full((8, 8, 3), 128, np.uint8))
    out.close()
    assert read_image_header(path).colorspace_tag == ""
