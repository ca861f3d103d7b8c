"""Two-stage training loop: runs, logs, checkpoints, resumes, exports."""

import json

import pytest
import torch

from daflow_vfx.errors import ConfigError
from daflow_vfx.model.weights import load_weights, read_metadata
from daflow_vfx.train.export import export_run
from daflow_vfx.train.loop import StageConfig, TrainConfig, train


def _cfg(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path / "run"), crop=(32, 48), batch_size=1, workers=0, threads=1, iters=1,
                stage1=StageConfig(steps=2, lr=1e-4, warmup=1),
                stage2=StageConfig(steps=2, lr=1e-4, warmup=1),
                val_every=2, val_samples=1, degrade={"clean": 1.0})
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_two_stages_log_checkpoint_and_resume(tmp_path):
    report = train(_cfg(tmp_path, val_large=(48, 64), val_large_samples=1), progress=False)
    run = tmp_path / "run"
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in recs] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in recs)
    assert "val_epe" in recs[-1] and report.val_epe is not None
    # The larger validation size is logged beside the training-size one, with its zero-flow baseline.
    assert recs[-1]["val_large_epe"] > 0 and recs[-1]["val_large_zero_epe"] > 0
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ck["stage"], ck["step"]) == (2, 2)
    # Resume: more stage-2 steps continue from the checkpoint instead of starting over.
    train(_cfg(tmp_path, stage2=StageConfig(steps=3, lr=1e-4, warmup=1)), progress=False)
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in recs][-1] == (2, 3) and len(recs) == 5
    # Export: float16, strict, metadata carried over; loads into a fresh model.
    out = tmp_path / "shipped.safetensors"
    digest = export_run(run, out, model="daflow-compact")
    assert read_metadata(out)["dtype"] == "float16" and read_metadata(out)["step"] == "3"
    from daflow_vfx.model.daflow import daflow_compact

    assert load_weights(daflow_compact(), out, expected_sha256=digest) == digest


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: daflow-compact\nlearning_rate: 3\n", "unknown keys learning_rate"),
        ("flow_init: raft\n", "flow_init 'raft'"),
        ("stage2: {steps: 1, momentum: 0.9}\n", "unknown keys in stage2: momentum"),
        ("photo_fraction: 1.5\n", "photo_fraction 1.5"),
        ("static_fraction: -0.1\n", "static_fraction -0.1"),
        ("device: gpu0\n", "device 'gpu0'; use cpu, cuda or cuda:N"),
        ("data: gpu\n", "data 'gpu'"),
        ("autocast: int8\n", "autocast 'int8'"),
        ("data: device\nflow_init: dis\n", "set flow_init: null"),
        ("stage2: {minutes: 0}\n", "stage2.minutes 0"),
        ("data_chunk: 0\n", "data_chunk 0"),
        ("data_chunk: 2.5\n", "data_chunk 2.5"),
        ("- a\n- b\n", "YAML mapping"),
    ],
)
def test_config_rejects_bad_keys_and_values(tmp_path, text, message):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_yaml(p)


def test_training_on_cuda_without_cuda_is_a_config_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), device="cuda", stage1=StageConfig(steps=0))
    with pytest.raises(ConfigError, match="CUDA is not available here"):
        train(cfg, progress=False)


# Every training config in configs/ (the recipe, one per stage) and docs/training/configs/ (each session's
# run, as it ran): (path from the repository root, model, whether it runs stage 1, whether it runs stage 2).
SHIPPED_CONFIGS = [
    ("configs/compact/stage1-restoration128x160.yaml", "daflow-compact", True, False),
    ("configs/compact/stage2-dis128x160.yaml", "daflow-compact", False, True),
    ("configs/compact/stage2-dis128x160-cnn.yaml", "daflow-compact-cnn", False, True),
    ("configs/compact/stage2-dis192x256.yaml", "daflow-compact", False, True),
    ("configs/compact/stage2-dis384x512.yaml", "daflow-compact", False, True),
    ("configs/compact/gpu-noprior384x512.yaml", "daflow-compact-noprior", True, True),
    ("configs/compact/gpu-noprior384x512-cnn.yaml", "daflow-compact-cnn-noprior", False, True),
    ("docs/training/configs/train_compact.yaml", "daflow-compact", True, True),
    ("docs/training/configs/train_compact_cnn.yaml", "daflow-compact-cnn", False, True),
    ("docs/training/configs/train_compact_continue.yaml", "daflow-compact", False, True),
    ("docs/training/configs/train_compact_next.yaml", "daflow-compact", False, True),
    ("docs/training/configs/train_compact_s4.yaml", "daflow-compact", False, True),
    ("docs/training/configs/train_compact_gpu_s5.yaml", "daflow-compact", False, True),
    ("docs/training/configs/train_compact_s5.yaml", "daflow-compact", False, True),
    ("docs/training/configs/train_compact_gpu_next.yaml", "daflow-compact", False, True),
    ("docs/training/configs/train_compact_s6.yaml", "daflow-compact", False, True),
    ("docs/training/configs/train_compact_s6_crop384.yaml", "daflow-compact", False, True),
    ("docs/training/configs/train_compact_s7_crop384.yaml", "daflow-compact", False, True),
    ("docs/training/configs/train_compact_s8_static.yaml", "daflow-compact", False, True),
]


def test_every_training_config_is_checked():
    from pathlib import Path

    root = Path(__file__).parents[2]
    on_disk = {p.relative_to(root).as_posix() for folder in ("configs", "docs/training/configs")
               for p in (root / folder).rglob("*.yaml")}
    on_disk.discard("configs/render-farm.yaml")  # a render preset, not a training config
    assert on_disk == {path for path, _, _, _ in SHIPPED_CONFIGS}


@pytest.mark.parametrize("path, model, stage1, stage2", SHIPPED_CONFIGS)
def test_shipped_configs_parse(path, model, stage1, stage2):
    from pathlib import Path

    cfg = TrainConfig.from_yaml(Path(__file__).parents[2] / path)
    def runs(stage: StageConfig) -> bool:  # a stage runs for steps or for a time budget
        return stage.steps > 0 or stage.minutes is not None

    assert cfg.model == model and runs(cfg.stage1) == stage1 and runs(cfg.stage2) == stage2


@pytest.mark.slow
def test_frozen_backbone_stays_fixed_while_the_flow_trains(tmp_path):
    cfg = _cfg(tmp_path, stage1=StageConfig(steps=0), stage2=StageConfig(steps=2, lr=1e-3, warmup=1,
                                                                         backbone_lr_mult=0.0))
    torch.manual_seed(cfg.seed)
    from daflow_vfx.model.weights import build_model

    before, _, _ = build_model(cfg.model, allow_random=True)
    train(cfg, progress=False)
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    ref = before.state_dict()
    assert all(torch.equal(after[k], ref[k]) for k in ref if k.startswith("backbone."))
    assert not all(torch.equal(after[k], ref[k]) for k in ref if k.startswith("update_block."))


def test_average_weights_is_the_mean_and_strict(tmp_path):
    from daflow_vfx.errors import WeightsError
    from daflow_vfx.model.daflow import daflow_compact_cnn
    from daflow_vfx.model.weights import save_weights
    from daflow_vfx.train.export import average_weights

    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(daflow_compact_cnn())
        save_weights(nets[-1], tmp_path / f"w{seed}.safetensors",
                     metadata={"step": seed, "flow_init": "dis"})
    out = tmp_path / "soup.safetensors"
    pair = [tmp_path / "w0.safetensors", tmp_path / "w1.safetensors"]
    average_weights(pair, out, model="daflow-compact-cnn")
    soup = daflow_compact_cnn()
    load_weights(soup, out)
    a, b, m = (n.state_dict() for n in (*nets, soup))
    for k in m:
        want = ((a[k] + b[k]) / 2).half().float()  # shipped as float16
        torch.testing.assert_close(m[k], want, rtol=0, atol=0)
    meta = read_metadata(out)
    assert meta["averaged_from"] == '["w0.safetensors", "w1.safetensors"]' and "step" not in meta
    assert meta["flow_init"] == "dis" and meta["dtype"] == "float16"
    with pytest.raises(WeightsError, match="at least two"):
        average_weights([tmp_path / "w0.safetensors"], out, model="daflow-compact-cnn")
    with pytest.raises(WeightsError, match="nope.safetensors: no such weights file"):
        average_weights([tmp_path / "w0.safetensors", tmp_path / "nope.safetensors"], out,
                        model="daflow-compact-cnn")
    # a file of another variant fails its strict load, with its path named
    with pytest.raises(WeightsError, match="w0.safetensors: weights do not match the model: missing"):
        average_weights(pair, out, model="daflow-compact")


def test_the_recipe_and_the_shipped_weights_are_found_from_any_folder(tmp_path, monkeypatch):
    # what an installed package needs: `train --config configs/compact/...` and the recipes' init_weights
    # (daflow_vfx/weights/..., named from a checkout's root) resolve outside the checkout too
    from pathlib import Path

    from daflow_vfx.registry import WEIGHTS_DIR
    from daflow_vfx.train.config import find_config

    root = Path(__file__).parents[2]
    monkeypatch.chdir(tmp_path)
    for name in ("configs/compact/stage2-dis384x512.yaml", "compact/stage2-dis384x512.yaml"):
        assert find_config(name).resolve() == root / "configs" / "compact" / "stage2-dis384x512.yaml"
    assert find_config("mine.yaml") == Path("mine.yaml")  # not found: reading it names it
    cfg = TrainConfig.from_yaml(find_config("configs/compact/stage2-dis384x512.yaml"))
    if (WEIGHTS_DIR / "daflow_compact.safetensors").is_file():
        assert Path(cfg.init_weights) == WEIGHTS_DIR / "daflow_compact.safetensors"
    stage2 = TrainConfig.from_yaml(find_config("compact/stage2-dis128x160.yaml"))
    assert stage2.init_weights == "runs/compact-stage1/weights.safetensors"  # a run's path stays as given
