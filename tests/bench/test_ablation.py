"""The taps-zeroed ablation: zeros from the stand-in, an untouched original, the benchmark, its command."""

import inspect

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from daflow_vfx.bench.ablation import SECTION, format_table, run_ablation, summary, zeroed_estimator
from daflow_vfx.cli import main
from daflow_vfx.errors import ModelError, UsageError
from daflow_vfx.model.ablate import SHARED_SETTINGS, ZeroTaps, with_zeroed_taps
from daflow_vfx.model.daflow import DAFlow

from ..helpers import write_shift_pairs


@pytest.fixture(scope="module")
def shipped() -> DAFlow:
    from daflow_vfx.model.weights import build_model

    model, _, _ = build_model("daflow-compact")
    return model.eval()


def _pairs(root, name: str):
    """A tiny flow-dev-like data set in ``root/name``."""
    folder = root / name
    folder.mkdir()
    return write_shift_pairs(folder)


def _frames(seed: int = 0) -> torch.Tensor:
    # [1, 3, 3, 32, 48]: a 3-frame window in [-1, 1], a multiple of the stride (16)
    return torch.rand(1, 3, 3, 32, 48, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shared_settings_cover_every_constructor_argument():
    # A DAFlow setting missing from the list would silently take its default in the ablated model.
    params = set(inspect.signature(DAFlow.__init__).parameters) - {"self"}
    assert set(SHARED_SETTINGS) | {"backbone"} == params


def test_the_stand_in_gives_zero_taps_of_the_backbones_shape(shipped):
    ablated = with_zeroed_taps(shipped)
    assert isinstance(ablated.backbone, ZeroTaps)
    assert ablated.stride == shipped.stride
    frames = _frames()
    with torch.inference_mode():
        real = shipped.backbone_taps(frames)
        zero = ablated.backbone_taps(frames)
    assert len(zero) == len(real) == len(shipped.backbone.taps)
    for z, r in zip(zero, real, strict=True):
        assert z.shape == r.shape  # [B*F, dim, H/16, W/16]
        assert torch.count_nonzero(z) == 0
        assert torch.count_nonzero(r) > 0
    with pytest.raises(ModelError, match="restoration head"):
        ablated.backbone(frames, frames, torch.zeros(1), return_velocity=True)


def test_zeroing_changes_the_flow_and_leaves_the_original_alone(shipped):
    frames = _frames(1)
    before = {k: v.clone() for k, v in shipped.state_dict().items()}
    backbone = shipped.backbone
    with torch.inference_mode():
        flow = shipped(frames, iters=2).flow  # [1, 4, 2, 32, 48]
        ablated = with_zeroed_taps(shipped)
        zeroed = ablated(frames, iters=2).flow
        again = shipped(frames, iters=2).flow
    assert torch.isfinite(zeroed).all()
    assert (zeroed - flow).abs().max() > 1e-3
    torch.testing.assert_close(again, flow, rtol=0, atol=0)
    assert shipped.backbone is backbone
    after = shipped.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    # the parts are shared, not copied, and the ablated model carries no backbone weights
    assert ablated.dpt_query is shipped.dpt_query and ablated.update_block is shipped.update_block
    assert not any(k.startswith("backbone.") for k in ablated.state_dict())


def test_a_model_without_a_backbone_has_no_taps_to_zero():
    from daflow_vfx.estimators import load_estimator
    from daflow_vfx.model.daflow import daflow_compact_cnn

    with pytest.raises(ModelError, match="no diffusion backbone"):
        with_zeroed_taps(daflow_compact_cnn())
    with pytest.raises(UsageError, match="no taps to zero"):
        zeroed_estimator(load_estimator("daflow-compact-cnn"))
    with pytest.raises(UsageError, match="no taps to zero"):
        zeroed_estimator(load_estimator("dis"))


def test_the_zeroed_estimator_runs_the_same_path():
    from daflow_vfx.estimators import load_estimator

    est = load_estimator("daflow-compact")
    zeroed = zeroed_estimator(est)
    assert (zeroed.iters, zeroed.flow_init, zeroed.transform, zeroed.dtype, zeroed.stride) == (
        est.iters, est.flow_init, est.transform, est.dtype, est.stride)
    assert zeroed.model is not est.model and zeroed.model.feature_encoder is est.model.feature_encoder
    assert not isinstance(est.model.backbone, ZeroTaps)


def test_run_ablation_reports_each_data_set_and_level(tmp_path):
    dev, large = _pairs(tmp_path, "dev"), _pairs(tmp_path, "large")
    result = run_ablation([dev, large], levels=("clean", "severe"), limit=1)
    assert [(r.data, r.level) for r in result.rows] == [
        ("dev", "clean"), ("dev", "severe"), ("large", "clean"), ("large", "severe")]
    assert result.prior == "dis" and result.iters >= 1
    for r in result.rows:
        assert r.pairs == 1
        assert all(np.isfinite(v) and v >= 0 for v in (r.shipped, r.zeroed, r.cnn, r.seconds))
        assert r.zeroed != r.shipped
        assert np.isfinite(r.change_pct) and np.isfinite(r.vs_cnn_pct)
    table = format_table(result.rows[:2])
    head = "| level | shipped EPE | taps zeroed EPE | change % | CNN-only EPE | DA-Flow vs CNN |"
    assert table.splitlines()[0] == head
    assert len(table.splitlines()) == 4 and "| clean |" in table and "| severe |" in table
    text = summary(result.rows[:2])
    assert "Target (zeroing raises severe EPE by at least 5 %)" in text and "the CNN-only model" in text
    assert "not measured" in summary(result.rows[:1])


def test_bad_input_fails_before_any_model_loads(tmp_path):
    data = write_shift_pairs(tmp_path)
    with pytest.raises(UsageError, match="unknown degradation level"):
        run_ablation([data], levels=("clean", "awful"))
    with pytest.raises(UsageError, match="twice"):
        run_ablation([data, str(data)], levels=("clean",))
    with pytest.raises(UsageError, match="at least one data folder"):
        run_ablation([], levels=("clean",))
    with pytest.raises(ModelError, match="unknown model"):
        run_ablation([data], model="nope", levels=("clean",))


def test_ablation_command_writes_its_section(tmp_path):
    data = _pairs(tmp_path, "pairs")
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n<!-- ablation:begin -->\nhand-written study\n<!-- ablation:end -->\n")
    res = CliRunner().invoke(main, ["bench", "ablation", "--data", str(data), "--levels", "severe",
                                    "--limit", "1", "--output", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "hand-written study" in text  # the same-budget section is not this command's
    section = text[text.index(f"<!-- {SECTION}:begin -->"):text.index(f"<!-- {SECTION}:end -->")]
    assert "Command: `daflow-vfx " in section and "### pairs (1 pairs" in section
    assert "| severe |" in section and "run took" in section


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--data", "{missing}"], 1, "no pairs.csv"),
    (["--data", "{data}", "--levels", "clean,awful"], 2, "unknown degradation level"),
    (["--data", "{data}", "--model", "nope"], 1, "unknown model"),
    (["--data", "{data}", "--model", "daflow-compact-cnn"], 2, "no taps to zero"),
    (["--data", "{data}", "--cnn", "dis"], 2, "without the diffusion branch"),
])
def test_ablation_command_errors_are_one_line(tmp_path, args, code, message):
    data = write_shift_pairs(tmp_path)
    argv = [a.format(data=data, missing=tmp_path / "missing") for a in args]
    res = CliRunner().invoke(main, ["bench", "ablation", *argv, "--output", "-"])
    assert res.exit_code == code, res.output
    assert "Error: " in res.output and message in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_shipped_column_matches_bench_accuracy(flow_dev_dir):
    # The same pairs, seeds and estimator path as `bench accuracy`, so its daflow-compact EPE.
    from daflow_vfx.bench.accuracy import run_accuracy

    rows, _ = run_accuracy(flow_dev_dir, models=("daflow-compact",), levels=("severe",), limit=1)
    result = run_ablation([flow_dev_dir], levels=("severe",), limit=1)
    assert result.rows[0].shipped == pytest.approx(rows[0].epe, abs=1e-6)
