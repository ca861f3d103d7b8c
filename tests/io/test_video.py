"""Video plates through PyAV, and the atomic video writer."""

from __future__ import annotations

import os
import random
from fractions import Fraction

import numpy as np
import pytest

from daflow_vfx.errors import CorruptFileError, InputError
from daflow_vfx.io import open_plate, write_video

av = pytest.importorskip("av")

H, W = 24, 32


def _flat_frames(n: int) -> list[np.ndarray]:
    """Flat grey frames whose level encodes the frame index (robust to chroma subsampling and x264)."""
    return [np.full((H, W, 3), (i + 1) / (n + 1), np.float32) for i in range(n)]


def _textured_video(path: str, n: int, *, gop: int, bframes: int, open_gop: bool = False) -> None:
    """A video with short GOPs and B-frames, written with PyAV directly, to exercise seeking."""
    rng = np.random.default_rng(11)
    container = av.open(path, "w")
    stream = container.add_stream("libx264", rate=24)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.options = {"g": str(gop), "bf": str(bframes), "x264-params": f"open-gop={int(open_gop)}"}
    for i in range(n):
        image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 24)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
def test_video_plate_frames_and_values(tmp_path, ext) -> None:
    path = str(tmp_path / f"clip.{ext}")
    frames = _flat_frames(12)
    assert write_video(path, iter(frames), fps=24) == 12
    assert os.listdir(tmp_path) == [f"clip.{ext}"]          # atomic: no temp file left
    with open_plate(path, start_frame=1001) as plate:
        info = plate.info
        assert info.kind == "video"
        assert info.frames == list(range(1001, 1013))
        assert (info.width, info.height) == (W, H)
        assert info.fps == pytest.approx(24.0)
        assert info.pixel_type == "uint8"
        assert info.file_format == ext
        assert info.colorspace_guess == "srgb"
        assert info.channels == ["R", "G", "B"] and info.layers == [""]
        for k, frame_number in enumerate(info.frames):
            image = plate.read(frame_number)
            assert image.dtype == np.float32 and image.shape == (H, W, 3)
            assert float(image.mean()) == pytest.approx(float(frames[k].mean()), abs=2.5 / 255)
        with pytest.raises(InputError, match="outside the video"):
            plate.read(1000)


@pytest.mark.parametrize(("ext", "open_gop"), [("mp4", False), ("mp4", True), ("mkv", True)])
def test_random_access_matches_sequential_decode(tmp_path, ext, open_gop) -> None:
    path = str(tmp_path / f"gop.{ext}")
    _textured_video(path, 60, gop=8, bframes=3, open_gop=open_gop)
    with open_plate(path) as plate:
        sequential = {f: plate.read(f) for f in plate.info.frames}
    assert len(sequential) == 60
    order = list(sequential)
    random.Random(3).shuffle(order)
    order += [60, 1, 59, 2, 30, 29, 31]                     # long jumps back and forth
    with open_plate(path) as plate:
        for f in order:
            np.testing.assert_array_equal(plate.read(f), sequential[f], err_msg=f"frame {f}")


def test_ten_bit_video_scales_by_its_own_range(tmp_path) -> None:
    path = str(tmp_path / "deep.mov")
    white = np.ones((H, W, 3), np.float32)
    grey = np.full((H, W, 3), 0.5, np.float32)
    write_video(path, [white, grey, white], fps=25, pix_fmt="yuv420p10le")
    with open_plate(path) as plate:
        assert plate.info.pixel_type == "uint10"
        assert float(plate.read(1).mean()) == pytest.approx(1.0, abs=2e-3)   # not 1023/255 or 65535/255
        assert float(plate.read(2).mean()) == pytest.approx(0.5, abs=2e-3)
        assert float(plate.read(3).max()) <= 1.0


def test_odd_size_is_padded_for_chroma_subsampling(tmp_path) -> None:
    path = str(tmp_path / "odd.mp4")
    write_video(path, [np.full((23, 31, 3), 0.5, np.float32)] * 3, fps=24)
    with open_plate(path) as plate:
        assert (plate.info.width, plate.info.height) == (32, 24)


def test_uint8_frames_are_taken_as_they_are(tmp_path) -> None:
    path = str(tmp_path / "u8.mp4")
    write_video(path, [np.full((H, W, 3), 128, np.uint8)] * 2, fps=24)
    with open_plate(path) as plate:
        assert float(plate.read(1).mean()) == pytest.approx(128 / 255, abs=2 / 255)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_truncated_video_raises_corrupt_file_error(tmp_path, iox, ext) -> None:
    path = str(tmp_path / f"cut.{ext}")
    rng = np.random.default_rng(0)
    write_video(path, [rng.random((H, W, 3)).astype(np.float32) for _ in range(12)], fps=24)
    iox.truncate(path, 0.5)
    with pytest.raises(CorruptFileError) as info:
        with open_plate(path) as plate:       # on open, or at the latest on reading the lost frames
            for frame in plate.info.frames:
                plate.read(frame)
    message = str(info.value)
    assert path in message and "\n" not in message and "re-" in message


def test_truncated_faststart_mp4_raises_corrupt_file_error(tmp_path, iox) -> None:
    path = str(tmp_path / "fast.mp4")
    container = av.open(path, "w", options={"movflags": "+faststart"})   # index at the start survives a cut
    stream = container.add_stream("libx264", rate=24)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    rng = np.random.default_rng(1)
    for i in range(12):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 24)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    iox.truncate(path, 0.5)
    with pytest.raises(CorruptFileError, match="fast.mp4"):
        with open_plate(path) as plate:
            for frame in plate.info.frames:
                plate.read(frame)


def test_garbage_video_and_layer_option(tmp_path) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"\0\0\0\x18ftypmp42" + os.urandom(300))
    with pytest.raises(CorruptFileError, match="junk.mp4"):
        open_plate(path)
    good = str(tmp_path / "good.mp4")
    write_video(good, _flat_frames(2), fps=24)
    with pytest.raises(InputError, match="no layers"):
        open_plate(good, layer="diffuse")


def test_write_video_failure_leaves_no_file(tmp_path) -> None:
    def frames():
        yield np.zeros((H, W, 3), np.float32)
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError, match="renderer died"):
        write_video(tmp_path / "dead.mp4", frames(), fps=24)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError):
        write_video(tmp_path / "empty.mp4", [], fps=24)
    assert os.listdir(tmp_path) == []
