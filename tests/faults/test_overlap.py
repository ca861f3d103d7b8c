"""Data loss: an output that names an input, in any spelling, is refused before anything is written."""

from __future__ import annotations

import os

import pytest

from tests.faults.conftest import FAST, assert_one_error, run_cli, snapshot

OVERWRITES = "would overwrite the input"

CASES = {
    "render onto its plate": ["render", "exr/p.####.exr", "-o", "exr/p.####.exr", *FAST],
    "render, another spelling": ["render", "exr/p.####.exr", "-o", "./exr/../exr/p.%04d.exr", *FAST],
    "render through a symlinked folder": ["render", "exr/p.####.exr", "-o", "link/p.####.exr", *FAST],
    "render a chunk onto two plate frames": ["render", "exr/p.####.exr", "-o", "exr/p.####.exr",
                                             "--frames", "2-3", *FAST],
    "render onto a hard link of a plate frame": ["render", "exr/p.####.exr", "-o", "hard/x.####.exr",
                                                 "--frames", "3", *FAST],
    "stabilize a video onto itself": ["stabilize", "ok.mp4", "-o", "ok.mp4", *FAST],
    "stabilize a video through a symlink": ["stabilize", "clip.mp4", "-o", "ok.mp4", *FAST],
    "retime a sequence onto itself": ["retime", "png/p.####.png", "-o", "png/p.####.png", "--speed", "0.5",
                                      *FAST],
    "degrade onto its plate": ["degrade", "png/p.####.png", "-o", "png/p.####.png"],
    "flow onto its first image": ["flow", "exr/p.0001.exr", "exr/p.0002.exr", "-o", "exr/p.0001.exr", *FAST],
    "stabilize --stmap onto the plate": ["stabilize", "exr/p.####.exr", "-o", "st/s.####.exr",
                                         "--stmap", "exr/p.####.exr", *FAST],
    "stabilize --nk onto a plate frame": ["stabilize", "png/p.####.png", "-o", "st/s.####.png",
                                          "--nk", "png/p.0004.png", *FAST],
}


@pytest.mark.parametrize("args", list(CASES.values()), ids=list(CASES))
def test_output_naming_an_input_is_refused_and_nothing_is_written(work, args) -> None:
    os.symlink("exr", work / "link")
    os.symlink("ok.mp4", work / "clip.mp4")
    (work / "hard").mkdir()
    os.link(work / "exr" / "p.0003.exr", work / "hard" / "x.0003.exr")
    before = snapshot(work)
    result = run_cli(*args, cwd=work)
    line = assert_one_error(result, 2, OVERWRITES)
    flag = "--nk" if "--nk" in args else "--stmap" if "--stmap" in args else "--output"
    assert line.startswith(f"Error: {flag} would overwrite"), line
    assert snapshot(work) == before  # the plate is byte for byte as it was, and no folder appeared


def test_two_outputs_on_one_file_are_refused(work) -> None:
    before = snapshot(work)
    result = run_cli("stabilize", "exr/p.####.exr", "-o", "st/s.####.exr", "--stmap", "st/s.####.exr", *FAST,
                     cwd=work)
    assert_one_error(result, 2, "--stmap and --output both write")
    assert snapshot(work) == before
