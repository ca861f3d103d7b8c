"""Middlebury .flo files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from daflow_vfx.errors import CorruptFileError, MissingInputError
from daflow_vfx.io import read_flo, write_flo


def test_round_trip_and_byte_layout(tmp_path) -> None:
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 3, (24, 32, 2)).astype(np.float32)   # [H, W, 2]
    path = tmp_path / "f.flo"
    write_flo(path, flow)
    raw = path.read_bytes()
    assert raw[:4] == b"PIEH"                                   # float32 202021.25, little-endian
    assert np.frombuffer(raw[4:12], "<i4").tolist() == [32, 24]  # width, height
    assert len(raw) == 12 + 24 * 32 * 2 * 4
    # u, v interleaved per pixel, row by row from the top: the in-memory (.flo) convention, +v down.
    first = np.frombuffer(raw[12:20], "<f4")
    assert first.tolist() == flow[0, 0].tolist()
    back = read_flo(path)
    assert back.dtype == np.float32 and back.shape == (24, 32, 2)
    np.testing.assert_array_equal(back, flow)
    assert back.flags.writeable
    assert os.listdir(tmp_path) == ["f.flo"]


def test_sign_convention_is_y_down(tmp_path) -> None:
    flow = np.zeros((4, 5, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, -2.0       # right 3, UP 2: v is negative in .flo (y down)
    write_flo(tmp_path / "up.flo", flow)
    values = np.frombuffer((tmp_path / "up.flo").read_bytes()[12:], "<f4").reshape(4, 5, 2)
    assert np.all(values[..., 0] == 3.0) and np.all(values[..., 1] == -2.0)


def test_corrupt_files(tmp_path) -> None:
    flow = np.ones((6, 8, 2), np.float32)
    path = tmp_path / "f.flo"
    write_flo(path, flow)
    raw = path.read_bytes()
    cases = {
        "short.flo": raw[:8],
        "truncated.flo": raw[: len(raw) // 2],
        "magic.flo": b"ABCD" + raw[4:],
        "size.flo": raw[:4] + np.array([-1, 8], "<i4").tobytes() + raw[12:],
        "long.flo": raw + b"\0\0\0\0",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CorruptFileError) as info:
            read_flo(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(MissingInputError):
        read_flo(tmp_path / "absent.flo")


def test_write_rejects_wrong_shape(tmp_path) -> None:
    with pytest.raises(ValueError):
        write_flo(tmp_path / "bad.flo", np.zeros((4, 4, 3), np.float32))
    assert os.listdir(tmp_path) == []
