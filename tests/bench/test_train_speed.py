"""`daflow-vfx bench train`: training throughput on the device's own data, measured in-process."""

import pytest
from click.testing import CliRunner

from daflow_vfx.bench.train_speed import TrainSpeedJob, measure_train_speed
from daflow_vfx.errors import UsageError


def _bench(*args):
    from daflow_vfx.cli import main

    return CliRunner().invoke(main, ["bench", "train", *args])


@pytest.mark.slow
def test_it_measures_data_and_full_steps_and_writes_its_section(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nkept\n")
    result = _bench("--device", "cpu", "--size", "32x48", "--batch", "1", "--iters", "1", "--seconds", "0.2",
                    "--output", str(doc))
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| ") and "cpu" in line]
    assert [r.split("|")[1].strip() for r in rows] == ["data", "train step (stage 2)"]
    assert all(float(r.split("|")[3]) > 0 for r in rows)
    text = doc.read_text()
    assert "kept" in text and "<!-- train-cpu:begin -->" in text and "bench train" in text


def test_stage_one_trains_the_backbone():
    rows = measure_train_speed(TrainSpeedJob(model="daflow-compact-noprior", device="cpu", size=(32, 48),
                                             batch_size=1, iters=1, seconds=0.05, stage=1))
    assert rows[1].what == "train step (stage 1)" and rows[1].windows_per_s > 0


def test_chunked_data_serves_whole_batches():
    rows = measure_train_speed(TrainSpeedJob(model="daflow-compact-noprior", device="cpu", size=(32, 48),
                                             batch_size=1, iters=1, seconds=0.05, data_chunk=3))
    assert rows[0].what == "data (3 windows a call)" and rows[0].batches % 3 == 0
    assert rows[1].windows_per_s > 0


def test_a_model_with_a_host_prior_is_refused():
    with pytest.raises(UsageError, match="DIS prior"):
        measure_train_speed(TrainSpeedJob(model="daflow-compact", device="cpu", size=(32, 48), batch_size=1,
                                          seconds=0.05))


@pytest.mark.parametrize("size", ["384", "8x8", "axb"])
def test_a_bad_size_is_one_error(size):
    result = _bench("--size", size, "--output", "-")
    assert result.exit_code == 2 and "--size" in result.output and "Traceback" not in result.output
