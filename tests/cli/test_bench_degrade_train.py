"""`bench accuracy`, `degrade` and `train` through the CLI, in-process."""

import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.io import write_image

from ..helpers import write_shift_pairs


@pytest.fixture
def tiny_flow_dir(tmp_path):
    return write_shift_pairs(tmp_path)


def test_bench_accuracy_writes_the_table(tiny_flow_dir, tmp_path):
    md = tmp_path / "bench.md"
    md.write_text("# Benchmarks\n\nintro stays\n")
    res = CliRunner().invoke(main, ["bench", "accuracy", "--data", str(tiny_flow_dir), "--models",
                                    "dis,farneback", "--levels", "clean,severe", "--output", str(md)])
    assert res.exit_code == 0, res.output
    text = md.read_text()
    assert "intro stays" in text and "| dis |" in text and "| farneback |" in text
    assert "Command: `daflow-vfx" in text
    dis_clean = float(text.split("| dis | ")[1].split(" |")[0])
    assert dis_clean < 0.5  # a textured pure shift is easy for DIS: the benchmark measures for real
    # Running again replaces the section instead of appending a second one.
    CliRunner().invoke(main, ["bench", "accuracy", "--data", str(tiny_flow_dir), "--models", "dis",
                              "--levels", "clean", "--output", str(md)])
    assert md.read_text().count("accuracy:begin") == 1


def test_bench_accuracy_missing_data_is_a_clean_error(tmp_path):
    res = CliRunner().invoke(main, ["bench", "accuracy", "--data", str(tmp_path / "nope"), "--output", "-"])
    assert res.exit_code == 1 and "pairs.csv" in res.output and "Traceback" not in res.output


def test_degrade_command_writes_frames(tmp_path):
    rng = np.random.default_rng(1)
    for f in range(1, 4):
        write_image(tmp_path / f"in.{f:04d}.png", rng.random((32, 48, 3), dtype=np.float32))
    out = tmp_path / "out" / "bad.####.png"
    res = CliRunner().invoke(main, ["degrade", str(tmp_path / "in.####.png"), "-o", str(out),
                                    "--preset", "mild", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.parent.iterdir()) == [f"bad.{f:04d}.png" for f in range(1, 4)]


def test_degrade_bad_preset_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(main, ["degrade", "x.####.png", "-o", str(tmp_path / "o.####.png"),
                                    "--preset", "awful"])
    assert res.exit_code == 2


def test_train_needs_a_config():
    res = CliRunner().invoke(main, ["train"])
    assert res.exit_code == 2 and "--config" in res.output


def test_train_bad_config_is_a_clean_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("modle: daflow-compact\n")
    res = CliRunner().invoke(main, ["train", "--config", str(p)])
    assert res.exit_code == 2 and "unknown keys modle" in res.output


def test_a_level_degrades_the_same_whichever_levels_are_asked_for(tiny_flow_dir):
    from daflow_vfx.bench.accuracy import run_accuracy

    alone, _ = run_accuracy(tiny_flow_dir, models=("dis",), levels=("severe",))
    together, _ = run_accuracy(tiny_flow_dir, models=("dis",), levels=("clean", "severe"))
    severe = next(r for r in together if r.level == "severe")
    assert alone[0].epe == severe.epe


def test_bench_accuracy_iters_reaches_the_daflow_estimator(tiny_flow_dir):
    from daflow_vfx.bench.accuracy import run_accuracy
    from daflow_vfx.model.weights import REGISTRY

    if not REGISTRY["daflow-compact"].weights_present():
        pytest.skip("no shipped daflow-compact weights")
    # Different iteration counts give different flows: the option reaches the model.
    one, _ = run_accuracy(tiny_flow_dir, models=("daflow-compact",), levels=("clean",), limit=1, iters=1)
    three, _ = run_accuracy(tiny_flow_dir, models=("daflow-compact",), levels=("clean",), limit=1, iters=3)
    assert one[0].epe != three[0].epe
    bad = CliRunner().invoke(main, ["bench", "accuracy", "--data", str(tiny_flow_dir), "--iters", "0"])
    assert bad.exit_code != 0 and "--iters" in bad.output


def test_bench_accuracy_evaluates_a_weights_file_as_its_own_row(tiny_flow_dir):
    from daflow_vfx.bench.accuracy import run_accuracy
    from daflow_vfx.model.weights import REGISTRY

    entry = REGISTRY["daflow-compact"]
    if not entry.weights_present():
        pytest.skip("no shipped daflow-compact weights")
    spec = f"daflow-compact={entry.path}"
    rows, skipped = run_accuracy(tiny_flow_dir, models=("daflow-compact", spec), levels=("clean",), limit=1)
    by = {r.model: r for r in rows}
    assert skipped == [] and set(by) == {"daflow-compact", f"daflow-compact@{entry.path.stem}"}
    # The same file through the registry and through NAME=WEIGHTS: the same flow, so the same EPE.
    assert by["daflow-compact"].epe == by[f"daflow-compact@{entry.path.stem}"].epe


@pytest.mark.parametrize("spec, expect", [("daflow-compact={missing}", "missing.safetensors"),
                                          ("dis={missing}", "takes no weights"),
                                          ("=x.safetensors", "NAME=WEIGHTS")])
def test_bench_accuracy_bad_weights_spec_is_a_clean_error(tiny_flow_dir, tmp_path, spec, expect):
    spec = spec.format(missing=tmp_path / "missing.safetensors")
    res = CliRunner().invoke(main, ["bench", "accuracy", "--data", str(tiny_flow_dir), "--models", spec,
                                    "--output", "-"])
    assert res.exit_code != 0 and expect in res.output and "Traceback" not in res.output
