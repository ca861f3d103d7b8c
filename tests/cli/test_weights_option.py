"""`--weights` / `--iters`: user-given local weights reach the model, with clean errors."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.io import read_motion_exr, write_image
from daflow_vfx.model.daflow import daflow_compact
from daflow_vfx.model.weights import save_weights


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.random((32, 48, 3), dtype=np.float32)
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", np.roll(a, 2, axis=1))
    return tmp_path / "a.png", tmp_path / "b.png"


@pytest.mark.slow
def test_local_weights_are_loaded_and_recorded(pair, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "mine.safetensors"
    digest = save_weights(daflow_compact().half(), weights)
    out = tmp_path / "f.exr"
    res = CliRunner().invoke(main, ["flow", str(pair[0]), str(pair[1]), "-o", str(out), "--model",
                                    "daflow-compact", "--weights", str(weights), "--iters", "1",
                                    "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert read_motion_exr(out).metadata["weightsSha256"] == digest


def test_missing_weights_file_is_a_clean_error(pair, tmp_path):
    missing = str(tmp_path / "nope.safetensors")
    res = CliRunner().invoke(main, ["flow", str(pair[0]), str(pair[1]), "-o", str(tmp_path / "f.flo"),
                                    "--model", "daflow-compact", "--weights", missing])
    assert res.exit_code == 1
    assert "nope.safetensors" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "f.flo").exists()


def test_mismatched_weights_name_the_keys(pair, tmp_path):
    from daflow_vfx.model.daflow import daflow_compact_cnn

    weights = tmp_path / "cnn.safetensors"
    save_weights(daflow_compact_cnn(), weights)
    res = CliRunner().invoke(main, ["flow", str(pair[0]), str(pair[1]), "-o", str(tmp_path / "f.flo"),
                                    "--model", "daflow-compact", "--weights", str(weights)])
    assert res.exit_code == 1 and "weights do not match the model: missing" in res.output
