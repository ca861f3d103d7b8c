"""Absurd option values are usage errors (exit 2) refused at once, with one ``Error:`` line naming the
flag, and nothing written: not a frame, not the output folder."""

from __future__ import annotations

import pytest

from tests.faults.conftest import FAST, assert_one_error, run_cli, snapshot

RENDER = ["render", "exr/p.####.exr", "-o", "out/new/v.####.exr"]
RETIME = ["retime", "exr/p.####.exr", "-o", "out/new/r.####.exr"]
STABILIZE = ["stabilize", "exr/p.####.exr", "-o", "out/new/s.####.exr"]

CASES = {
    "--threads 100000": ([*RENDER, *FAST, "--threads", "100000"], "--threads 100000 is more than"),
    "--frames ''": ([*RENDER, *FAST, "--frames", ""], "--frames: empty frame spec"),
    "--frames 10-1": ([*RENDER, *FAST, "--frames", "10-1"], "runs backwards"),
    "--frames 8-2x3": ([*RENDER, *FAST, "--frames", "8-2x3"], "write 2-8x3"),
    "--model nosuch": ([*RENDER, "--model", "nosuch"], "unknown --model 'nosuch'"),
    "--device tpu": ([*RENDER, "--model", "dis", "--device", "tpu"], "unknown device 'tpu'"),
    "--max-memory 12Q": ([*RENDER, *FAST, "--max-memory", "12Q"], "--max-memory"),
    "retime --speed 0.0001": ([*RETIME, *FAST, "--speed", "0.0001"], "--speed 0.0001 is 10000x slow motion"),
    "retime --fps 24:100000": ([*RETIME, *FAST, "--fps", "24:100000"], "--fps 24:100000"),
    "retime --frames ''": ([*RETIME, *FAST, "--speed", "0.5", "--frames", ""], "--frames: empty frame spec"),
    "stabilize --frames ''": ([*STABILIZE, *FAST, "--frames", ""], "--frames: empty frame spec"),
    "stabilize --threads 100000": ([*STABILIZE, *FAST, "--threads", "100000"], "--threads"),
    "stabilize --device tpu": ([*STABILIZE, "--model", "dis", "--device", "tpu"], "unknown device"),
    "flow --model nosuch": (["flow", "exr/p.0001.exr", "exr/p.0002.exr", "-o", "out/new/f.flo", "--model",
                             "nosuch"], "unknown --model"),
}


@pytest.mark.parametrize(("args", "message"), list(CASES.values()), ids=list(CASES))
def test_absurd_option_is_a_usage_error_and_writes_nothing(work, args, message) -> None:
    before = snapshot(work)
    assert_one_error(run_cli(*args, cwd=work), 2, message)
    assert snapshot(work) == before


def test_an_absent_device_fails_before_any_folder_is_made(work) -> None:
    # cuda:99 exists on no machine: a device that is named correctly but absent is exit 1, not usage
    before = snapshot(work)
    assert_one_error(run_cli(*RENDER, "--model", "dis", "--device", "cuda:99", cwd=work), 1, "cuda:99")
    assert snapshot(work) == before
