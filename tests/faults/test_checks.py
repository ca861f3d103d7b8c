"""Checks that were too strict or too lax: a gap outside a chunk, empty frame files, and early failures
that must leave nothing behind."""

from __future__ import annotations

from tests.faults.conftest import FAST, assert_one_error, assert_same_outputs, run_cli, snapshot, vector_names


def test_a_gap_outside_the_chunk_does_not_fail_the_chunk(work, reference) -> None:
    (work / "exr" / "p.0006.exr").unlink()
    before = snapshot(work)
    result = run_cli("render", "exr/p.####.exr", "-o", "out/v.####.exr", "--frames", "1-2", *FAST, cwd=work)
    assert result.code == 0, result.output
    assert "WARNING" not in result.stderr  # nothing held: the chunk reads frames 1-3 only
    assert_same_outputs(work / "out", reference, vector_names([1, 2]))
    assert set(snapshot(work)) == set(before) | {"out", "out/v.0001.exr", "out/v.0002.exr"}


def test_a_gap_inside_the_chunk_reads_naturally_and_writes_nothing(work) -> None:
    (work / "exr" / "p.0006.exr").unlink()
    before = snapshot(work)
    result = run_cli("render", "exr/p.####.exr", "-o", "out/v.####.exr", "--frames", "4-5", *FAST, cwd=work)
    line = assert_one_error(result, 1, "frame 6 is missing; render it or pass --allow-gaps")
    assert "frames 6" not in line
    assert snapshot(work) == before


def test_a_stabilize_range_away_from_a_gap_runs(work) -> None:
    (work / "png" / "p.0008.png").unlink()
    result = run_cli("stabilize", "png/p.####.png", "-o", "st/s.####.png", "--frames", "1-4", *FAST, cwd=work)
    assert result.code == 0, result.output
    assert sorted(p.name for p in (work / "st").iterdir()) == [
        *(f"s.{f:04d}.png" for f in range(1, 5)), "s.stabilize.json"]


def test_info_reports_an_empty_frame_as_missing(work) -> None:
    (work / "exr" / "p.0004.exr").write_bytes(b"")
    before = snapshot(work)
    result = run_cli("info", "exr/p.####.exr", cwd=work)
    assert result.code == 0, result.output
    missing = next(line for line in result.stdout.splitlines() if line.startswith("missing:"))
    assert "4" in missing and "empty file" in missing, missing
    as_json = run_cli("info", "exr/p.####.exr", "--json", cwd=work)
    assert '"missing": [\n    4\n  ]' in as_json.stdout and '"empty": [\n    4\n  ]' in as_json.stdout
    assert snapshot(work) == before


def test_side_outputs_under_a_file_fail_before_any_folder_is_made(work) -> None:
    (work / "blocker").write_text("a file where a folder is wanted")
    before = snapshot(work)
    result = run_cli("stabilize", "exr/p.####.exr", "-o", "st/frames/s.####.exr", "--stmap",
                     "st/maps/m.####.exr", "--nk", "blocker/shot.nk", *FAST, cwd=work)
    assert_one_error(result, 1, "blocker: exists but is not a folder")
    assert snapshot(work) == before  # neither st/frames nor st/maps was created


def test_an_output_that_is_a_folder_is_refused(work) -> None:
    (work / "s.mp4").mkdir()
    before = snapshot(work)
    assert_one_error(run_cli("stabilize", "ok.mp4", "-o", "s.mp4", *FAST, cwd=work), 2, "s.mp4 is a folder")
    assert snapshot(work) == before
