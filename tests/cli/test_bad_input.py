"""Bad input gives one clean line, a non-zero exit, no traceback and no output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from tests.helpers import translated_frames, write_sequence


def render(*args: str):
    return CliRunner().invoke(main, ["render", *args])


def assert_clean_failure(result, *, contains: str | list[str], exit_code: int = 1) -> None:
    output = result.output
    assert result.exit_code == exit_code, output
    assert "Traceback" not in output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("Progress: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    for text in [contains] if isinstance(contains, str) else contains:
        assert text in lines[0], lines[0]


def outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def frames() -> np.ndarray:
    return translated_frames(5, 32, 48, dx=1, dy=0)


def test_missing_pattern(tmp_path) -> None:
    out = tmp_path / "out"
    result = render(str(tmp_path / "nothing.####.exr"), "-o", str(out / "v.####.exr"))
    assert_clean_failure(result, contains="nothing.####.exr")
    assert outputs(out) == []


def test_missing_file(tmp_path) -> None:
    out = tmp_path / "out"
    result = render(str(tmp_path / "nothing.mov"), "-o", str(out / "v.####.exr"))
    assert_clean_failure(result, contains="nothing.mov")
    assert outputs(out) == []


def test_gap_names_missing_frames_and_allow_gaps_holds(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames)
    (tmp_path / "plate" / "plate.1003.png").unlink()
    out = tmp_path / "out"
    result = render(plate, "-o", str(out / "v.####.exr"))
    assert_clean_failure(result, contains=["1003", "--allow-gaps"])
    assert outputs(out) == []

    held = render(plate, "-o", str(out / "v.####.exr"), "--allow-gaps")
    assert held.exit_code == 0, held.output
    assert outputs(out) == [f"v.{f}.exr" for f in range(1001, 1006)]


def test_corrupt_exr_header(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames, ext="exr")
    bad = tmp_path / "plate" / "plate.1004.exr"
    bad.write_bytes(b"this is not an EXR file at all" * 4)
    out = tmp_path / "out"
    result = render(plate, "-o", str(out / "v.####.exr"))
    assert_clean_failure(result, contains="plate.1004.exr")
    assert outputs(out) == []  # caught before any frame is computed


def test_truncated_exr(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames, ext="exr")
    bad = tmp_path / "plate" / "plate.1002.exr"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size * 2 // 3])  # header intact, pixels cut off
    out = tmp_path / "out"
    result = render(plate, "-o", str(out / "v.####.exr"))
    assert_clean_failure(result, contains="plate.1002.exr")
    # every output needs 1002 or comes after it: nothing is written, and no temp file is left
    assert outputs(out) == []


def test_truncated_exr_mid_chunk_leaves_only_complete_frames(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames, ext="exr")
    bad = tmp_path / "plate" / "plate.1004.exr"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size * 2 // 3])
    out = tmp_path / "out"
    result = render(plate, "-o", str(out / "v.####.exr"))
    assert_clean_failure(result, contains="plate.1004.exr")
    # frames whose flows never touch 1004 may be complete; nothing partial, nothing that needed 1004
    assert set(outputs(out)) <= {"v.1001.exr", "v.1002.exr"}


def test_truncated_video(tmp_path) -> None:
    from daflow_vfx.demo import encode_h264

    video = tmp_path / "clip.mp4"
    encode_h264(translated_frames(12, 64, 64, dx=1, dy=0), str(video))
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    out = tmp_path / "out"
    result = render(str(video), "-o", str(out / "v.####.exr"))
    assert_clean_failure(result, contains="clip.mp4")
    assert outputs(out) == []


def test_frame_size_change(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames)
    from daflow_vfx.io.images import write_image

    write_image(tmp_path / "plate" / "plate.1004.png", np.zeros((40, 48, 3), np.float32))
    out = tmp_path / "out"
    result = render(plate, "-o", str(out / "v.####.exr"))
    assert_clean_failure(result, contains=["1004", "48x40"])
    assert outputs(out) == []  # headers are checked before any frame is computed


def test_one_frame_plate(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames[:1])
    out = tmp_path / "out"
    result = render(plate, "-o", str(out / "v.####.exr"))
    assert_clean_failure(result, contains=["one frame", "two"])
    assert outputs(out) == []
    single = render(str(tmp_path / "plate" / "plate.1001.png"), "-o", str(out / "v.####.exr"))
    assert_clean_failure(single, contains="one frame")


def test_unwritable_output_folder(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames)
    blocker = tmp_path / "out_is_a_file"
    blocker.write_text("a file where the output folder should be")  # blocks writes even for root
    result = render(plate, "-o", str(blocker / "v.####.exr"))
    assert_clean_failure(result, contains="out_is_a_file")
    assert blocker.read_text().startswith("a file")
    assert outputs(tmp_path / "plate") == [f"plate.{f}.png" for f in range(1001, 1006)]


def test_frames_outside_plate(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames)
    out = tmp_path / "out"
    result = render(plate, "-o", str(out / "v.####.exr"), "--frames", "1004-1010")
    assert_clean_failure(result, contains=["1006-1010", "outside"])
    assert outputs(out) == []


@pytest.mark.parametrize(
    ("args", "contains"),
    [
        (["--frames", "1-x"], "frame spec"),
        (["--layout", "houdini"], "--layout"),
        (["--tile", "4"], "--tile"),
    ],
)
def test_usage_errors_exit_2(tmp_path, frames, args, contains) -> None:
    plate = write_sequence(tmp_path / "plate", frames)
    out = tmp_path / "out"
    result = render(plate, "-o", str(out / "v.####.exr"), *args)
    assert result.exit_code == 2, result.output
    assert contains in result.output and "Traceback" not in result.output
    assert outputs(out) == []


def test_output_without_frame_token(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames)
    result = render(plate, "-o", str(tmp_path / "vectors.exr"))
    assert_clean_failure(result, contains="frame token", exit_code=2)


def test_unknown_model_and_device(tmp_path, frames) -> None:
    plate = write_sequence(tmp_path / "plate", frames)
    out = tmp_path / "out"
    # names that exist nowhere are usage errors (exit 2), like every other bad option value
    assert_clean_failure(render(plate, "-o", str(out / "v.####.exr"), "--model", "raft"), contains="raft",
                         exit_code=2)
    assert_clean_failure(render(plate, "-o", str(out / "v.####.exr"), "--device", "tpu"), contains="tpu",
                         exit_code=2)
    assert outputs(out) == []
