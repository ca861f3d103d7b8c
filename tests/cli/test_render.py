"""`daflow-vfx render` end to end, in-process: sign conventions, headers, chunks, resume, presets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from tests.helpers import read_exr, translated_frames, write_sequence

DX, DY = 3, 2  # per frame, +y down in the image: the texture moves right and down
INNER = (slice(16, -16), slice(16, -16))  # away from the borders, where content enters and leaves


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("plate")
    return write_sequence(folder, translated_frames(5, 80, 112, dx=DX, dy=DY), name="shift")


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result


def med(channel: np.ndarray) -> float:
    return float(np.median(channel[INNER]))


def test_sign_conventions_nuke_layout(plate, tmp_path) -> None:
    out = str(tmp_path / "v.####.exr")
    result = invoke("render", plate, "-o", out, "--model", "dis", "--device", "cpu")
    assert result.exit_code == 0, result.output
    ch, attrs = read_exr(tmp_path / "v.1003.exr")
    assert {"forward.u", "forward.v", "backward.u", "backward.v"} <= set(ch)
    assert med(ch["forward.u"]) == pytest.approx(DX, abs=0.15)
    assert med(ch["forward.v"]) == pytest.approx(-DY, abs=0.15)  # Nuke: +v up
    assert med(ch["backward.u"]) == pytest.approx(-DX, abs=0.15)
    assert med(ch["backward.v"]) == pytest.approx(DY, abs=0.15)
    assert attrs["daflow/estimator"] == "dis"
    assert attrs["daflow/estimatorVersion"].startswith("opencv-")
    assert attrs["daflow/sourceFrames"] == "1002,1003,1004"
    assert attrs["daflow/frame"] == "1003"
    assert "weightsSha256" not in " ".join(attrs)  # classical: no weights to record
    assert attrs["compression"] == "zip"


def test_sign_conventions_blender_layout(plate, tmp_path) -> None:
    out = str(tmp_path / "v.####.exr")
    result = invoke("render", plate, "-o", out, "--layout", "blender", "--model", "dis", "--frames", "1003")
    assert result.exit_code == 0, result.output
    ch, _ = read_exr(tmp_path / "v.1003.exr")
    assert not any(name.startswith("forward.") for name in ch)
    # Cycles: X/Y = previous position minus current, Z/W = current minus next, y up
    assert med(ch["Vector.Z"]) == pytest.approx(-DX, abs=0.15)
    assert med(ch["Vector.W"]) == pytest.approx(DY, abs=0.15)
    assert med(ch["Vector.X"]) == pytest.approx(-DX, abs=0.15)
    assert med(ch["Vector.Y"]) == pytest.approx(DY, abs=0.15)  # previous y (up) minus current: +DY
    assert sorted(os.listdir(tmp_path)) == ["v.1003.exr"]


def test_both_layouts_and_edge_frames(plate, tmp_path) -> None:
    out = str(tmp_path / "v.####.exr")
    result = invoke("render", plate, "-o", out, "--layout", "both", "--frames", "1001,1005")
    assert result.exit_code == 0, result.output
    first, first_attrs = read_exr(tmp_path / "v.1001.exr")
    last, last_attrs = read_exr(tmp_path / "v.1005.exr")
    assert {"forward.u", "Vector.Z"} <= set(first)
    # no previous frame: zeros plus a header that says so, never garbage
    assert first_attrs["daflow/backwardValid"] in ("0", 0)
    assert first_attrs["daflow/forwardValid"] in ("1", 1)
    assert not first["backward.u"].any() and not first["Vector.X"].any()
    assert med(first["forward.u"]) == pytest.approx(DX, abs=0.15)
    assert first_attrs["daflow/sourceFrames"] == "none,1001,1002"
    assert last_attrs["daflow/forwardValid"] in ("0", 0)
    assert not last["forward.u"].any() and not last["Vector.Z"].any()
    assert last_attrs["daflow/sourceFrames"] == "1004,1005,none"


def test_chunked_render_equals_unchunked(plate, tmp_path) -> None:
    whole, chunks = tmp_path / "whole", tmp_path / "chunks"
    assert invoke("render", plate, "-o", str(whole / "v.####.exr"), "--float").exit_code == 0
    for spec in ("1001-1002", "1003", "1004-1005"):
        result = invoke("render", plate, "-o", str(chunks / "v.####.exr"), "--float", "--frames", spec)
        assert result.exit_code == 0, result.output
    for frame in range(1001, 1006):
        a, _ = read_exr(whole / f"v.{frame}.exr")
        b, _ = read_exr(chunks / f"v.{frame}.exr")
        for name in a:
            np.testing.assert_allclose(b[name], a[name], atol=1e-5, err_msg=f"{frame} {name}")


def test_progress_lines_and_summary(plate, tmp_path) -> None:
    result = invoke("render", plate, "-o", str(tmp_path / "v.####.exr"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    progress = [line for line in lines if line.startswith("Progress: ")]
    assert progress[0] == "Progress: 0%" and progress[-1] == "Progress: 100%"
    values = [int(line.split()[1].rstrip("%")) for line in progress]
    assert values == sorted(set(values))  # whole numbers, increasing, each once
    assert lines[-1].startswith("Wrote 5 EXR(s) (frames 1001-1005)")


def test_float_and_compression(plate, tmp_path) -> None:
    import OpenImageIO as oiio

    result = invoke("render", plate, "-o", str(tmp_path / "v.####.exr"), "--float", "--compression", "piz",
                    "--frames", "1002")
    assert result.exit_code == 0, result.output
    spec = oiio.ImageInput.open(str(tmp_path / "v.1002.exr")).spec()
    assert spec.format == oiio.TypeDesc("float") and spec.getattribute("compression") == "piz"
    half = invoke("render", plate, "-o", str(tmp_path / "h.####.exr"), "--frames", "1002")
    assert half.exit_code == 0
    assert oiio.ImageInput.open(str(tmp_path / "h.1002.exr")).spec().format == oiio.TypeDesc("half")
    bad = invoke("render", plate, "-o", str(tmp_path / "b.####.exr"), "--compression", "dwaa")
    assert bad.exit_code == 2 and not list(tmp_path.glob("b.*"))


def test_skip_existing_redoes_truncated_outputs(plate, tmp_path) -> None:
    out = str(tmp_path / "v.####.exr")
    assert invoke("render", plate, "-o", out).exit_code == 0
    good = tmp_path / "v.1002.exr"
    bad = tmp_path / "v.1004.exr"
    before = good.stat().st_mtime_ns
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # a task killed mid-write (pre-atomic tools)
    result = invoke("render", plate, "-o", out, "--skip-existing")
    assert result.exit_code == 0, result.output
    assert "Wrote 1 EXR(s) (frames 1004)" in result.output and "skipped 4 complete" in result.output
    assert good.stat().st_mtime_ns == before
    ch, _ = read_exr(bad)
    assert med(ch["forward.u"]) == pytest.approx(DX, abs=0.15)
    again = invoke("render", plate, "-o", out, "--skip-existing")
    assert again.exit_code == 0 and "Wrote 0 EXR(s)" in again.output and "Progress: 100%" in again.output


def test_no_temp_files_left(plate, tmp_path) -> None:
    assert invoke("render", plate, "-o", str(tmp_path / "v.####.exr")).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"v.{f}.exr" for f in range(1001, 1006)]


def test_config_preset_and_command_line_override(plate, tmp_path) -> None:
    preset = tmp_path / "preset.yaml"
    preset.write_text("layout: blender\nframes: 1002-1003\nskip-existing: true\nfloat: true\n")
    result = invoke("render", plate, "-o", str(tmp_path / "a.####.exr"), "--config", str(preset))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("a.*")) == ["a.1002.exr", "a.1003.exr"]
    assert "Vector.Z" in read_exr(tmp_path / "a.1002.exr")[0]
    # the command line wins over the preset, wherever --config sits
    result = invoke("render", plate, "--layout", "nuke", "--config", str(preset),
                    "-o", str(tmp_path / "b.####.exr"), "--frames", "1004")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("b.*")) == ["b.1004.exr"]
    assert "forward.u" in read_exr(tmp_path / "b.1004.exr")[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("layuot: blender\n", "unknown key(s) layuot"),
        ("- just\n- a list\n", "must be a mapping"),
        ("layout: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_is_a_usage_error(plate, tmp_path, text, message) -> None:
    preset = tmp_path / "preset.yaml"
    preset.write_text(text)
    result = invoke("render", plate, "-o", str(tmp_path / "v.####.exr"), "--config", str(preset))
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("v.*"))


def test_video_plate_with_start_frame(tmp_path) -> None:
    from daflow_vfx.demo import encode_h264

    frames = translated_frames(4, 64, 96, dx=2, dy=0)
    video = tmp_path / "clip.mp4"
    encode_h264(frames, str(video), crf=12)
    result = invoke("render", str(video), "-o", str(tmp_path / "v.####.exr"), "--start-frame", "101")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("v.*")) == [f"v.{f:04d}.exr" for f in range(101, 105)]
    ch, attrs = read_exr(tmp_path / "v.0102.exr")
    assert med(ch["forward.u"]) == pytest.approx(2, abs=0.3)
    assert attrs["daflow/sourceFrames"] == "101,102,103"


def test_exr_plate_with_layer(tmp_path) -> None:
    from daflow_vfx.io.images import write_oiio_image

    frames = translated_frames(3, 48, 64, dx=1, dy=1)
    for k, image in enumerate(frames):
        # beauty is flat; the motion is only in the "diffuse" layer
        pixels = np.concatenate([np.full_like(image, 0.5), image], axis=-1)
        write_oiio_image(tmp_path / f"p.{1 + k:04d}.exr", pixels, pixel_type="half",
                         channel_names=["R", "G", "B", "diffuse.R", "diffuse.G", "diffuse.B"])
    out = tmp_path / "out" / "v.####.exr"
    result = invoke("render", str(tmp_path / "p.####.exr"), "-o", str(out), "--layer", "diffuse",
                    "--model", "dis")  # exact classical flow: this checks the layer, not a model
    assert result.exit_code == 0, result.output
    ch, attrs = read_exr(Path(str(out).replace("####", "0002")))
    assert med(ch["forward.u"]) == pytest.approx(1, abs=0.2)
    assert attrs["daflow/inputColorspace"] == "linear"


def test_bad_pixels_are_sanitised_and_counted(tmp_path) -> None:
    from daflow_vfx.io.images import write_image

    frames = translated_frames(3, 32, 48, dx=1, dy=0)
    frames[1, 0, :5] = np.nan  # 5 NaN pixels
    frames[1, 1, :2] = np.inf  # 2 Inf pixels
    frames[2, 2, :3] = -1.0  # 3 negative pixels
    for k, image in enumerate(frames):
        write_image(tmp_path / f"p.{1 + k:04d}.exr", image, half=False)
    result = invoke("render", str(tmp_path / "p.####.exr"), "-o", str(tmp_path / "out" / "v.####.exr"))
    assert result.exit_code == 0, result.output
    assert "sanitised 10 bad pixel(s)" in result.stdout
    assert "sanitised 10 NaN/Inf/negative pixel(s)" in result.stderr
    ch, _ = read_exr(tmp_path / "out" / "v.0002.exr")
    assert all(np.isfinite(c).all() for c in ch.values())
