"""`daflow-vfx propagate` end to end: paint, comp and STMaps on disk; bad input refused with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from tests.cli.test_bad_input import assert_clean_failure, outputs
from tests.helpers import read_exr, translated_frames, write_sequence

H, W = 32, 48


def _paint(path: Path, *, size: tuple[int, int] = (H, W), alpha: bool = True) -> str:
    from daflow_vfx.io.images import write_image

    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    a = np.clip(6.5 - np.hypot(xs - 20, ys - 15), 0, 1)
    rgba = np.dstack([0.8 * a, 0.2 * a, 0.1 * a, a])  # premultiplied
    write_image(path, rgba if alpha else rgba[..., :3], half=False)
    return str(path)


@pytest.fixture
def plate(tmp_path: Path) -> str:
    return write_sequence(tmp_path / "plate", translated_frames(4, H, W, dx=2, dy=0))  # 1001-1004


def run(*args: str):
    return CliRunner().invoke(main, ["propagate", *args, "--model", "dis", "--device", "cpu"])


def test_paint_comp_and_stmaps(tmp_path: Path, plate: str) -> None:
    paint = _paint(tmp_path / "paint.exr")
    out = tmp_path / "out"
    result = run(plate, "--paint", paint, "--at", "1002", "-o", str(out / "p.####.exr"),
                 "--stmap", str(out / "st.####.exr"))
    assert result.exit_code == 0, result.output
    assert outputs(out) == sorted([f"p.{f}.exr" for f in range(1001, 1005)] +
                                  [f"st.{f}.exr" for f in range(1001, 1005)])
    channels, _ = read_exr(out / "p.1004.exr")
    assert set(channels) == {"R", "G", "B", "A"}
    ys, xs = np.mgrid[0:H, 0:W]
    a = channels["A"]
    # two frames after the painted one, the texture (and the paint) moved 4 px right
    assert abs((xs * a).sum() / a.sum() - 24.0) < 0.5 and abs((ys * a).sum() / a.sum() - 15.0) < 0.5
    st, attrs = read_exr(out / "st.1002.exr")  # the reference frame: the identity, Nuke's way
    assert np.allclose(st["R"], (xs + 0.5) / W, atol=1e-6)
    assert np.allclose(st["G"], 1 - (ys + 0.5) / H, atol=1e-6)
    assert "s=(x+0.5)/W" in attrs.get("daflow/stmap", "")

    comp = tmp_path / "comp"
    result = run(plate, "--paint", paint, "--at", "1002", "-o", str(comp / "c.####.png"), "--comp",
                 "--frames", "1003")
    assert result.exit_code == 0, result.output
    assert outputs(comp) == ["c.1003.png"]


@pytest.mark.parametrize("case", ["wrong size", "outside", "no alpha", "missing paint", "negative steady"])
def test_bad_input_gives_one_error_line_and_writes_nothing(tmp_path: Path, plate: str, case: str) -> None:
    if case == "wrong size":
        paint = _paint(tmp_path / "small.png", size=(16, 24))
    elif case == "no alpha":
        paint = _paint(tmp_path / "rgb.png", alpha=False)
    elif case == "missing paint":
        paint = str(tmp_path / "nothing.png")
    else:
        paint = _paint(tmp_path / "p.png")
    at = "999" if case == "outside" else "1001"
    out = tmp_path / "out"
    extra = ["--steady", "-1"] if case == "negative steady" else []
    result = run(plate, "--paint", paint, "--at", at, "-o", str(out / "p.####.exr"),
                 "--stmap", str(out / "st.####.exr"), *extra)
    expected = {"wrong size": ["--paint", "16"], "outside": ["--at 999", "1001-1004"],
                "no alpha": ["--paint", "alpha"], "missing paint": ["nothing.png"],
                "negative steady": ["--steady"]}[case]
    assert_clean_failure(result, contains=expected, exit_code=1 if case == "missing paint" else 2)
    assert outputs(out) == []


def test_a_video_needs_start_frame(tmp_path: Path) -> None:
    from daflow_vfx.io.video import write_video

    video = tmp_path / "plate.mp4"
    write_video(video, list(translated_frames(3, H, W, dx=1, dy=0)), fps=24)
    out = tmp_path / "out"
    paint = _paint(tmp_path / "p.png")
    result = run(str(video), "--paint", paint, "--at", "1", "-o", str(out / "p.####.exr"))
    assert_clean_failure(result, contains=["--at", "--start-frame"], exit_code=2)
    assert outputs(out) == []
    result = run(str(video), "--paint", paint, "--at", "1", "--start-frame", "1",
                 "-o", str(out / "p.####.exr"))
    assert result.exit_code == 0, result.output
    assert outputs(out) == ["p.0001.exr", "p.0002.exr", "p.0003.exr"]
