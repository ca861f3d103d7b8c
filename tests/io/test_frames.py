"""Frame specs (Deadline syntax) and sequence patterns."""

from __future__ import annotations

import os

import pytest

from daflow_vfx.errors import FrameSpecError, UsageError
from daflow_vfx.frames import SequencePattern, format_frame_spec, parse_frame_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1001-1005", [1001, 1002, 1003, 1004, 1005]),
        ("1-20x5", [1, 6, 11, 16]),
        ("1-10step3", [1, 4, 7, 10]),
        ("1-10by4", [1, 5, 9]),
        ("1-7:3", [1, 4, 7]),
        ("1,5,10-12", [1, 5, 10, 11, 12]),
        ("7", [7]),
        ("-5--1", [-5, -4, -3, -2, -1]),
        ("-2-2", [-2, -1, 0, 1, 2]),
        ("3,1,2,2,1-3", [1, 2, 3]),
        (" 1-3 , 8 ", [1, 2, 3, 8]),
        ("1 2 3", [1, 2, 3]),
        ("1-3X1", [1, 2, 3]),
    ],
)
def test_parse_frame_spec(spec: str, expected: list[int]) -> None:
    assert parse_frame_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "   ", "abc", "1-", "1-10x0", "1-10x-2", "1--", "1.5", "1-10xx2", ","])
def test_parse_frame_spec_rejects(spec: str) -> None:
    with pytest.raises(FrameSpecError) as info:
        parse_frame_spec(spec)
    message = str(info.value)
    assert "\n" not in message
    # A usage error: the CLI exits with code 2.
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


def test_parse_frame_spec_refuses_absurd_ranges() -> None:
    with pytest.raises(FrameSpecError, match="too many frames"):
        parse_frame_spec("1-1000000000")


@pytest.mark.parametrize(("spec", "hint"), [("10-1", "write 1-10"), ("20-10x3", "write 11-20x3"),
                                            ("-1--5", "write -5--1")])
def test_parse_frame_spec_refuses_reversed_ranges(spec: str, hint: str) -> None:
    # Sorted output would quietly turn 10-1 into 1-10; the order asked for cannot be honoured.
    with pytest.raises(FrameSpecError, match="runs backwards") as info:
        parse_frame_spec(spec)
    assert hint in str(info.value)


def test_frames_phrase_reads_as_a_sentence() -> None:
    from daflow_vfx.frames import frames_phrase

    assert frames_phrase([6], "is missing", "are missing") == "frame 6 is missing"
    assert frames_phrase([7, 6], "is missing", "are missing") == "frames 6, 7 are missing"
    assert frames_phrase(list(range(1, 21)), "is", "are") == "frames 1-20 are"


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([1, 2, 3, 5], "1-3,5"),
        ([], ""),
        ([7], "7"),
        ([1001, 1002], "1001-1002"),
        ([1, 3], "1,3"),
        ([1, 6, 11, 16], "1-16x5"),
        ([-5, -4, -3, -1], "-5--3,-1"),
        ([3, 1, 2, 2], "1-3"),
    ],
)
def test_format_frame_spec(frames: list[int], expected: str) -> None:
    assert format_frame_spec(frames) == expected


@pytest.mark.parametrize(
    "frames",
    [[1, 2, 3, 5], [1, 3, 5, 6, 7, 20], [-10, -8, -6, 0, 1, 2, 100], list(range(1001, 1101, 4)) + [2000]],
)
def test_format_then_parse_round_trips(frames: list[int]) -> None:
    assert parse_frame_spec(format_frame_spec(frames)) == sorted(set(frames))


@pytest.mark.parametrize(
    ("path", "prefix", "padding", "suffix", "style"),
    [
        ("/plates/sh010.####.exr", "/plates/sh010.", 4, ".exr", "hash"),
        ("/plates/sh010.%04d.exr", "/plates/sh010.", 4, ".exr", "printf"),
        ("/plates/sh010.$F4.exr", "/plates/sh010.", 4, ".exr", "houdini"),
        ("sh010.#.png", "sh010.", 1, ".png", "hash"),
        ("sh010_%d.dpx", "sh010_", 1, ".dpx", "printf"),
        ("sh010.$F.tif", "sh010.", 1, ".tif", "houdini"),
        ("v%02d/sh010.####.exr", "v%02d/sh010.", 4, ".exr", "hash"),   # a token in a folder is not the frame
    ],
)
def test_sequence_pattern_parse(path: str, prefix: str, padding: int, suffix: str, style: str) -> None:
    pattern = SequencePattern.parse(path)
    assert pattern is not None
    got = (pattern.prefix, pattern.padding, pattern.suffix, pattern.style)
    assert got == (prefix, padding, suffix, style)
    assert str(pattern) == path


@pytest.mark.parametrize("path", ["/plates/sh010.1001.exr", "clip.mp4", "v%02d/frame.exr"])
def test_sequence_pattern_none_without_token(path: str) -> None:
    assert SequencePattern.parse(path) is None


def test_sequence_pattern_path_formats_like_printf() -> None:
    pattern = SequencePattern.parse("shot.####.exr")
    assert pattern is not None
    assert pattern.path(1001) == "shot.1001.exr"
    assert pattern.path(7) == "shot.0007.exr"
    assert pattern.path(12345) == "shot.12345.exr"
    assert pattern.path(-5) == "shot.-005.exr"     # %04d of -5
    unpadded = SequencePattern.parse("shot.#.exr")
    assert unpadded is not None and unpadded.path(7) == "shot.7.exr"


def test_sequence_pattern_scan(tmp_path) -> None:
    names = ["sh.0998.exr", "sh.0999.exr", "sh.1000.exr", "sh.1001.exr", "sh.10001.exr", "sh.-005.exr",
             # not part of the sequence:
             "sh.01.exr", "sh.1002.exr.tmp", "sh.1003.png", "other.1004.exr", ".sh.1005.tmp-1-ab.exr"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    pattern = SequencePattern.parse(os.path.join(tmp_path, "sh.####.exr"))
    assert pattern is not None
    assert pattern.scan() == [-5, 998, 999, 1000, 1001, 10001]
    printf = SequencePattern.parse(os.path.join(tmp_path, "sh.%04d.exr"))
    houdini = SequencePattern.parse(os.path.join(tmp_path, "sh.$F4.exr"))
    assert printf is not None and houdini is not None
    assert printf.scan() == houdini.scan() == pattern.scan()
    missing = SequencePattern.parse(os.path.join(tmp_path, "nothing", "sh.####.exr"))
    assert missing is not None and missing.scan() == []
