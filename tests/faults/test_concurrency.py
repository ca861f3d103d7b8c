"""Concurrent renders into one folder (a farm re-queues a task that is still running, or two chunks share
a folder): every run succeeds, no run removes another's temp file, and the folder ends up pixel-identical
to one uninterrupted render with nothing else in it."""

from __future__ import annotations

import pytest

from tests.faults.conftest import FAST, assert_same_outputs, snapshot, start_cli, temp_files, vector_names

RENDER = ["render", "exr/p.####.exr", "-o", "out/v.####.exr", *FAST]


@pytest.mark.parametrize("extra", [
    ([], []),  # the same frames twice
    ([], ["--skip-existing"]),  # a re-queued task resuming while the first still writes
    (["--frames", "1-5"], ["--frames", "4-8"]),  # overlapping chunks
], ids=["same-frames", "one-resuming", "overlapping-chunks"])
def test_concurrent_renders_into_one_folder(work, reference, extra) -> None:
    before = snapshot(work)
    # every rename waits a little, so the two runs really write the folder at the same time
    runs = [start_cli(*RENDER, *args, cwd=work, slow="os.replace=0.05") for args in extra]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        assert "Error" not in err and "Traceback" not in err, err
    assert temp_files(work) == []
    assert_same_outputs(work / "out", reference, vector_names())
    assert set(snapshot(work)) == set(before) | {"out"} | {f"out/{n}" for n in vector_names()}
