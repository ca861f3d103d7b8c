"""Motion-vector EXRs: channel names, the sign conventions of each layout, header metadata, atomicity.

The sign-convention tests are the proof of the conventions documented in daflow_vfx/io/exr.py and the
README. They build a plate whose content moves by a known (dx, dy) per frame, check the in-memory
.flo-convention flow against the pixels, write each layout and read the raw channels back with
OpenImageIO (not with daflow_vfx), then check the stored values against each host's own definition.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from daflow_vfx.errors import CorruptFileError, InputError, OutputError, UsageError
from daflow_vfx.io import (
    LAYOUTS,
    LOSSLESS_COMPRESSIONS,
    is_complete_exr,
    open_plate,
    read_motion_exr,
    write_image,
    write_motion_exr,
)

DX, DY = 3, -2   # content moves 3 px right and 2 px UP per frame (image rows grow downwards: dy < 0 is up)
H, W = 24, 32


@pytest.fixture
def translated_plate(tmp_path, texture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three frames of a texture translated by (DX, DY) per frame, read back through open_plate."""
    for i in range(3):
        # np.roll by +DX columns / +DY rows puts pixel (x, y) of frame i at (x + DX, y + DY) in frame i + 1.
        frame = np.roll(texture, shift=(DY * i, DX * i), axis=(0, 1))
        write_image(tmp_path / f"move.{1001 + i}.exr", frame)
    with open_plate(os.path.join(tmp_path, "move.####.exr")) as plate:
        a, b, c = (plate.read(f) for f in (1001, 1002, 1003))
    return a, b, c


def _flo_flow(u: float, v: float) -> np.ndarray:
    flow = np.empty((H, W, 2), np.float32)   # [H, W, 2]
    flow[..., 0], flow[..., 1] = u, v
    return flow


def test_flo_convention_matches_the_plate(translated_plate) -> None:
    """In memory (.flo): pixel (x, y) of frame n is at (x + u, y + v) of frame n+1, y down."""
    a, b, _ = translated_plate
    forward = _flo_flow(DX, DY)
    ys, xs = np.mgrid[4:H - 4, 4:W - 4]
    u, v = forward[ys, xs, 0].astype(int), forward[ys, xs, 1].astype(int)
    np.testing.assert_array_equal(b[ys + v, xs + u], a[ys, xs])
    backward = _flo_flow(-DX, -DY)             # frame n+1 -> n
    u, v = backward[ys, xs, 0].astype(int), backward[ys, xs, 1].astype(int)
    np.testing.assert_array_equal(a[ys + v, xs + u], b[ys, xs])


def test_nuke_layout_signs(tmp_path, iox, translated_plate) -> None:
    a, b, c = translated_plate
    path = tmp_path / "vec.1002.exr"
    # Frame 1002: forward goes to 1003, backward goes to 1001.
    write_motion_exr(path, forward=_flo_flow(DX, DY), backward=_flo_flow(-DX, -DY), layout="nuke")
    raw = iox.channels(path)
    assert set(raw) == {"forward.u", "forward.v", "backward.u", "backward.v"}
    # Nuke: pixels, +v UP (origin bottom-left). Content moves right 3 and up 2.
    assert np.all(raw["forward.u"] == DX)           # +3
    assert np.all(raw["forward.v"] == -DY)          # +2: up is positive
    assert np.all(raw["backward.u"] == -DX)         # -3
    assert np.all(raw["backward.v"] == DY)          # -2
    # The same fact in Nuke's own coordinates: with rows counted from the bottom (yn = H-1-y), a pixel at
    # (x, yn) of 1002 lands at (x + forward.u, yn + forward.v) of 1003 and came from (x + backward.u,
    # yn + backward.v) of 1001.
    ys, xs = np.mgrid[4:H - 4, 4:W - 4]
    up = lambda image: image[::-1]   # noqa: E731  (row 0 = bottom, as in Nuke)
    fu, fv = raw["forward.u"].astype(int)[::-1], raw["forward.v"].astype(int)[::-1]
    np.testing.assert_array_equal(up(c)[ys + fv[ys, xs], xs + fu[ys, xs]], up(b)[ys, xs])
    bu, bv = raw["backward.u"].astype(int)[::-1], raw["backward.v"].astype(int)[::-1]
    np.testing.assert_array_equal(up(a)[ys + bv[ys, xs], xs + bu[ys, xs]], up(b)[ys, xs])


def test_blender_layout_signs(tmp_path, iox, translated_plate) -> None:
    a, b, c = translated_plate
    path = tmp_path / "vec.1002.exr"
    write_motion_exr(path, forward=_flo_flow(DX, DY), backward=_flo_flow(-DX, -DY), layout="blender")
    raw = iox.channels(path)
    assert set(raw) == {"Vector.X", "Vector.Y", "Vector.Z", "Vector.W"}
    # Cycles: X/Y = previous position - current position, Z/W = current position - next position, y up.
    # Positions of one surface point in y-up pixels: previous = p - (DX, -DY), next = p + (DX, -DY).
    moving_up = -DY
    assert np.all(raw["Vector.X"] == -DX)            # prev - cur = -3
    assert np.all(raw["Vector.Y"] == -moving_up)     # prev - cur = -2 (it was lower before)
    assert np.all(raw["Vector.Z"] == -DX)            # cur - next = -3
    assert np.all(raw["Vector.W"] == -moving_up)     # cur - next = -2
    # Against the pixels, in y-up rows: the point at (x, yn) in 1002 was at (x + X, yn + Y) in 1001 and
    # will be at (x - Z, yn - W) in 1003.
    ys, xs = np.mgrid[4:H - 4, 4:W - 4]
    up = lambda image: image[::-1]   # noqa: E731
    X, Y = raw["Vector.X"].astype(int)[::-1], raw["Vector.Y"].astype(int)[::-1]
    Z, Wc = raw["Vector.Z"].astype(int)[::-1], raw["Vector.W"].astype(int)[::-1]
    np.testing.assert_array_equal(up(a)[ys + Y[ys, xs], xs + X[ys, xs]], up(b)[ys, xs])
    np.testing.assert_array_equal(up(c)[ys - Wc[ys, xs], xs - Z[ys, xs]], up(b)[ys, xs])


def test_both_layout_writes_both_sets_with_exact_names(tmp_path, iox) -> None:
    path = tmp_path / "both.exr"
    conf = np.full((H, W), 0.75, np.float32)
    occ = np.zeros((H, W), np.float32)
    occ[:, -3:] = 1.0
    write_motion_exr(path, forward=_flo_flow(DX, DY), backward=_flo_flow(-DX, -DY), layout="both",
                     confidence=conf, occlusion=occ)
    raw = iox.channels(path)
    assert set(raw) == {"forward.u", "forward.v", "backward.u", "backward.v",
                        "Vector.X", "Vector.Y", "Vector.Z", "Vector.W", "flow.confidence", "flow.occlusion"}
    assert np.all(raw["forward.v"] == 2) and np.all(raw["Vector.W"] == -2) and np.all(raw["Vector.X"] == -3)
    np.testing.assert_array_equal(raw["flow.confidence"], conf)
    np.testing.assert_array_equal(raw["flow.occlusion"], occ)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_read_motion_exr_round_trips_any_layout(tmp_path, layout) -> None:
    rng = np.random.default_rng(1)
    fwd = rng.normal(0, 4, (H, W, 2)).astype(np.float16).astype(np.float32)   # half-exact values
    bwd = rng.normal(0, 4, (H, W, 2)).astype(np.float16).astype(np.float32)
    path = tmp_path / f"{layout}.exr"
    write_motion_exr(path, forward=fwd, backward=bwd, layout=layout, metadata={"frame": 1002})
    motion = read_motion_exr(path)
    np.testing.assert_array_equal(motion.forward, fwd)
    np.testing.assert_array_equal(motion.backward, bwd)
    assert motion.confidence is None and motion.occlusion is None
    assert motion.metadata["frame"] == "1002" and motion.metadata["layout"] == layout


def test_rgb_is_carried_first(tmp_path, iox, texture) -> None:
    oiio = pytest.importorskip("OpenImageIO")
    path = tmp_path / "rgb.exr"
    write_motion_exr(path, forward=_flo_flow(1, 1), backward=None, rgb=texture)
    inp = oiio.ImageInput.open(str(path))
    names = list(inp.spec().channelnames)
    inp.close()
    assert names[:3] == ["R", "G", "B"]
    np.testing.assert_array_equal(np.stack([iox.channels(path)[c] for c in "RGB"], -1), texture)


def test_missing_neighbour_is_zeros_plus_header_flag(tmp_path, iox) -> None:
    first = tmp_path / "first.exr"    # first frame of a plate: no previous frame
    write_motion_exr(first, forward=_flo_flow(DX, DY), backward=None, layout="both")
    raw = iox.channels(first)
    for name in ("backward.u", "backward.v", "Vector.X", "Vector.Y"):
        assert np.all(raw[name] == 0) and not np.signbit(raw[name]).any()
    attrs = iox.attributes(first)
    assert attrs["daflow/backwardValid"] == 0 and attrs["daflow/forwardValid"] == 1
    motion = read_motion_exr(first)
    assert motion.backward is None and motion.forward is not None

    last = tmp_path / "last.exr"
    write_motion_exr(last, forward=None, backward=_flo_flow(-DX, -DY))
    attrs = iox.attributes(last)
    assert attrs["daflow/forwardValid"] == 0 and attrs["daflow/backwardValid"] == 1
    assert np.all(iox.channels(last)["forward.u"] == 0)
    assert read_motion_exr(last).forward is None


def test_header_metadata_compression_and_precision(tmp_path, iox) -> None:
    oiio = pytest.importorskip("OpenImageIO")
    meta = {"estimator": "dis", "estimatorVersion": "1.0", "weightsSha256": "ab" * 32,
            "sourceFrames": "1001,1002,1003", "sourcePlate": "/plates/sh010.####.exr", "frame": 1002}
    half_path, float_path = tmp_path / "h.exr", tmp_path / "f.exr"
    write_motion_exr(half_path, forward=_flo_flow(0.1, 0.2), backward=None, metadata=meta)
    write_motion_exr(float_path, forward=_flo_flow(0.1, 0.2), backward=None, half=False, compression="piz",
                     metadata=meta)
    attrs = iox.attributes(half_path)
    for key, value in meta.items():
        assert attrs[f"daflow/{key}"] == str(value)
    assert attrs["compression"] == "zip"
    assert iox.attributes(float_path)["compression"] == "piz"
    for path, fmt in ((half_path, "half"), (float_path, "float")):
        inp = oiio.ImageInput.open(str(path))
        assert str(inp.spec().format) == fmt
        inp.close()
    assert float(iox.channels(float_path)["forward.u"][0, 0]) == np.float32(0.1)
    assert read_motion_exr(half_path).metadata["estimator"] == "dis"


def test_lossless_compressions_all_write(tmp_path) -> None:
    for compression in LOSSLESS_COMPRESSIONS:
        path = tmp_path / f"{compression}.exr"
        write_motion_exr(path, forward=_flo_flow(1.5, -2.5), backward=None, compression=compression)
        np.testing.assert_array_equal(read_motion_exr(path).forward, _flo_flow(1.5, -2.5))


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(UsageError, match="layout"):
        write_motion_exr(tmp_path / "x.exr", forward=_flo_flow(1, 1), backward=None, layout="maya")
    with pytest.raises(UsageError, match="lossless"):
        write_motion_exr(tmp_path / "x.exr", forward=_flo_flow(1, 1), backward=None, compression="dwaa")
    with pytest.raises(ValueError):
        write_motion_exr(tmp_path / "x.exr", forward=_flo_flow(1, 1), backward=np.zeros((10, 10, 2)))
    assert os.listdir(tmp_path) == []


def test_unwritable_output_raises_output_error_and_leaves_nothing(tmp_path) -> None:
    with pytest.raises(OutputError) as info:
        write_motion_exr(tmp_path / "no" / "such" / "dir" / "v.exr", forward=_flo_flow(1, 1), backward=None)
    assert "\n" not in str(info.value) and "does not exist" in str(info.value)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        write_motion_exr(blocker / "v.exr", forward=_flo_flow(1, 1), backward=None)


def test_writes_are_atomic(tmp_path, monkeypatch) -> None:
    import re

    from daflow_vfx.io._atomic import atomic_path

    target = tmp_path / "v.1001.exr"
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_motion_exr(target, forward=_flo_flow(1, 1), backward=None)
    monkeypatch.undo()
    # Written under a hidden temp name in the same folder, then renamed into place.
    [(src, dst)] = renames
    assert dst == str(target)
    assert os.path.dirname(src) == str(tmp_path)
    assert re.fullmatch(rf"\.v\.1001\.tmp-{os.getpid()}-[0-9a-f]+\.exr", os.path.basename(src))
    assert sorted(os.listdir(tmp_path)) == ["v.1001.exr"]     # no temp file left behind
    before = target.read_bytes()

    # A write that dies half-way leaves the previous file untouched and no temp file.
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("killed mid-write")
    assert sorted(os.listdir(tmp_path)) == ["v.1001.exr"]
    assert target.read_bytes() == before


def test_is_complete_exr(tmp_path, iox) -> None:
    rng = np.random.default_rng(5)
    path = tmp_path / "v.exr"
    write_motion_exr(path, forward=rng.normal(0, 5, (H, W, 2)).astype(np.float32), backward=None, half=False)
    assert is_complete_exr(path)
    assert not is_complete_exr(tmp_path / "missing.exr")
    iox.truncate(path, 0.5)
    assert not is_complete_exr(path)
    with pytest.raises(CorruptFileError, match="v.exr"):
        read_motion_exr(path)
    (tmp_path / "junk.exr").write_bytes(b"\x76\x2f\x31\x01garbage")
    assert not is_complete_exr(tmp_path / "junk.exr")
    write_image(tmp_path / "p.png", np.zeros((4, 4, 3), np.float32))
    assert not is_complete_exr(tmp_path / "p.png")


def test_read_motion_exr_without_vectors(tmp_path, texture) -> None:
    write_image(tmp_path / "beauty.exr", texture)
    with pytest.raises(InputError, match="no motion-vector channels"):
        read_motion_exr(tmp_path / "beauty.exr")
