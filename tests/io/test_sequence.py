"""Image-sequence plates through OpenImageIO: formats, channels/layers, gaps, sizes, corrupt files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from daflow_vfx.errors import (
    CorruptFileError,
    FrameSizeError,
    InputError,
    MissingFramesError,
    MissingInputError,
)
from daflow_vfx.io import open_plate, write_image


def _sequence(tmp_path, iox, texture, frames, name="sh.{:04d}.exr", pixel_type="half", size=None):
    for frame in frames:
        pixels = texture * 0 + frame / 2048 if size is None else np.zeros((size[1], size[0], 3), np.float32)
        iox.write(tmp_path / name.format(frame), pixels, ["R", "G", "B"], pixel_type)
    return os.path.join(tmp_path, name.replace("{:04d}", "####"))


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("pixel_type", ["half", "float"])
def test_exr_sequence_reads_linear_values_unclamped(tmp_path, iox, texture, pixel_type) -> None:
    hot = texture * 8.0 - 0.5            # values above 1 and below 0 must survive as they are
    for frame in (1001, 1002, 1003):
        iox.write(tmp_path / f"sh.{frame}.exr", hot + frame - 1001, ["R", "G", "B"], pixel_type)
    with open_plate(os.path.join(tmp_path, "sh.####.exr")) as plate:
        info = plate.info
        assert info.kind == "sequence"
        assert info.frames == [1001, 1002, 1003]
        assert (info.width, info.height) == (32, 24)
        assert info.pixel_type == pixel_type
        assert info.file_format == "openexr"
        assert info.colorspace_guess == "linear"
        assert info.channels == ["R", "G", "B"]
        assert info.layers == [""]
        frame = plate.read(1002)
        assert frame.dtype == np.float32 and frame.shape == (24, 32, 3)
        np.testing.assert_array_equal(frame, hot + 1)


def test_exr_channel_order_on_disk_does_not_matter(tmp_path, iox, texture) -> None:
    # OpenEXR stores channels sorted by name; B, G, R must still come back as R, G, B.
    rgba = np.concatenate([texture, np.ones((24, 32, 1), np.float32)], axis=-1)
    iox.write(tmp_path / "rgba.0001.exr", rgba[..., [3, 2, 1, 0]], ["A", "B", "G", "R"])
    with open_plate(os.path.join(tmp_path, "rgba.####.exr")) as plate:
        np.testing.assert_array_equal(plate.read(1), texture)


def test_exr_layers_and_any_channel_names(tmp_path, iox, texture) -> None:
    diffuse = texture[..., ::-1].copy()
    pixels = np.concatenate([texture, diffuse, texture[..., :1] * 3, texture[..., :2]], axis=-1)
    names = ["R", "G", "B", "diffuse.R", "diffuse.G", "diffuse.B", "depth.Z", "uv.x", "uv.y"]
    iox.write(tmp_path / "multi.0001.exr", pixels, names, "float")
    iox.write(tmp_path / "multi.0002.exr", pixels, names, "float")
    pattern = os.path.join(tmp_path, "multi.####.exr")
    with open_plate(pattern) as plate:
        assert set(plate.info.layers) == {"", "diffuse", "depth", "uv"}
        assert plate.info.layers[0] == ""
        np.testing.assert_array_equal(plate.read(1), texture)
    with open_plate(pattern, layer="diffuse") as plate:
        np.testing.assert_array_equal(plate.read(2), diffuse)
    with open_plate(pattern, layer="depth") as plate:       # one channel: replicated to grey RGB
        np.testing.assert_array_equal(plate.read(1), np.repeat(texture[..., :1] * 3, 3, axis=-1))
    with pytest.raises(InputError) as info:
        open_plate(pattern, layer="specular")
    message = _one_line(info.value)
    assert "specular" in message and "'diffuse'" in message and "'depth'" in message


def test_exr_without_rgb_picks_first_rgb_layer_or_single_channel(tmp_path, iox, texture) -> None:
    iox.write(tmp_path / "lay.0001.exr", np.concatenate([texture, texture[..., :1]], -1),
              ["beauty.R", "beauty.G", "beauty.B", "Z"])
    with open_plate(os.path.join(tmp_path, "lay.####.exr")) as plate:
        np.testing.assert_array_equal(plate.read(1), texture)
    iox.write(tmp_path / "grey.0001.exr", texture[..., :1], ["Y"])
    with open_plate(os.path.join(tmp_path, "grey.####.exr")) as plate:
        np.testing.assert_array_equal(plate.read(1), np.repeat(texture[..., :1], 3, axis=-1))
    iox.write(tmp_path / "odd.0001.exr", texture[..., :2], ["P.x", "P.y"])
    with pytest.raises(InputError, match="no R,G,B channels.*`layer`"):
        open_plate(os.path.join(tmp_path, "odd.####.exr"))


def test_multipart_exr_layers(tmp_path, iox, texture) -> None:
    oiio = pytest.importorskip("OpenImageIO")
    path = str(tmp_path / "parts.0001.exr")
    first = oiio.ImageSpec(32, 24, 3, "half")
    first.attribute("oiio:subimagename", "rgba")
    second = oiio.ImageSpec(32, 24, 3, "half")
    second.attribute("oiio:subimagename", "diffuse")
    out = oiio.ImageOutput.create(path)
    assert out.open(path, (first, second))
    out.write_image(texture)
    assert out.open(path, second, "AppendSubimage")
    out.write_image(texture * 0.5)
    out.close()
    with open_plate(os.path.join(tmp_path, "parts.####.exr")) as plate:
        assert plate.info.layers == ["", "diffuse"]
        np.testing.assert_array_equal(plate.read(1), texture)
    with open_plate(os.path.join(tmp_path, "parts.####.exr"), layer="diffuse") as plate:
        np.testing.assert_array_equal(plate.read(1), texture * 0.5)


def test_exr_data_window_is_placed_in_display_window(tmp_path, texture) -> None:
    oiio = pytest.importorskip("OpenImageIO")
    path = str(tmp_path / "crop.0001.exr")
    spec = oiio.ImageSpec(8, 6, 3, "float")
    spec.x, spec.y = 4, 2                          # data window (4, 2)-(11, 7) inside a 32x24 display
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, 32, 24
    out = oiio.ImageOutput.create(path)
    assert out.open(path, spec)
    out.write_image(texture[:6, :8])
    out.close()
    with open_plate(os.path.join(tmp_path, "crop.####.exr")) as plate:
        assert (plate.info.width, plate.info.height) == (32, 24)
        frame = plate.read(1)
    np.testing.assert_array_equal(frame[2:8, 4:12], texture[:6, :8])
    assert frame.sum() == pytest.approx(texture[:6, :8].sum())


@pytest.mark.parametrize(
    ("ext", "pixel_type", "bits", "tolerance"),
    [("png", "uint8", 8, 0.5 / 255), ("png", "uint16", 16, 0.5 / 65535), ("tif", "uint8", 8, 0.5 / 255),
     ("tif", "uint16", 16, 0.5 / 65535), ("dpx", "uint10", 10, 0.5 / 1023), ("jpg", "uint8", 8, 0.02)],
)
def test_integer_formats_scale_by_their_range(tmp_path, texture, ext, pixel_type, bits, tolerance) -> None:
    ramp = texture.copy()
    ramp[0, 0] = 1.0      # full scale must read back as exactly 1.0 whatever the depth (never /255 on 16-bit)
    ramp[0, 1] = 0.0
    for frame in (1, 2):
        write_image(tmp_path / f"img.{frame:04d}.{ext}", ramp, bits=bits)
    with open_plate(os.path.join(tmp_path, f"img.####.{ext}")) as plate:
        assert plate.info.pixel_type == pixel_type
        assert plate.info.colorspace_guess == "srgb"
        assert plate.info.file_format in {"png": ("png",), "tif": ("tiff",), "dpx": ("dpx",),
                                          "jpg": ("jpeg",)}[ext]
        frame = plate.read(2)
    assert frame.dtype == np.float32
    assert float(frame.max()) <= 1.0 and float(frame.min()) >= 0.0
    if ext != "jpg":
        assert frame[0, 0].tolist() == [1.0, 1.0, 1.0]
        assert frame[0, 1].tolist() == [0.0, 0.0, 0.0]
        assert np.abs(frame - ramp).mean() < tolerance
    else:   # lossy: compare on average only
        assert abs(float(frame.mean()) - float(ramp.mean())) < tolerance


@pytest.mark.parametrize(("name", "pattern"),
                         [("sh_{:04d}.exr", "sh_%04d.exr"), ("sh_{:04d}.exr", "sh_$F4.exr")])
def test_printf_and_houdini_patterns(tmp_path, iox, texture, name, pattern) -> None:
    _sequence(tmp_path, iox, texture, [5, 6, 7], name=name)
    with open_plate(os.path.join(tmp_path, pattern)) as plate:
        assert plate.info.frames == [5, 6, 7]
        assert float(plate.read(6)[0, 0, 0]) == pytest.approx(6 / 2048)


def test_single_image_is_a_one_frame_plate(tmp_path, iox, texture) -> None:
    path = iox.write(tmp_path / "still.exr", texture, ["R", "G", "B"])
    with open_plate(path, start_frame=1001) as plate:
        assert plate.info.frames == [1001]
        np.testing.assert_array_equal(plate.read(1001), texture)


def test_missing_pattern_and_file(tmp_path) -> None:
    pattern = os.path.join(tmp_path, "nothing.####.exr")
    with pytest.raises(MissingInputError) as info:
        open_plate(pattern)
    message = _one_line(info.value)
    assert pattern in message and "check" in message
    with pytest.raises(MissingInputError, match="no such file"):
        open_plate(tmp_path / "clip.mov")
    with pytest.raises(MissingInputError, match="is a folder"):
        open_plate(tmp_path)


def test_gap_names_missing_frames(tmp_path, iox, texture) -> None:
    pattern = _sequence(tmp_path, iox, texture, [1001, 1002, 1003, 1004, 1006, 1008])
    with pytest.raises(MissingFramesError) as info:
        open_plate(pattern)
    message = _one_line(info.value)
    assert info.value.missing == [1005, 1007]
    assert "1005, 1007" in message and "`allow_gaps`" in message and pattern in message


def test_allow_gaps_holds_the_previous_frame(tmp_path, iox, texture) -> None:
    pattern = _sequence(tmp_path, iox, texture, [1001, 1002, 1005])
    with open_plate(pattern, allow_gaps=True) as plate:
        assert plate.info.frames == [1001, 1002, 1003, 1004, 1005]
        assert plate.info.missing == [1003, 1004]
        np.testing.assert_array_equal(plate.read(1003), plate.read(1002))
        np.testing.assert_array_equal(plate.read(1004), plate.read(1002))
        assert float(plate.read(1005)[0, 0, 0]) == pytest.approx(1005 / 2048)
        with pytest.raises(InputError, match="outside the plate"):
            plate.read(1006)


def test_frame_size_change_names_the_frame_and_both_sizes(tmp_path, iox, texture) -> None:
    pattern = _sequence(tmp_path, iox, texture, [1, 2])
    _sequence(tmp_path, iox, texture, [3], size=(30, 20))
    with open_plate(pattern) as plate:
        plate.read(2)
        with pytest.raises(FrameSizeError) as info:
            plate.read(3)
    message = _one_line(info.value)
    assert "sh.0003.exr" in message and "frame 3" in message
    assert "30x20" in message and "32x24" in message and "frame 1" in message


@pytest.mark.parametrize("ext", ["exr", "png", "tif", "dpx"])
def test_truncated_frame_raises_corrupt_file_error_naming_it(tmp_path, iox, texture, ext) -> None:
    rng = np.random.default_rng(3)
    noisy = rng.random((24, 32, 3)).astype(np.float32)      # incompressible, so half the bytes lose pixels
    for frame in (1, 2, 3):
        write_image(tmp_path / f"n.{frame:04d}.{ext}", noisy)
    iox.truncate(tmp_path / f"n.0002.{ext}")
    with open_plate(os.path.join(tmp_path, f"n.####.{ext}")) as plate:
        plate.read(1)
        with pytest.raises(CorruptFileError) as info:
            plate.read(2)
        plate.read(3)
    message = _one_line(info.value)
    assert f"n.0002.{ext}" in message and "frame 2" in message and "re-render" in message


def test_corrupt_first_frame_fails_on_open(tmp_path, texture) -> None:
    write_image(tmp_path / "c.0001.exr", texture)
    write_image(tmp_path / "c.0002.exr", texture)
    (tmp_path / "c.0001.exr").write_bytes(b"not an exr at all")
    with pytest.raises(CorruptFileError, match="c.0001.exr"):
        open_plate(os.path.join(tmp_path, "c.####.exr"))


def test_frame_deleted_after_open(tmp_path, iox, texture) -> None:
    pattern = _sequence(tmp_path, iox, texture, [1, 2])
    with open_plate(pattern) as plate:
        os.remove(tmp_path / "sh.0002.exr")
        with pytest.raises(MissingInputError, match="sh.0002.exr"):
            plate.read(2)
