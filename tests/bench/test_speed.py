"""`daflow-vfx bench speed` at tiny sizes: the table, the markdown section, errors and missing peers.

These prove the benchmark works; they time nothing that matters (real numbers come from a run on an
idle machine at 960x540 and up).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
from click.testing import CliRunner

from daflow_vfx.bench.speed import SpeedJob, parse_sizes, run_speed
from daflow_vfx.bench.speed_cases import ReuseSpec, measure_reuse
from daflow_vfx.bench.speed_report import format_table
from daflow_vfx.bench.torchvision_raft import load_raft_module
from daflow_vfx.cli import main
from daflow_vfx.errors import UsageError

TINY = ["--repeats", "1", "--warmup", "1", "--iters", "2", "--threads", "1", "--render-sizes", "64x48",
        "--render-frames", "4"]


def table_rows(text: str, key: tuple[int, int] = (0, 2)) -> dict[tuple[str, str], list[str]]:
    """{(cells[key[0]], cells[key[1]]): cells} for the rows of the speed table, (model, size) by default
    (header and separator dropped)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 11 and cells[0] != "model":
            rows[(cells[key[0]], cells[key[1]])] = cells
    return rows


def render_rows(text: str) -> dict[str, list[str]]:
    """{model: cells} for the rows of the end-to-end render table (10 columns)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 10 and cells[0] != "model":
            rows[cells[0]] = cells
    return rows


def quick_job(**kw) -> SpeedJob:
    """A SpeedJob that runs in this process, once, on one thread, in float32, without the reuse
    measurement, the renders or a file (the same rows on any CPU)."""
    defaults = dict(repeats=1, warmup=0, threads=1, isolate=False, reuse_frames=0, render_frames=0,
                    output=None, dtypes=("float32",))
    return SpeedJob(**{**defaults, **kw})


def test_parse_sizes():
    assert parse_sizes("960x540, 1920X1080") == ((960, 540), (1920, 1080))
    for bad in ("1920by1080", "0x10", "1920", ","):
        with pytest.raises(UsageError):
            parse_sizes(bad)


def test_cli_table_numbers_and_markdown_section(tmp_path):
    md = tmp_path / "bench.md"
    md.write_text("# Benchmarks\n\nintro stays\n")
    args = [
        "bench",
        "speed",
        "--sizes",
        "64x48",
        "--models",
        "daflow-compact,dis,raft_large",
        *TINY,
        "--in-process",
        "--reuse-frames",
        "3",
        "--dtypes",
        "float32",  # one row per model on any CPU (the default adds bf16 where the CPU has it)
        "--output",
        str(md),
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    rows = table_rows(res.output)
    assert set(rows) == {("daflow-compact", "64x48"), ("dis", "64x48"), ("raft_large", "64x48")}
    for model in ("daflow-compact", "dis"):
        cells = rows[(model, "64x48")]
        pairs_per_s, ms_per_pair, peak, delta = (float(cells[i]) for i in (4, 5, 7, 8))
        assert pairs_per_s > 0 and peak > 0 and delta >= 0
        assert ms_per_pair == pytest.approx(1000 / pairs_per_s, rel=0.02)
    assert rows[("daflow-compact", "64x48")][1] in ("random weights", "trained")
    # below 128x128 torchvision's RAFT cannot run (or torchvision is missing): a row that says why
    assert rows[("raft_large", "64x48")][4] == "-"
    assert rows[("raft_large", "64x48")][10].startswith(("skipped (", "unavailable: "))
    assert "per pair (each pair a 2-frame window) | 4 |" in res.output
    assert "windowed (3-frame windows, the render path) | 3 |" in res.output
    # end-to-end renders of the registry's models (RAFT is no render model), model-only pairs/s beside
    renders = render_rows(res.output)
    assert set(renders) == {"daflow-compact", "dis"}
    for model, cells in renders.items():
        assert cells[1:5] == ["64x48", "float32" if model == "daflow-compact" else "-", "1", "4"]
        frames_per_s, seconds, peak = float(cells[5]), float(cells[6]), float(cells[8])
        assert frames_per_s == pytest.approx(4 / seconds, rel=0.02) and peak > 0
        assert cells[7] == rows[(model, "64x48")][4]  # the model-only pairs/s of the table above
    text = md.read_text()
    assert "intro stays" in text and "<!-- speed-cpu:begin -->" in text and "Command: `daflow-vfx" in text
    assert "| daflow-compact |" in text and "torch " in text and "OpenCV " in text and "Device: " in text
    # a second run replaces the section rather than appending another
    res = CliRunner().invoke(
        main,
        ["bench", "speed", "--sizes", "64x48", "--models", "dis", *TINY, "--in-process", "--output", str(md)],
    )
    assert res.exit_code == 0, res.output
    assert md.read_text().count("speed-cpu:begin") == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--sizes", "1920by1080", "bad size '1920by1080'"),
        ("--models", "dis,pwc", "unknown model 'pwc'"),
        ("--dtypes", "float32,half", "bad dtype 'half'"),
        ("--render-sizes", "big", "bad size 'big'"),
    ],
)
def test_bad_option_is_a_clean_one_line_error(tmp_path, option, value, message):
    res = CliRunner().invoke(main, ["bench", "speed", option, value, "--output", str(tmp_path / "b.md")])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "b.md").exists()


def test_unavailable_torchvision_gives_rows_not_a_crash():
    job = quick_job(
        models=("dis", "raft_small", "raft_large"),
        sizes=((160, 128),),
        torchvision_module="daflow_test_no_such_torchvision",
    )
    report = run_speed(job)
    by = {r.model: r for r in report.rows}
    assert by["dis"].status == "ok" and by["dis"].pairs_per_s > 0
    assert by["raft_small"].status == by["raft_large"].status == "unavailable"
    assert "not installed" in by["raft_large"].reason
    rows = table_rows(format_table(report.rows))
    assert rows[("raft_large", "160x128")][10].startswith("unavailable: daflow_test_no_such_torchvision")
    assert rows[("dis", "160x128")][6] == "-"  # no ratio without the reference
    assert "daflow_test_no_such_torchvision" not in sys.modules


def test_daflow_full_is_skipped_on_cpu_at_real_sizes():
    # returns at once: the 2.35 B-parameter model is never built
    (row,) = run_speed(quick_job(models=("daflow-full",), sizes=((960, 540),))).rows
    assert row.status == "skipped" and row.weights == "random weights"
    assert "skipped (" in format_table([row]) and "--full-on-cpu" in row.reason


@pytest.mark.parametrize("cpu_bf16", [True, False])
def test_cuda_rows_time_the_fast_path_and_float32(monkeypatch, cpu_bf16):
    import torch

    from daflow_vfx.bench.speed import _case_dtypes

    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: cpu_bf16, raising=False)

    # CUDA: DA-Flow runs under bf16 autocast, and daflow-compact also in float32 for comparison
    assert _case_dtypes("daflow-compact", "cuda") == ("float32", "bfloat16")
    assert _case_dtypes("daflow-full", "cuda:0") == ("bfloat16",)
    assert _case_dtypes("raft_large", "cuda") == ("float32",)
    # CPU: float32, and bf16 (what render's --dtype auto runs) where the CPU has it in hardware
    assert _case_dtypes("daflow-compact", "cpu") == (("float32", "bfloat16") if cpu_bf16 else ("float32",))
    # --dtypes chooses the DA-Flow rows' precision on any device; the references stay float32
    assert _case_dtypes("daflow-compact", "cpu", ("float32", "bfloat16")) == ("float32", "bfloat16")
    assert _case_dtypes("dis", "cpu", ("bfloat16",)) == ("float32",)


def test_reduced_precision_rows_report_their_distance_from_float32():
    job = quick_job(
        models=("daflow-compact", "dis"), sizes=((64, 48),), iters=2, dtypes=("float32", "bfloat16")
    )
    report = run_speed(job)
    by = {(r.model, r.dtype): r for r in report.rows}
    assert set(by) == {("daflow-compact", "float32"), ("daflow-compact", "bfloat16"), ("dis", "uint8")}
    low = by[("daflow-compact", "bfloat16")]
    # bf16 keeps 8 mantissa bits: the flow moves, a little (> 0 proves autocast really ran)
    assert 0 < low.epe_vs_float32 <= low.epe_max_vs_float32 < 1.0
    assert by[("daflow-compact", "float32")].epe_vs_float32 is None
    cells = table_rows(format_table(report.rows), key=(0, 3))  # by (model, dtype)
    expected = f"{low.epe_vs_float32:.4f} ({low.epe_max_vs_float32:.3f})"
    assert cells[("daflow-compact", "bfloat16")][9] == expected
    assert cells[("daflow-compact", "float32")][9] == cells[("dis", "uint8")][9] == "-"


def test_windowed_reuse_counts_feature_passes():
    result = measure_reuse(ReuseSpec(frames=5, width=64, height=48, iters=1, repeats=1, warmup=0, threads=1))
    assert result.status == "ok"
    # windows [0, 1, 2] and [2, 3, 4] against four 2-frame pairs
    assert (result.windowed_passes, result.per_pair_passes) == (6, 8)
    assert result.windowed_s > 0 and result.per_pair_s > 0 and result.saving is not None


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision not installed")
def test_torchvision_raft_loads_and_runs():
    from daflow_vfx.bench.speed_cases import CaseSpec, measure_case

    module, how = load_raft_module()
    assert hasattr(module, "raft_small") and how
    result = measure_case(
        CaseSpec(model="raft_small", width=128, height=128, iters=2, repeats=1, warmup=0, threads=1)
    )
    assert result.status == "ok" and result.pairs_per_s > 0 and result.weights == "random weights"


def test_isolated_worker_process_reports_memory(tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "bench",
            "speed",
            "--sizes",
            "64x48",
            "--models",
            "dis",
            *TINY,
            "--reuse-frames",
            "0",
            "--output",
            "-",
        ],
    )
    assert res.exit_code == 0, res.output
    cells = table_rows(res.output)[("dis", "64x48")]
    assert float(cells[4]) > 0 and float(cells[7]) > 0  # peak RSS of the fresh worker process
    render = render_rows(res.output)["dis"]
    assert float(render[5]) > 0 and float(render[8]) > 0  # the render's own worker and its peak RSS
    assert "each measurement in a fresh process" in res.output
