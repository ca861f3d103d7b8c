"""`daflow-vfx bench propagate` on a tiny plate: the table is printed, and anchoring beats chaining."""

from __future__ import annotations

from click.testing import CliRunner

from daflow_vfx.bench.propagate import PropagateBenchJob, run_propagate_bench
from daflow_vfx.cli import main


def test_anchored_drifts_less_than_chaining_on_a_clean_plate() -> None:
    job = PropagateBenchJob(model="dis", frames=14, width=128, height=80, preset=None)
    rows = {row.method: row for row in run_propagate_bench(job)}
    anchored, chain = rows["anchored"], rows["chain"]
    assert anchored.drift[12] < 1.0  # loose: a tiny plate, classical flow
    assert anchored.drift[12] < chain.drift[12]
    assert anchored.kept[12] > 0.5
    assert anchored.occluded_pixels > 0 and anchored.occluded_cleared > 0.8


def test_bench_command_prints_the_table() -> None:
    result = CliRunner().invoke(main, ["bench", "propagate", "--model", "dis", "--size", "64x48",
                                       "--frames", "13", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "| method | drift +12 (px) | kept +12 | occluded paint cleared |" in result.output
    assert "| anchored |" in result.output and "| chain |" in result.output
    assert "degrade preset `severe`" in result.output


def test_bench_refuses_a_bad_size() -> None:
    result = CliRunner().invoke(main, ["bench", "propagate", "--model", "dis", "--size", "64by48"])
    assert result.exit_code == 2 and "Error: --size" in result.output
