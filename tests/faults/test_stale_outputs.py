"""``render --skip-existing`` keeps an output only when it is complete for *this* job: the right size,
channels and layout, this frame, this plate (path and files) and these settings; everything else is
redone, and the result equals a fresh render pixel for pixel."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.faults.conftest import (
    FAST,
    FRAMES,
    assert_same_outputs,
    read_channels,
    run_cli,
    snapshot,
    temp_files,
    vector_names,
)

RENDER = ["render", "exr/p.####.exr", "-o", "out/v.####.exr", *FAST]


def fresh(work: Path, *args: str) -> Path:
    """A fresh render of the same job into ``fresh/``: what a redone output must equal."""
    result = run_cli(*[a.replace("out/", "fresh/") for a in args], cwd=work)
    assert result.code == 0, result.output
    return work / "fresh"


def resume(work: Path, *args: str) -> tuple[str, str]:
    result = run_cli(*args, "--skip-existing", cwd=work)
    assert result.code == 0, result.output
    assert temp_files(work) == []
    return result.stdout, result.stderr


def mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_matching_outputs_are_kept(work) -> None:
    assert run_cli(*RENDER, cwd=work).code == 0
    before = mtimes(work / "out")
    stdout, stderr = resume(work, *RENDER)
    assert "Wrote 0 EXR(s)" in stdout and f"skipped {FRAMES} complete" in stdout
    assert "redoing" not in stderr
    assert mtimes(work / "out") == before


def test_an_output_of_the_wrong_size_is_redone(work, reference) -> None:
    from daflow_vfx.io.exr import read_exr_metadata, write_motion_exr

    assert run_cli(*RENDER, cwd=work).code == 0
    stale = work / "out" / "v.0003.exr"
    meta = read_exr_metadata(stale)  # same frame, plate and settings recorded: only the size is wrong
    layout = meta.pop("layout")
    meta.pop("forwardValid"), meta.pop("backwardValid")
    wrong = np.ones((40, 48, 2), np.float32)
    write_motion_exr(stale, forward=wrong, backward=wrong, layout=layout, metadata=meta)
    stdout, stderr = resume(work, *RENDER)
    assert "Wrote 1 EXR(s) (frames 3)" in stdout and f"skipped {FRAMES - 1} complete" in stdout
    assert "frame 3: it is 48x40 but the plate is 32x24" in stderr
    assert_same_outputs(work / "out", reference, vector_names())


def test_outputs_of_the_other_layout_are_redone(work) -> None:
    assert run_cli(*RENDER, cwd=work).code == 0
    blender = [*RENDER, "--layout", "blender"]
    stdout, stderr = resume(work, *blender)
    assert f"Wrote {FRAMES} EXR(s)" in stdout and "skipped" not in stdout
    assert "has the nuke layout, not blender" in stderr
    assert_same_outputs(work / "out", fresh(work, *blender), vector_names())
    assert "forward.u" not in read_channels(work / "out" / "v.0004.exr")


def test_outputs_of_another_plate_are_redone(work, reference) -> None:
    other = ["render", "other/q.####.exr", "-o", "out/v.####.exr", *FAST]
    assert run_cli(*other, cwd=work).code == 0  # the same size and names, another shot
    stdout, stderr = resume(work, *RENDER)
    assert f"Wrote {FRAMES} EXR(s)" in stdout and "skipped" not in stdout
    assert "was rendered from another plate" in stderr
    assert_same_outputs(work / "out", reference, vector_names())


def test_outputs_of_a_redelivered_plate_are_redone(work) -> None:
    assert run_cli(*RENDER, cwd=work).code == 0
    for frame in range(1, FRAMES + 1):  # the plate is replaced in place: same path, same size, new pixels
        shutil.copyfile(work / "other" / f"q.{frame:04d}.exr", work / "exr" / f"p.{frame:04d}.exr")
    stdout, stderr = resume(work, *RENDER)
    assert f"Wrote {FRAMES} EXR(s)" in stdout and "another version of the plate" in stderr
    assert_same_outputs(work / "out", fresh(work, *RENDER), vector_names())


def test_outputs_made_with_other_settings_are_redone(work) -> None:
    assert run_cli(*RENDER, cwd=work).code == 0
    as_float = [*RENDER, "--float"]
    stdout, stderr = resume(work, *as_float)
    assert f"Wrote {FRAMES} EXR(s)" in stdout and "was rendered with other settings" in stderr
    assert_same_outputs(work / "out", fresh(work, *as_float), vector_names())


def test_a_foreign_or_empty_file_is_redone(work, reference) -> None:
    from daflow_vfx.io.images import write_image

    assert run_cli(*RENDER, cwd=work).code == 0
    write_image(work / "out" / "v.0002.exr", np.zeros((24, 32, 3), np.float32))  # a beauty EXR, no vectors
    (work / "out" / "v.0007.exr").write_bytes(b"")  # a 0-byte file from a full disk
    before = snapshot(work)
    stdout, stderr = resume(work, *RENDER)
    assert "Wrote 2 EXR(s) (frames 2,7)" in stdout, stdout
    assert "frame 2: it has no motion-vector channels" in stderr and "frame 7: it is incomplete" in stderr
    assert_same_outputs(work / "out", reference, vector_names())
    assert set(snapshot(work)) == set(before)
