"""A LogC3 ProRes plate and an ACEScg EXR plate through render, retime and stabilize by OCIO name, with
delivery codecs and an output colour space; bad names and codecs as one `Error:` line."""

from __future__ import annotations

import json

import av
import numpy as np
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.color import convert_colorspace, to_display
from daflow_vfx.io import write_image, write_video
from tests.helpers import read_exr, translated_frames

LOGC3 = "ARRI LogC3 (EI800)"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _logc_prores(tmp_path) -> str:
    frames = translated_frames(4, 48, 64, dx=2, dy=0)   # [4, 48, 64, 3] sRGB
    path = tmp_path / "A001C003_logc.mov"
    write_video(path, [convert_colorspace(f, "srgb", LOGC3) for f in frames], fps=24, codec="prores_ks",
                pix_fmt="yuv422p10le", options={"profile": "3"}, color_trc=2)
    return str(path)


def _acescg_exrs(tmp_path) -> str:
    frames = translated_frames(4, 48, 64, dx=2, dy=0)
    tmp_path.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        write_image(tmp_path / f"sh010.{1001 + k:04d}.exr", convert_colorspace(frame, "srgb", "ACEScg"))
    return str(tmp_path / "sh010.####.exr")


def _video_stream(path) -> tuple[str, str, int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        return stream.codec_context.name, frame.format.name, int(frame.color_trc), stream.frames


def test_logc3_prores_plate_renders_retimes_and_stabilizes(tmp_path) -> None:
    plate = _logc_prores(tmp_path)
    out = tmp_path / "out"
    result = invoke("render", plate, "-o", str(out / "vec.####.exr"), "--model", "dis",
                    "--input-colorspace", LOGC3)
    assert result.exit_code == 0, result.output
    channels, attrs = read_exr(out / "vec.0002.exr")
    assert attrs["daflow/inputColorspace"] == LOGC3
    assert abs(float(np.median(channels["forward.u"][8:-8, 8:-16])) - 2.0) < 0.3   # the plate's motion
    result = invoke("retime", plate, "-o", str(out / "slow.mov"), "--speed", "0.5", "--model", "dis",
                    "--input-colorspace", LOGC3, "--codec", "prores",
                    "--output-colorspace", "Rec.1886 Rec.709 - Display")
    assert result.exit_code == 0, result.output
    codec, pix_fmt, trc, frames = _video_stream(out / "slow.mov")
    sidecar = json.loads((out / "slow.retime.json").read_text())
    assert (codec, pix_fmt, trc) == ("prores", "yuv422p10le", 1) and frames == len(sidecar["frames"]) > 4
    assert sidecar["colorspace"] == LOGC3
    result = invoke("stabilize", plate, "-o", str(out / "stab.mov"), "--model", "dis",
                    "--input-colorspace", LOGC3, "--codec", "prores4444", "--output-colorspace", LOGC3)
    assert result.exit_code == 0, result.output
    codec, pix_fmt, trc, frames = _video_stream(out / "stab.mov")
    assert codec == "prores" and pix_fmt.startswith("yuva444") and trc == 2 and frames == 4


def test_acescg_exr_plate_renders_retimes_and_stabilizes(tmp_path) -> None:
    plate = _acescg_exrs(tmp_path / "plate")
    out = tmp_path / "out"
    for args in (("render", plate, "-o", str(out / "vec.####.exr")),
                 ("retime", plate, "-o", str(out / "slow.####.exr"), "--speed", "0.5"),
                 ("stabilize", plate, "-o", str(out / "stab.####.exr"))):
        result = invoke(*args, "--model", "dis", "--input-colorspace", "ACEScg")
        assert result.exit_code == 0, result.output
    _, attrs = read_exr(out / "vec.1002.exr")
    assert attrs["daflow/inputColorspace"] == "ACEScg"
    # EXR in, EXR out: the plate's ACEScg values, not display values
    source, _ = read_exr(tmp_path / "plate" / "sh010.1001.exr")
    retimed, _ = read_exr(out / "slow.1001.exr")
    display = to_display(np.stack([source[c] for c in "RGB"], -1), "ACEScg")   # [H, W, 3]
    assert abs(float(retimed["G"].mean()) - float(source["G"].mean())) < 0.01
    assert abs(float(display[..., 1].mean()) - float(source["G"].mean())) > 0.1


def test_bad_names_and_codecs_are_one_error_line(tmp_path) -> None:
    plate = _acescg_exrs(tmp_path / "plate")
    out = tmp_path / "out"
    result = invoke("retime", plate, "-o", str(out / "slow.mov"), "--speed", "0.5", "--model", "dis",
                    "--input-colorspace", "acescgg")
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: unknown --input-colorspace 'acescgg'")
    assert "'ACEScg'" in lines[0]
    result = invoke("retime", plate, "-o", str(out / "slow.mp4"), "--speed", "0.5", "--model", "dis",
                    "--codec", "prores")
    assert result.exit_code == 2 and "--codec prores cannot be written to .mp4" in result.output
    result = invoke("degrade", plate, "-o", str(out / "bad.mov"), "--codec", "dnxhr")
    assert result.exit_code == 2 and "256x120" in result.output
    result = invoke("render", plate, "-o", str(out / "v.####.exr"), "--ocio-config",
                    str(tmp_path / "no.ocio"))
    assert result.exit_code == 2 and "--ocio-config" in result.output
    assert not out.exists()   # nothing half-written


def test_degrade_writes_a_delivery_video(tmp_path) -> None:
    plate = _acescg_exrs(tmp_path / "plate")
    result = invoke("degrade", plate, "-o", str(tmp_path / "bad.mov"), "--preset", "mild", "--codec",
                    "prores", "--input-colorspace", "ACEScg", "--no-motion-blur")
    assert result.exit_code == 0, result.output
    codec, pix_fmt, trc, frames = _video_stream(tmp_path / "bad.mov")
    assert (codec, pix_fmt, trc, frames) == ("prores", "yuv422p10le", 13, 4)
