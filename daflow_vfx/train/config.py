"""The training recipe (``TrainConfig``) as read from a YAML file, validated on load."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..registry import FLOW_INITS

# Where training windows are made: "cpu" renders them with OpenCV in DataLoader workers (the
# reference generator, with PyAV's real codecs); "device" makes whole batches as torch ops on the
# training device (train/synth_torch.py), so a GPU never waits for CPU workers.
DATA_SOURCES = ("cpu", "device")
AUTOCAST_DTYPES = ("bfloat16", "float16")


@dataclass
class StageConfig:
    steps: int = 0
    lr: float = 4e-4
    warmup: int = 100
    backbone_lr_mult: float = 0.1  # stage 2 only: 0 freezes the backbone
    # A time budget instead of a step count: the stage runs this long and its learning-rate schedule
    # follows the elapsed share of it (a fixed-length device window trains for minutes, not steps).
    # ``steps`` still caps the stage when both are given.
    minutes: float | None = None


@dataclass
class TrainConfig:
    model: str = "daflow-compact"
    out_dir: str = "runs/compact"
    seed: int = 0
    crop: tuple[int, int] = (128, 160)
    num_frames: int = 3
    pair_window_fraction: float = 0.2  # batches trained on 2-frame windows (sequence ends, pairwise use)
    batch_size: int = 4
    workers: int = 1
    threads: int = 2
    degrade: dict[str, float] = field(
        default_factory=lambda: {"clean": 0.15, "mild": 0.3, "severe": 0.35, "extreme": 0.2}
    )
    iters: int = 8
    gamma: float = 0.85
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    stage1: StageConfig = field(default_factory=lambda: StageConfig(steps=500, lr=3e-4))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(steps=20000, lr=4e-4))
    val_every: int = 250
    val_samples: int = 16
    # A second, larger validation size (h, w): does the model hold up above its training crop?
    val_large: tuple[int, int] | None = None
    val_large_samples: int = 4
    checkpoint_minutes: float = 5.0
    init_weights: str | None = None
    # init_weights are a DA-Flow model's and this model is its CNN-only twin: start from them with
    # the diffusion branch cut off (model/branch_cut.py), so an ablation shares the model's history.
    init_cut_branch: bool = False
    init_backbone: str | None = (
        None  # safetensors whose backbone.* keys start the backbone (e.g. a stage-1 run)
    )
    max_minutes: float | None = None
    # "dis": the model refines OpenCV DIS's flow (a classical prior, see registry.FLOW_INITS);
    # None: the model predicts its own flow from zero, as RAFT and the DA-Flow paper do.
    flow_init: str | None = None
    # Share of textures taken from the bundled photographs (the rest are procedural); validation
    # keeps the dataset default so runs with different shares stay comparable.
    photo_fraction: float = 0.4
    # Share of layers (background included) that stand still; validation keeps the dataset default (0)
    static_fraction: float = 0.0
    # Largest layer motion in px per frame; None: the generator's default for the crop width.
    max_motion: float | None = None
    # "cpu", "cuda", "cuda:1", ...: where the model trains.
    device: str = "cpu"
    # Where the training windows are made (DATA_SOURCES). Validation always uses the CPU reference.
    data: str = "cpu"
    # data: device only. Batches made per generator call, then served one slice at a time: a call's
    # host work (parameter draws, kernel launches) hardly grows with its batch, and on the H200 it
    # left the GPU 79 % idle at batch 8 (docs/benchmarks.md, train-cuda).
    data_chunk: int = 1
    # Mixed precision for the forward pass (None: float32). Losses are computed in float32.
    autocast: str | None = None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the training config ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file; give a YAML training config") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a training config is a YAML mapping of keys to values")
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kw = dict(raw)
        for stage in ("stage1", "stage2"):
            if stage in kw:
                sk = {f.name for f in fields(StageConfig)}
                bad = sorted(set(kw[stage]) - sk)
                if bad:
                    raise ConfigError(f"{source}: unknown keys in {stage}: {', '.join(bad)}")
                kw[stage] = StageConfig(**kw[stage])
                minutes = kw[stage].minutes
                if minutes is not None and (isinstance(minutes, bool) or not minutes > 0):
                    raise ConfigError(f"{source}: {stage}.minutes {minutes!r}; use a positive number")
        for key in ("crop", "val_large"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if kw.get("flow_init") not in (None, *FLOW_INITS):
            raise ConfigError(f"{source}: flow_init {kw['flow_init']!r}; use one of {', '.join(FLOW_INITS)}")
        for key in ("photo_fraction", "static_fraction"):
            share = kw.get(key, getattr(cls, key))
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
                raise ConfigError(f"{source}: {key} {share!r}; use a share from 0 to 1")
        if kw.get("data", cls.data) not in DATA_SOURCES:
            raise ConfigError(f"{source}: data {kw['data']!r}; use one of {', '.join(DATA_SOURCES)}")
        chunk = kw.get("data_chunk", cls.data_chunk)
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ConfigError(f"{source}: data_chunk {chunk!r}; use a whole number of batches, 1 or more")
        if kw.get("autocast") not in (None, *AUTOCAST_DTYPES):
            raise ConfigError(
                f"{source}: autocast {kw['autocast']!r}; use one of {', '.join(AUTOCAST_DTYPES)} or null"
            )
        if kw.get("data") == "device" and kw.get("flow_init") is not None:
            # DIS runs on the host, per pair: it would put the CPU back on the device path.
            raise ConfigError(f"{source}: data: device trains prior-free models; set flow_init: null")
        dev = kw.get("device", cls.device)
        try:
            torch.device(dev)
        except (RuntimeError, TypeError):
            raise ConfigError(f"{source}: device {dev!r}; use cpu, cuda or cuda:N") from None
        if kw.get("init_weights"):
            kw["init_weights"] = shipped_weights_path(kw["init_weights"])
        return cls(**kw)


# The recipe configs: inside an installed package (pyproject: daflow_vfx.configs is the checkout's
# configs/), or beside the package in a checkout.
_PACKAGE = Path(__file__).resolve().parent.parent
RECIPE_FOLDERS = (_PACKAGE / "configs", _PACKAGE.parent / "configs")


def find_config(path: str | os.PathLike) -> Path:
    """``path`` as given when it exists; otherwise, for a relative path, the packaged recipe of that name
    (``configs/compact/x.yaml`` or ``compact/x.yaml``), so the README's commands also run from a wheel.
    A path found nowhere is returned as given: reading it is then the error that names it."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts
    found = [folder.joinpath(*parts) for folder in RECIPE_FOLDERS if parts]
    return next((p for p in found if p.is_file()), given)


def shipped_weights_path(value: str) -> str:
    """A recipe's ``init_weights: daflow_vfx/weights/<file>`` (the shipped weights, named from a checkout's
    root) as the installed file where that relative path does not exist here; any other value as given."""
    from ..registry import WEIGHTS_DIR

    given = Path(value)
    if given.exists() or given.parts[:2] != ("daflow_vfx", "weights") or len(given.parts) < 3:
        return value
    installed = WEIGHTS_DIR.joinpath(*given.parts[2:])
    return str(installed) if installed.is_file() else value
