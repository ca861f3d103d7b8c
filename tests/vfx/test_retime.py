"""Retime: timing maps against hand-computed values, scene cuts, and `daflow-vfx retime` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.errors import ConfigError, UsageError
from daflow_vfx.jobs.outputs import sidecar_path
from daflow_vfx.jobs.retime import RetimeJob, retime_frames
from daflow_vfx.vfx.retiming import detect_cut, retime
from daflow_vfx.vfx.timing import TimeCurve, curve_map, fps_map, load_curve, speed_map, speed_phase
from tests.helpers import noise_texture, translated_frames, write_sequence

H, W = 48, 64


def times(frame_map):
    return [s for _, s in frame_map]


def numbers(frame_map):
    return [f for f, _ in frame_map]


# --------------------------------------------------------------------------------------------------
# timing


@pytest.mark.parametrize(("speed", "phase"), [(0.5, 0.25), (0.25, 0.125), (1.0, 0.0), (2.0, 0.0), (1.5, 0.25),
                                              (0.4, 0.1), (1 / 3, 1 / 6), (0.1, 0.05)])
def test_speed_phase(speed, phase) -> None:
    assert speed_phase(speed) == pytest.approx(phase, abs=1e-12)


def test_half_speed_never_lands_on_source_frames() -> None:
    m = speed_map(1001, 1005, 0.5)
    assert numbers(m) == list(range(1001, 1009))
    assert times(m) == [1001.25, 1001.75, 1002.25, 1002.75, 1003.25, 1003.75, 1004.25, 1004.75]


def test_quarter_speed() -> None:
    m = speed_map(1001, 1005, 0.25)
    assert len(m) == 16  # 1001.125 + 15 * 0.25 = 1004.875; one more would pass 1005
    assert times(m)[:4] == [1001.125, 1001.375, 1001.625, 1001.875]
    assert times(m)[-1] == 1004.875
    assert {round(s % 1, 9) for s in times(m)} == {0.125, 0.375, 0.625, 0.875}  # symmetric, no pulse


def test_integer_speeds_are_source_frames() -> None:
    assert speed_map(1001, 1005, 1.0) == [(1001 + k, 1001.0 + k) for k in range(5)]
    assert speed_map(1001, 1005, 2.0) == [(1001, 1001.0), (1002, 1003.0), (1003, 1005.0)]
    assert speed_map(1001, 1006, 2.0) == [(1001, 1001.0), (1002, 1003.0), (1003, 1005.0)]  # never past 1006


def test_speed_up_with_phase() -> None:
    assert speed_map(1001, 1005, 1.5) == [(1001, 1001.25), (1002, 1002.75), (1003, 1004.25)]


def test_phase_override_and_exact_last_frame() -> None:
    m = speed_map(1001, 1005, 0.5, phase=0.0)
    assert times(m) == [1001 + k / 2 for k in range(9)] and times(m)[-1] == 1005.0
    m = speed_map(1, 2, 0.1, phase=0.0)  # 0.1 is not exact in binary: the last frame must still be there
    assert len(m) == 11 and times(m)[-1] == 2.0
    with pytest.raises(UsageError, match="`speed` must be positive"):
        speed_map(1, 5, 0.0)
    with pytest.raises(UsageError, match="`phase`"):
        speed_map(1, 5, 0.5, phase=1.0)


def test_fps_conversion() -> None:
    m = fps_map(1001, 1010, "24:60")
    assert len(m) == 23  # 1001 + 22 * 0.4 = 1009.8, 1001 + 23 * 0.4 = 1010.2 > 1010
    assert numbers(m) == list(range(1001, 1024))
    assert times(m)[:6] == [1001.0, 1001.4, 1001.8, 1002.2, 1002.6, 1003.0]
    assert times(m)[-1] == pytest.approx(1009.8, abs=1e-9)
    down = fps_map(1, 25, "25:24")  # 24 / (25/24) = 23.04 -> 24 frames
    assert len(down) == 24 and times(down)[-1] == pytest.approx(1 + 23 * 25 / 24)
    ntsc = fps_map(1, 3, "24000/1001:30000/1001")
    assert times(ntsc) == [1.0, 1.8, 2.6]


@pytest.mark.parametrize("rate", ["24", "0:24", "a:b", "24:60:1", "-24:60"])
def test_bad_rates(rate) -> None:
    with pytest.raises(UsageError):
        fps_map(1, 10, rate)


def test_linear_curve() -> None:
    curve = TimeCurve(keys=((1001, 1001), (1005, 1003)), interpolation="linear")
    assert curve_map(curve, 1001, 1010) == [(1001, 1001.0), (1002, 1001.5), (1003, 1002.0), (1004, 1002.5),
                                             (1005, 1003.0)]


def test_smooth_curve_hits_keys_and_never_overshoots() -> None:
    curve = TimeCurve(keys=((1, 1), (3, 1), (5, 5), (9, 6)), interpolation="smooth")
    m = dict(curve_map(curve, 1, 10))
    assert (m[1], m[3], m[5], m[9]) == (1.0, 1.0, 5.0, 6.0)
    assert m[2] == 1.0  # flat between equal keys: PCHIP holds, Catmull-Rom would dip below 1
    values = [curve(x) for x in np.linspace(1, 9, 161)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:], strict=False))  # monotone stays monotone
    # two keys: the smooth curve is the straight line
    assert curve_map(TimeCurve(keys=((0, 10), (4, 12))), 10, 12) == [(k, 10 + k / 2) for k in range(5)]


def test_curve_reverse_and_hold() -> None:
    curve = TimeCurve(keys=((1, 5), (3, 5), (5, 1)), interpolation="linear")
    assert times(curve_map(curve, 1, 5)) == [5.0, 5.0, 5.0, 3.0, 1.0]


def test_curve_outside_the_plate(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("interpolation: linear\nkeys:\n  1001: 1001\n  1011: 1031\n")  # 3 source frames a frame
    curve = load_curve(path)
    with pytest.raises(ConfigError, match=r"c\.yaml: output frame 1008 maps to source frame 1022, outside"):
        curve_map(curve, 1001, 1020)  # 1007 -> 1019 fits, 1008 -> 1022 does not
    assert curve_map(curve, 1001, 1031)[-1] == (1011, 1031.0)


@pytest.mark.parametrize(("text", "message"), [
    ("keys: [1, 2]", "'keys' must map"),
    ("speed: 2\nkeys: {1: 1}", "unknown key"),
    ("keys: {1: 1, 2: x}", "not a finite number"),
    ("keys: {1: 1}\ninterpolation: cubic", "interpolation 'cubic'"),
    ("keys: {1: [1", "not valid YAML"),
    ("- 1\n- 2", "a curve is a mapping"),
])
def test_bad_curve_files(tmp_path, text, message) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_curve(path)


def test_curve_file_formats(tmp_path) -> None:
    path = tmp_path / "pairs.yaml"
    path.write_text("keys:\n  - [10, 1]\n  - [12, 3]\n")
    curve = load_curve(path)
    assert curve.interpolation == "smooth" and curve.keys == ((10.0, 1.0), (12.0, 3.0))


def test_one_timing_mode_only() -> None:
    with pytest.raises(UsageError, match="not `speed` and `fps`"):
        retime_frames(RetimeJob(input="p", output="o.####.exr", speed=0.5, fps="24:60"), 1, 10)
    with pytest.raises(UsageError, match="give one timing mode"):
        retime_frames(RetimeJob(input="p", output="o.####.exr"), 1, 10)
    with pytest.raises(UsageError, match="`phase` applies to `speed` only"):
        retime_frames(RetimeJob(input="p", output="o.####.exr", fps="24:30", phase=0.5), 1, 10)


def test_sidecar_path() -> None:
    assert sidecar_path("out/sh010.####.exr", "retime") == "out/sh010.retime.json"
    assert sidecar_path("out/sh010_%04d.png", "retime") == "out/sh010.retime.json"
    assert sidecar_path("out/####.exr", "retime") == "out/retime.retime.json"
    assert sidecar_path("out/sh010.mov", "retime") == "out/sh010.retime.json"


# --------------------------------------------------------------------------------------------------
# scene cuts


def test_cut_detection() -> None:
    from daflow_vfx.engine import FlowEngine

    engine = FlowEngine("dis", device="cpu")
    shot = translated_frames(2, H, W, dx=3, dy=1, seed=4)
    other = noise_texture(H, W, seed=9)
    tinted = (other * 0.4 + 0.6 * np.array([0.1, 0.5, 0.9], np.float32)).astype(np.float32)
    for a, b, expected in ((shot[0], shot[1], False), (shot[1], other, True), (shot[1], tinted, True)):
        flows = engine.estimate_window(np.stack([a, b]))
        check = detect_cut(a, b, flows.forward[0], flows.backward[0])
        assert check.cut is expected, check
    assert detect_cut(shot[1], tinted).cut  # histogram alone catches a change of palette
    assert not detect_cut(shot[0], shot[1]).cut


# --------------------------------------------------------------------------------------------------
# the array API


def test_retime_arrays_with_given_flows(half_steps) -> None:
    frames = half_steps[::2]  # 5 frames, 4 px a frame to the right
    n = len(frames) - 1
    forward = np.zeros((n, H, W, 2), np.float32)
    forward[..., 0] = 4.0
    result = retime(frames, speed_map(0, 4, 0.5, phase=0.0), forward=forward, backward=-forward)
    assert len(result.images) == 9 and result.cuts == []
    assert [f.method for f in result.frames] == ["source", "motion"] * 4 + ["source"]
    np.testing.assert_array_equal(result.images[0], frames[0])
    for k in (1, 3, 5, 7):
        assert psnr(result.images[k][INNER], half_steps[k][INNER]) >= 40.0
    blended = retime(frames, speed_map(0, 4, 0.5, phase=0.0), method="blend", cuts=[1])
    assert blended.cuts == [1] and blended.frames[3].method == "cut-nearest"
    np.testing.assert_allclose(blended.images[1], 0.5 * (frames[0] + frames[1]), atol=1e-6)


def test_retime_arrays_compute_flows_when_not_given(half_steps) -> None:
    frames = half_steps[::2]
    result = retime(frames, [(0, 0.5), (1, 2.5)], model="dis")
    assert [f.method for f in result.frames] == ["motion", "motion"]
    assert psnr(result.images[1][INNER], half_steps[5][INNER]) >= 35.0
    with pytest.raises(UsageError, match="outside frames 0-4"):
        retime(frames, [(0, 4.5)])


# --------------------------------------------------------------------------------------------------
# the command


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def half_steps():
    """[9, H, W, 3] texture moving 2 px per step: the plate takes every other step (4 px per frame), so the
    odd steps are the exact mid-frames."""
    return translated_frames(9, H, W, dx=2, dy=0, seed=0)


@pytest.fixture(scope="module")
def plate(tmp_path_factory, half_steps) -> str:
    return write_sequence(tmp_path_factory.mktemp("plate"), half_steps[::2], name="p")


def read(path) -> np.ndarray:
    from daflow_vfx.io import open_plate

    with open_plate(path) as p:
        return p.read(p.info.frames[0])


def psnr(a, b) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean(np.square(a - b))), 1e-12)))


INNER = (slice(6, -6), slice(10, -10))


def sidecar(path) -> dict:
    return json.loads(Path(path).read_text())


def test_end_to_end_with_dis(plate, half_steps, tmp_path) -> None:
    out = tmp_path / "r.####.png"
    result = invoke("retime", plate, "-o", out, "--speed", "0.5", "--phase", "0", "--model", "dis",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("Wrote 9 frame(s) (1001-1009, speed)")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"r.{f}.png" for f in range(1001, 1010)] + [
        "r.retime.json"]
    meta = sidecar(tmp_path / "r.retime.json")
    assert [f["source"] for f in meta["frames"]] == [1001 + k / 2 for k in range(9)]
    assert [f["method"] for f in meta["frames"]] == ["source", "motion"] * 4 + ["source"]
    assert meta["frames"][1]["sources"] == [1001, 1002] and meta["cuts"] == []
    assert meta["flows"].startswith("dis ")
    for k in (1, 3):  # output 1002 is source 1001.5, the true half step
        made = read(tmp_path / f"r.{1001 + k}.png")
        blend = 0.5 * (half_steps[k - 1] + half_steps[k + 1])
        assert psnr(made[INNER], half_steps[k][INNER]) >= 30.0
        assert psnr(made[INNER], half_steps[k][INNER]) >= psnr(blend[INNER], half_steps[k][INNER]) + 6.0


def test_vectors_from_render_give_the_same_frames(plate, tmp_path) -> None:
    vectors = tmp_path / "v" / "p.####.exr"
    assert invoke("render", plate, "-o", vectors, "--model", "dis", "--float").exit_code == 0
    a = invoke("retime", plate, "-o", tmp_path / "a" / "r.####.exr", "--speed", "0.5", "--vectors", vectors,
               "--float")
    assert a.exit_code == 0, a.output
    assert "flow: vectors" in a.stdout
    b = invoke("retime", plate, "-o", tmp_path / "b" / "r.####.exr", "--speed", "0.5", "--model", "dis",
               "--float")
    assert b.exit_code == 0, b.output
    for frame in (1001, 1004, 1008):
        np.testing.assert_allclose(read(tmp_path / "a" / f"r.{frame}.exr"),
                                   read(tmp_path / "b" / f"r.{frame}.exr"), atol=1e-4)
    assert sidecar(tmp_path / "a" / "r.retime.json")["flows"] == f"vectors {vectors}"


def test_linear_exr_in_linear_out(tmp_path, half_steps) -> None:
    hdr = half_steps[::2] * 6.0  # scene-linear values well above 1
    plate = write_sequence(tmp_path / "plate", hdr, name="lin", ext="exr")
    result = invoke("retime", plate, "-o", tmp_path / "out" / "r.####.exr", "--fps", "1:2", "--method",
                    "blend", "--float")
    assert result.exit_code == 0, result.output
    made = read(tmp_path / "out" / "r.1002.exr")  # source 1001.5
    expected = 0.5 * (read(plate.replace("####", "1001")) + read(plate.replace("####", "1002")))
    assert made.max() > 3.0
    np.testing.assert_allclose(made, expected, rtol=1e-6, atol=1e-6)
    assert sidecar(tmp_path / "out" / "r.retime.json")["colorspace"] == "linear"


def test_scene_cut_uses_the_nearest_frame(tmp_path) -> None:
    first = translated_frames(3, H, W, dx=2, dy=0, seed=1)
    tint = 0.45 * np.array([0.1, 0.4, 0.9], np.float32)
    second = translated_frames(3, H, W, dx=-2, dy=1, seed=7) * 0.5 + tint
    plate = write_sequence(tmp_path / "plate", np.concatenate([first, second]).astype(np.float32), name="cut")
    out = tmp_path / "out" / "r.####.png"
    result = invoke("retime", plate, "-o", out, "--speed", "0.5", "--model", "dis")
    assert result.exit_code == 0, result.output
    meta = sidecar(tmp_path / "out" / "r.retime.json")
    assert meta["cuts"] == [[1003, 1004]]
    across = [f for f in meta["frames"] if 1003 < f["source"] < 1004]
    assert [(f["source"], f["method"], f["cut"], f["sources"]) for f in across] == [
        (1003.25, "cut-nearest", True, [1003]), (1003.75, "cut-nearest", True, [1004])]
    np.testing.assert_array_equal(read(str(out).replace("####", str(across[0]["frame"]))),
                                  read(plate.replace("####", "1003")))
    assert all(not f["cut"] for f in meta["frames"] if f not in across)
    # --cuts none interpolates across it anyway (the user's call), a list names cuts by hand
    forced = invoke("retime", plate, "-o", tmp_path / "f" / "r.####.png", "--speed", "0.5", "--method",
                    "blend", "--cuts", "1002")
    assert forced.exit_code == 0, forced.output
    assert sidecar(tmp_path / "f" / "r.retime.json")["cuts"] == [[1001, 1002]]


def test_curve_command_numbers_outputs_as_keyed(plate, tmp_path) -> None:
    curve = tmp_path / "curve.yaml"
    curve.write_text("interpolation: linear\nkeys:\n  2001: 1005\n  2004: 1002\n")  # reverse playback
    result = invoke("retime", plate, "-o", tmp_path / "o" / "r.####.png", "--curve", curve, "--method",
                    "nearest")
    assert result.exit_code == 0, result.output
    meta = sidecar(tmp_path / "o" / "r.retime.json")
    assert [(f["frame"], f["source"]) for f in meta["frames"]] == [
        (2001, 1005.0), (2002, 1004.0), (2003, 1003.0), (2004, 1002.0)]
    assert meta["mode"] == "curve"


def test_shutter_blurs_along_the_motion(plate, tmp_path) -> None:
    sharp = invoke("retime", plate, "-o", tmp_path / "s" / "r.####.exr", "--speed", "2", "--model", "dis")
    blurred = invoke("retime", plate, "-o", tmp_path / "b" / "r.####.exr", "--speed", "2", "--model", "dis",
                     "--shutter", "0.5", "--shutter-samples", "4")
    assert sharp.exit_code == 0 and blurred.exit_code == 0, blurred.output
    meta = sidecar(tmp_path / "b" / "r.retime.json")
    assert meta["frames"][1]["samples"] == 4 and meta["frames"][1]["method"] == "motion"
    a, b = read(tmp_path / "s" / "r.1002.exr"), read(tmp_path / "b" / "r.1002.exr")

    def dx_energy(img):  # horizontal detail: the motion is horizontal, so the blur removes it
        return float(np.mean(np.abs(np.diff(img[INNER], axis=1))))

    assert dx_energy(b) < 0.8 * dx_energy(a)
    assert abs(float(b[INNER].mean()) - float(a[INNER].mean())) < 0.01


def test_video_output(plate, tmp_path) -> None:
    from daflow_vfx.io import open_plate

    result = invoke("retime", plate, "-o", tmp_path / "r.mp4", "--fps", "24:48", "--method", "blend")
    assert result.exit_code == 0, result.output
    with open_plate(tmp_path / "r.mp4") as video:
        assert len(video.info.frames) == 9 and video.info.fps == pytest.approx(48.0)
    assert (tmp_path / "r.retime.json").is_file()


def test_frames_chunk(plate, tmp_path) -> None:
    result = invoke("retime", plate, "-o", tmp_path / "r.####.png", "--speed", "0.5", "--method", "blend",
                    "--frames", "1003-1004")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("r.*.png")) == ["r.1003.png", "r.1004.png"]
    meta = sidecar(tmp_path / "r.retime.json")
    assert [f["frame"] for f in meta["frames"]] == [1003, 1004] and "note" in meta


# --------------------------------------------------------------------------------------------------
# bad input: one clean line, the right exit code, nothing written


def assert_clean_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in last, last


def test_bad_timing_options(plate, tmp_path) -> None:
    out = tmp_path / "o" / "r.####.png"
    assert_clean_error(invoke("retime", plate, "-o", out, "--speed", "0.5", "--fps", "24:60"), 2,
                       "not --speed and --fps")
    assert_clean_error(invoke("retime", plate, "-o", out), 2, "give one timing mode")
    assert_clean_error(invoke("retime", plate, "-o", out, "--fps", "24"), 2, "SOURCE:TARGET")
    assert_clean_error(invoke("retime", plate, "-o", out, "--speed", "-1"), 2, "--speed must be positive")
    assert_clean_error(invoke("retime", plate, "-o", tmp_path / "o.png", "--speed", "0.5"), 2,
                       "no frame token")
    assert_clean_error(invoke("retime", plate, "-o", tmp_path / "o.####.gif", "--speed", "0.5"), 2,
                       "unsupported extension")
    assert_clean_error(invoke("retime", plate, "-o", out, "--speed", "0.5", "--frames", "1001-1030"), 2,
                       "not in the retime's output range")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_curve_out_of_range(plate, tmp_path) -> None:
    curve = tmp_path / "c.yaml"
    curve.write_text("keys:\n  1: 1001\n  10: 1012\n")
    assert_clean_error(invoke("retime", plate, "-o", tmp_path / "o" / "r.####.png", "--curve", curve), 2,
                       "c.yaml", "outside the plate's frames 1001-1005")
    assert not list(tmp_path.glob("o/*"))
    assert_clean_error(invoke("retime", plate, "-o", tmp_path / "o" / "r.####.png", "--curve",
                              tmp_path / "none.yaml"), 1, "no such curve file")


def test_missing_and_mismatched_vectors(plate, tmp_path) -> None:
    vectors = tmp_path / "v" / "p.####.exr"
    assert invoke("render", plate, "-o", vectors, "--model", "dis", "--frames", "1001-1003").exit_code == 0
    out = tmp_path / "o" / "r.####.png"
    result = invoke("retime", plate, "-o", out, "--speed", "0.5", "--vectors", vectors)
    assert_clean_error(result, 1, "vectors for frames 1004-1005 are missing")
    assert not list(tmp_path.glob("o/r.*"))
    small = write_sequence(tmp_path / "small", translated_frames(5, 32, 40, dx=1, dy=0), name="p")
    other = tmp_path / "w" / "p.####.exr"
    assert invoke("render", small, "-o", other, "--model", "dis").exit_code == 0
    result = invoke("retime", plate, "-o", out, "--speed", "0.5", "--vectors", other)
    assert_clean_error(result, 1, "vectors are 40x32 but the plate is 64x48")
    assert not list(tmp_path.glob("o/r.*"))


def test_missing_plate_frames(tmp_path, half_steps) -> None:
    plate = write_sequence(tmp_path / "plate", half_steps[:4], name="gap")
    (tmp_path / "plate" / "gap.1002.png").unlink()
    assert_clean_error(invoke("retime", plate, "-o", tmp_path / "o" / "r.####.png", "--speed", "0.5"), 1,
                       "1002")
    assert_clean_error(invoke("retime", tmp_path / "nothing.####.png", "-o", tmp_path / "o" / "r.####.png",
                              "--speed", "0.5"), 1)
    assert not list(tmp_path.glob("o/r.*"))


def test_speed_map_count_formula_matches_brute_force() -> None:
    for speed in (0.2, 0.3, 0.75, 1.25, 3.0):
        m = speed_map(10, 30, speed)
        phase = speed_phase(speed)
        expected = [10 + phase + k * speed for k in range(200) if 10 + phase + k * speed <= 30 + 1e-9]
        assert times(m) == pytest.approx(expected) and all(s <= 30 for s in times(m))
        assert not math.isclose(times(m)[-1] + speed, 30.0) or times(m)[-1] + speed > 30


def test_contact_sheet(tmp_path) -> None:
    from daflow_vfx.vfx.contact import contact_sheet

    a = np.full((10, 20, 3), 0.5, np.float32)
    grey = np.zeros((6, 8), np.float32)
    sheet = contact_sheet([[a, grey], [a]], [["before", None], ["after"]], tmp_path / "sheet.png", gap=2)
    assert sheet.shape == (2 + 10 + 2 + 10 + 2, 2 + 20 + 2 + 8 + 2, 3)  # cells sized by column and row
    assert (sheet[0] == sheet[0, 0]).all()  # the gap is background
    label = sheet[2:8, 2:22]
    assert label.min() < 0.25 and label.max() > 0.6  # a dark box with light text over the grey cell
    assert read(tmp_path / "sheet.png").shape == sheet.shape
    with pytest.raises(ValueError, match="labels"):
        contact_sheet([[a]], [["x"], ["y"]])
