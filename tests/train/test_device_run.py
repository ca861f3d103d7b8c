"""The prepared device run's pieces on the CPU: shards, the choice of start weights, time budgets,
the whole run with a tiny config, and `train import` bringing its files back."""

import json

import pytest
import torch
from click.testing import CliRunner

from daflow_vfx.errors import ConfigError, WeightsError
from daflow_vfx.model.daflow import daflow_compact_cnn
from daflow_vfx.model.weights import get_entry, load_weights, read_metadata, save_weights
from daflow_vfx.train.config import StageConfig, TrainConfig
from daflow_vfx.train.device_run import choose_init
from daflow_vfx.train.shards import find_shards, merge_shards, shard_state, write_shards
from daflow_vfx.train.steps import lr_factor


def test_shards_respect_the_cap_and_merge_back_exactly(tmp_path):
    torch.manual_seed(0)
    net = daflow_compact_cnn()
    cap = 2 * 2**20
    paths = write_shards(net, tmp_path, "cnn", dtype=torch.float16, metadata={"step": 7}, max_bytes=cap)
    assert len(paths) > 1
    # The header is small beside the cap: every file stays under the device's 16 MiB rule scaled down.
    assert all(p.stat().st_size <= cap + 64 * 1024 for p in paths)
    assert read_metadata(paths[0])["step"] == "7" and read_metadata(paths[-1])["dtype"] == "float16"
    out = tmp_path / "merged.safetensors"
    digest = merge_shards(tmp_path, "cnn", out, model="daflow-compact-cnn", extra_metadata={"note": "x"})
    fresh = daflow_compact_cnn()
    assert load_weights(fresh, out, expected_sha256=digest) == digest
    for k, v in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v.half().float()), k
    assert read_metadata(out)["note"] == "x"


def test_fewer_shards_replace_an_earlier_larger_set(tmp_path):
    net = daflow_compact_cnn()
    write_shards(net, tmp_path, "cnn", dtype=torch.float32, metadata={}, max_bytes=2 * 2**20)
    write_shards(net, tmp_path, "cnn", dtype=torch.float16, metadata={}, max_bytes=8 * 2**20)
    assert len(find_shards(tmp_path, "cnn")) == len(list(tmp_path.glob("cnn-*.safetensors")))


def test_incomplete_or_missing_shards_are_named(tmp_path):
    net = daflow_compact_cnn()
    paths = write_shards(net, tmp_path, "cnn", dtype=torch.float16, metadata={}, max_bytes=2**20)
    paths[1].unlink()
    with pytest.raises(WeightsError, match="incomplete"):
        find_shards(tmp_path, "cnn")
    with pytest.raises(WeightsError, match="no other-NNNNN"):
        find_shards(tmp_path, "other")
    with pytest.raises(WeightsError, match="over the shard cap"):
        shard_state({"w": torch.zeros(1000)}, max_bytes=100)


def test_a_set_of_another_variant_fails_strictly(tmp_path):
    write_shards(daflow_compact_cnn(), tmp_path, "cnn", dtype=torch.float16, metadata={})
    with pytest.raises(WeightsError, match="do not match the model"):
        merge_shards(tmp_path, "cnn", tmp_path / "x.safetensors", model="daflow-compact")


def test_the_committed_weights_win_and_count_their_runs(tmp_path):
    committed = tmp_path / "committed.safetensors"
    assert choose_init(committed, "shipped.safetensors").path == "shipped.safetensors"
    assert choose_init(None, None).path is None
    save_weights(daflow_compact_cnn(), committed, metadata={"device_runs": 3, "device_windows": 4800})
    choice = choose_init(committed, "shipped.safetensors")
    assert (choice.path, choice.device_runs, choice.windows) == (str(committed), 3, 4800)


def test_a_time_budget_drives_the_schedule():
    sc = StageConfig(steps=0, minutes=2.0, warmup=10)
    assert lr_factor(0, sc, elapsed_minutes=0.0) == pytest.approx(0.1)
    assert lr_factor(50, sc, elapsed_minutes=1.0) == pytest.approx(0.55)
    assert lr_factor(50, sc, elapsed_minutes=2.5) == pytest.approx(0.1)


def test_a_binary_config_is_one_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(ConfigError, match="not a text file"):
        TrainConfig.from_yaml(p)


def test_the_prepared_configs_train_prior_free_on_the_device():
    from pathlib import Path

    root = Path(__file__).parents[2] / "configs" / "compact"
    for name, model in (("gpu-noprior384x512", "daflow-compact-noprior"),
                        ("gpu-noprior384x512-cnn", "daflow-compact-cnn-noprior")):
        cfg = TrainConfig.from_yaml(root / f"{name}.yaml")
        assert (cfg.model, cfg.data, cfg.flow_init, cfg.device) == (model, "device", None, "cuda")
        # Both runs share one device window: their stage budgets fit inside the call's minutes.
        total = sum(s.minutes or 0 for s in (cfg.stage1, cfg.stage2))
        assert 0 < total <= 7.0
        assert (Path(__file__).parents[2] / cfg.init_weights).is_file()


TINY = """model: {model}
init_weights: {init}
device: cpu
data: device
seed: 5
crop: [32, 48]
batch_size: 1
threads: 1
iters: 1
flow_init: null
degrade: {{clean: 0.5, severe: 0.5}}
stage1: {stage1}
stage2: {{minutes: 0.02, lr: 1.0e-4, warmup: 1}}
val_every: 1000
val_samples: 3
checkpoint_minutes: 0.01
"""


@pytest.mark.slow
def test_the_whole_device_run_on_the_cpu(tmp_path, monkeypatch):
    """The run tools/device/train.sh makes, with a tiny config: shards, log, summary, then import.

    The training processes run as on the lent machine, whose image has no PyAV, OpenImageIO or
    OpenEXR: a sitecustomize on their path makes those imports fail.
    """
    import os

    from daflow_vfx.train.device_run import main as device_main

    block = tmp_path / "device-image"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\nfor name in ('OpenImageIO', 'OpenEXR', 'av'):\n    sys.modules[name] = None\n")
    path = [str(block), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))

    init = tmp_path / "init.safetensors"
    save_weights(daflow_compact_cnn(), init)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.format(model="daflow-compact-cnn-noprior", init=init, stage1="{steps: 0}"))
    out = tmp_path / "OUT"
    rc = device_main(["run", str(cfg), "--out", str(out), "--minutes", "0.5", "--device", "cpu",
                      "--bench-seconds", "0.5", "--shard-bytes", str(2 * 2**20)])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    shards = [n for n in names if n.startswith("daflow_compact_cnn_noprior-")]
    assert len(shards) >= 2 and "daflow_compact_cnn_noprior.log.jsonl" in names
    assert {"bench_train.md", "summary.json"} <= set(names) and len(names) <= 8
    assert "windows/s" in (out / "bench_train.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    run = summary["runs"][0]
    # The run continues from the variant's committed weights when there are any, as on the device.
    start = choose_init(get_entry("daflow-compact-cnn-noprior").path, str(init))
    assert summary["failed"] == [] and run["batches"] > 0 and run["device_runs"] == start.device_runs + 1
    assert run["init"] == start.path and run["seed"] == 5 + start.device_runs
    recs = [json.loads(x) for x in (out / "daflow_compact_cnn_noprior.log.jsonl").read_text().splitlines()]
    assert recs[-1]["stage"] == 2 and "val_epe" in recs[-1]

    weights = tmp_path / "weights"
    result = _import(out, "-o", str(weights))
    assert result.exit_code == 0, result.output
    merged = weights / "daflow_compact_cnn_noprior.safetensors"
    assert "sha256" in result.output and f"device runs {start.device_runs + 1}" in result.output
    meta = read_metadata(merged)
    assert meta["dtype"] == "float16" and int(meta["device_windows"]) == start.windows + run["windows"]
    # The next run continues from what was imported, with a seed it has not used.
    nxt = choose_init(merged, str(init))
    assert (nxt.path, nxt.device_runs) == (str(merged), start.device_runs + 1)


def _import(folder, *args):
    from daflow_vfx.cli import main

    return CliRunner().invoke(main, ["train", "import", str(folder), "--model", "daflow-compact-cnn-noprior",
                                     *args])


def test_import_of_a_folder_without_shards_is_one_error(tmp_path):
    result = _import(tmp_path, "-o", str(tmp_path / "w"))
    assert result.exit_code == 1 and result.output.startswith("Error:") and "shards" in result.output


def test_the_cnn_twin_starts_from_the_model_with_its_branch_cut(tmp_path):
    from daflow_vfx.model.branch_cut import cut_diffusion_branch
    from daflow_vfx.model.daflow import daflow_compact

    torch.manual_seed(1)
    full = daflow_compact()
    src = full.state_dict()
    twin = daflow_compact_cnn()
    state = cut_diffusion_branch(src, target=twin, source="x")
    twin.load_state_dict(state, strict=True)
    key = "update_block.cell.proj.weight"
    # [hidden 96 | CNN context 64 | DPT context 64 | motion]: the DPT columns alone are gone.
    assert torch.equal(state[key][:, :160], src[key][:, :160])
    assert torch.equal(state[key][:, 160:], src[key][:, 224:])
    assert torch.equal(state["feature_encoder.out.weight"], src["feature_encoder.out.weight"])
    with pytest.raises(WeightsError, match="no diffusion branch"):
        cut_diffusion_branch(twin.state_dict(), target=twin, source="cnn.safetensors")
    with pytest.raises(WeightsError, match="CNN-only target"):
        cut_diffusion_branch(src, target=full, source="x")
    # Through the training config: init_cut_branch starts the twin from a DA-Flow file.
    init = tmp_path / "full.safetensors"
    save_weights(full, init)
    from daflow_vfx.train.loop import _load_init

    fresh = daflow_compact_cnn()
    cfg = TrainConfig(model="daflow-compact-cnn-noprior", init_weights=str(init), init_cut_branch=True)
    _load_init(fresh, cfg, resuming=False)
    assert torch.equal(fresh.state_dict()[key], state[key])


@pytest.mark.parametrize(("model", "stage"), [("daflow-compact-noprior", 1), ("daflow-compact-noprior", 2),
                                              ("daflow-compact-cnn-noprior", 2)])
def test_a_bf16_autocast_step_on_device_windows(model, stage):
    """The device run trains under bf16 autocast: both stages give finite float32 losses and move weights."""
    from daflow_vfx.model.weights import build_model, get_entry
    from daflow_vfx.train.steps import make_optimizer, train_step
    from daflow_vfx.train.synth_torch import DeviceWindowGenerator

    net, _, _ = build_model(model, allow_random=True)
    net.train()
    cfg = TrainConfig(model=model, crop=(32, 48), batch_size=1, iters=1, autocast="bfloat16", data="device")
    if net.backbone is not None:
        net.backbone.requires_grad_(True)
    opt = make_optimizer(net, cfg, stage)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    host = torch.Generator().manual_seed(0)
    batch = DeviceWindowGenerator(size=(32, 48), batch_size=1, device="cpu", seed=0)(0)
    loss, _ = train_step(net, opt, batch, stage=stage, transform=get_entry(model).transform, cfg=cfg,
                         nframes=3, host_gen=host, noise_gen=host)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.slow
def test_out_of_device_memory_halves_the_batch_and_goes_on(tmp_path, monkeypatch):
    import daflow_vfx.train.loop as loop
    from daflow_vfx.train.device_run import _worker

    real, batches = loop.train, []

    def first_call_runs_out(cfg, **kw):
        batches.append(cfg.batch_size)
        if len(batches) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(cfg, **kw)

    monkeypatch.setattr(loop, "train", first_call_runs_out)
    init = tmp_path / "init.safetensors"
    save_weights(daflow_compact_cnn(), init)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.format(model="daflow-compact-cnn-noprior", init=init, stage1="{steps: 0}")
                   .replace("batch_size: 1", "batch_size: 2"))
    summary = _worker(str(cfg), tmp_path, 0.3, "cpu", 2 * 2**20)
    assert batches == [2, 1] and summary["batches"] > 0
    assert find_shards(tmp_path, "daflow_compact_cnn_noprior")


def test_a_failing_bench_leaves_its_error_and_the_training_goes_on(tmp_path):
    from daflow_vfx.train.device_run import _bench_apart

    _bench_apart(str(tmp_path / "missing.yaml"), tmp_path, 0.1, "cpu")
    text = (tmp_path / "bench_train.md").read_text()
    assert text.startswith("bench train failed (1)") and "missing.yaml" in text
