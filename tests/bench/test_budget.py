"""Backbone token budget benchmark: exact upscaled ground truth, budgets that really apply, the command."""

import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx.bench.accuracy import UNKNOWN_FLOW
from daflow_vfx.bench.budget import parse_budgets, run_budget, upscale_pair
from daflow_vfx.cli import main
from daflow_vfx.errors import UsageError

from ..helpers import write_shift_pairs


def test_upscaled_ground_truth_is_in_the_new_pixels():
    frames = np.random.default_rng(0).random((2, 6, 8, 3), dtype=np.float32)
    gt = np.zeros((6, 8, 2), np.float32)
    gt[..., 0], gt[..., 1] = 1.5, -2.0
    gt[0, 0] = 2e9  # unknown stays unknown
    up, g = upscale_pair(frames, gt, 2.0)
    assert up.shape == (2, 12, 16, 3) and g.shape == (12, 16, 2)
    assert 0.0 <= up.min() and up.max() <= 1.0
    np.testing.assert_array_equal(g[5, 5], [3.0, -4.0])
    assert np.all(g[:2, :2] > UNKNOWN_FLOW)


def test_parse_budgets():
    assert parse_budgets("2048, 512") == (2048, 512)
    for bad in ("", "x", "0", "1024,-1"):
        with pytest.raises(UsageError):
            parse_budgets(bad)


def test_budgets_change_what_the_backbone_sees(tmp_path):
    data = write_shift_pairs(tmp_path)
    # 64x80 pairs upscaled 2x: 128x160, 80 tokens per frame. A budget of 4 downscales the backbone's
    # window; 4096 leaves it whole. Both must run and give different (finite) errors.
    rows = run_budget(data, budgets=(4096, 4), scale=2.0, levels=("clean",), reference="dis", limit=1)
    by = {r.label: r for r in rows}
    assert set(by) == {"4096", "4", "dis"}
    assert all(np.isfinite(r.epe) and r.pairs == 1 for r in rows)
    assert by["4096"].epe != by["4"].epe


def test_a_model_without_a_backbone_is_a_usage_error(tmp_path):
    data = write_shift_pairs(tmp_path)
    with pytest.raises(UsageError, match="no diffusion backbone"):
        run_budget(data, model="daflow-compact-cnn", budgets=(16,), limit=1)


def test_budget_command_prints_the_table(tmp_path):
    data = write_shift_pairs(tmp_path)
    res = CliRunner().invoke(main, ["bench", "budget", "--data", str(data), "--tokens", "4096,8", "--levels",
                                    "clean", "--limit", "1", "--output", "-"])
    assert res.exit_code == 0, res.output
    assert "| 4096 |" in res.output and "| 8 |" in res.output and "| dis (reference) |" in res.output
    bad = CliRunner().invoke(main, ["bench", "budget", "--data", str(data), "--tokens", "lots",
                                    "--output", "-"])
    assert bad.exit_code == 2 and "--tokens" in bad.output and "Traceback" not in bad.output
