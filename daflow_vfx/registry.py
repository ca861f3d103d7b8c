"""The one list of flow estimators: every name ``--model`` accepts, and how to build it.

Each :class:`ModelEntry` holds the estimator factory, the description and parameter count that
``daflow-vfx models`` prints, the window and whether the model is CPU-only; a learned model
(:class:`NetworkEntry`) adds its network factory and its weights spec: the shipped file and its
sha256, the refinement iterations the weights were evaluated with, the prior they refine
(``flow_init``) and the input transform. ``daflow-vfx models``, the ``--model`` and ``--iters`` help
texts and the error listing of available models are all generated from this list.

Factories are ``"module:function"`` strings, imported only when a model is built, so listing models
(``daflow-vfx models``, ``--help``) never imports torch or OpenCV. ``tests/test_registry.py`` builds
every network and checks its parameter count against the entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daflow_vfx.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only: this module imports nothing heavy
    from torch import nn

    from daflow_vfx.estimators.base import FlowEstimator

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_VARIANT",
    "ENTRIES",
    "FLOW_INITS",
    "NETWORKS",
    "WEIGHTS_DIR",
    "InputTransform",
    "ModelEntry",
    "ModelInfo",
    "NetworkEntry",
    "available_models",
    "default_iters",
    "entry",
    "load_estimator",
    "model_is_cpu_only",
    "model_names",
    "model_window",
    "network_entry",
    "network_names",
    "register",
    "resolve_default_model",
    "runnable_names",
]

# Shipped weights files live here, inside the package (a wheel installs them with the code).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

DEFAULT_MODEL = "default"  # the alias users type; resolve_default_model() says what it means today

# What `--model default` runs. daflow-compact: its shipped weights are more accurate than DIS on flow-dev
# at every degradation level (docs/benchmarks.md, weights/MODEL_CARD.md), and `--model dis` stays one
# flag away for speed (about 50x faster on the CPU). A prior-free variant takes over only under the ship
# rule fixed in DEVELOPERS.md (mean EPE better on both flow-dev and flow-large).
DEFAULT_VARIANT = "daflow-compact"

# Initial flows a variant can be trained to refine. "dis": OpenCV DIS (medium) on the same frames,
# computed at the boundary (estimators/daflow.py, train/data.py) and passed as ``flow_init``; the
# network then learns a correction to a classical estimate instead of flow from nothing.
FLOW_INITS = ("dis",)


def _import(factory: str) -> Callable[..., Any]:
    module_name, _, attr = factory.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@dataclass(frozen=True)
class InputTransform:
    """Display-referred [0, 1] RGB to the network's input: ``(x - mean) / std``.

    Kept outside ``forward()`` so colour handling lives at the boundary (see ``daflow_vfx.color``).
    Plain arithmetic, so it works on tensors without this module importing torch.
    """

    mean: float = 0.5
    std: float = 0.5

    def __call__(self, x: Any) -> Any:
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class ModelInfo:
    """One line of ``daflow-vfx models``."""

    name: str
    description: str
    params: int | None
    weights_present: bool


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One ``--model`` name: how to build its estimator and what ``daflow-vfx models`` says about it."""

    name: str
    description: str
    # "module:function" returning a FlowEstimator; called with name= and load_estimator's keywords
    estimator: str
    params: int | None = None  # learnable parameters, measured from the built network; None: classical
    window: int = 2  # frames per window, known before loading (a render checks those frames' headers)
    cpu_only: bool = False  # True: never uses a GPU, so device "auto" means cpu without asking torch

    def weights_present(self) -> bool:
        """False when `daflow-vfx models` should say the weights are missing (classical: always True)."""
        return True

    def load(self) -> Callable[..., FlowEstimator]:
        return _import(self.estimator)


@dataclass(frozen=True, kw_only=True)
class NetworkEntry(ModelEntry):
    """A learned model: its network factory and its weights spec."""

    estimator: str = "daflow_vfx.estimators.daflow:make_daflow"
    network: str  # "module:function" returning the torch module, imported only when built
    params: int  # what param_count() of network() gives; tests/test_registry.py checks it
    window: int = 3
    backbone: bool = True  # has the lifted MM-DiT (the diffusion branch); False: a CNN-only ablation
    # the weights spec
    file: str | None  # relative to WEIGHTS_DIR; None when weights only come from a path the user gives
    sha256: str | None  # of the shipped file; None until a file is committed
    iters: int  # refinement iterations when the caller gives none: what the weights were evaluated with
    flow_init: str | None = None  # one of FLOW_INITS when the weights refine an initial flow
    transform: InputTransform = InputTransform()

    @property
    def path(self) -> Path | None:
        return None if self.file is None else WEIGHTS_DIR / self.file

    def weights_present(self) -> bool:
        # a plain path check: `daflow-vfx models` must not import torch
        return self.path is not None and self.path.is_file()

    def build_network(self) -> nn.Module:
        """The network with freshly initialised weights (imports torch)."""
        return _import(self.network)()


_CLASSICAL = "daflow_vfx.estimators.classical:make_classical"
_COMPACT = "daflow_vfx.model.daflow:daflow_compact"
_COMPACT_CNN = "daflow_vfx.model.daflow:daflow_compact_cnn"

_ENTRIES: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(name="dis", estimator=_CLASSICAL, cpu_only=True,
                   description="OpenCV DIS optical flow (medium preset): fast classical CPU baseline"),
        ModelEntry(name="farneback", estimator=_CLASSICAL, cpu_only=True,
                   description="OpenCV Farneback dense flow: classical baseline for benchmarks"),
        ModelEntry(name="deepflow", estimator=_CLASSICAL, cpu_only=True,
                   description="OpenCV contrib DeepFlow: slow classical baseline for benchmarks"),
        NetworkEntry(
            name="daflow-compact", network=_COMPACT, params=12_631_427,
            description="DA-Flow compact: lifted MM-DiT on pixel patches + CNN + RAFT refinement (CPU-sized)",
            file="daflow_compact.safetensors", flow_init="dis",
            sha256="9c62b72dd5981ba1e1668b3393a7a3e2187a813d893cda0a3584223c38a69894",
            # The default model's iterations. Trained with 6 and refining DIS, these weights are most
            # accurate with few iterations (flow-dev EPE clean / severe, `daflow-vfx bench accuracy --iters
            # N`; session-4 weights: 2 -> 2.12 / 2.97, 4 -> 2.15 / 2.93; session-3 weights: 2 -> 2.22 /
            # 3.15, 4 -> 2.27 / 3.17, 6 -> 2.30 / 3.18, 12 -> 2.44 / 3.27). 4: the better of the two on
            # degraded footage.
            iters=4,
        ),
        NetworkEntry(
            name="daflow-compact-cnn", network=_COMPACT_CNN, params=1_802_051, backbone=False,
            description="ablation of daflow-compact without the diffusion branch (CNN + refinement only)",
            file="daflow_compact_cnn.safetensors", flow_init="dis",
            # Step 900 of docs/training/configs/train_compact_cnn.yaml: the same stage-2 budget as
            # daflow-compact's session-2 step-900 checkpoint (git show 05a87cb:docs/training/checkpoints/...),
            # the same-budget comparison in docs/benchmarks.md.
            sha256="03931defbb326941d74edfe3bc6720ebb6c587f7dc36c7f8c494b45a03034726",
            iters=4,  # evaluated as daflow-compact is
        ),
        # Prior-free variants: the same networks predicting their own flow from zero, as RAFT and the
        # DA-Flow paper do. DIS fails on large motion (40 to 190 px on flow-large) and costs about 0.3 s
        # of host time per 1080p window; these are trained on a lent GPU by the prepared device run
        # (tools/device/train.sh, configs/compact/gpu-noprior384x512*.yaml), which starts from the
        # DIS-refining weights above, and each later device run continues from the committed files
        # (docs/training/*-device.jsonl). 12 iterations (RAFT's default) until their weights are
        # evaluated with fewer.
        NetworkEntry(
            name="daflow-compact-noprior", network=_COMPACT, params=12_631_427,
            description="DA-Flow compact predicting its own flow (no DIS prior); in training on lent GPUs "
            "and not yet as accurate as daflow-compact (docs/training/README.md)",
            file="daflow_compact_noprior.safetensors",
            sha256="0e0c39fccead6eba571db06a3e3a3c8a3701eb888f873701f5664d9113285a13", iters=12,
        ),
        NetworkEntry(
            name="daflow-compact-cnn-noprior", network=_COMPACT_CNN, params=1_802_051, backbone=False,
            description="ablation of daflow-compact-noprior without the diffusion branch (same GPU budget)",
            file="daflow_compact_cnn_noprior.safetensors",
            sha256="c0a185b1ac5939c0bd2f2459e9747365d846b31dc704743aad7ab33fab6c842c", iters=12,
        ),
        NetworkEntry(
            name="daflow-full", network="daflow_vfx.model.daflow:daflow_full", params=2_352_014_246,
            description="DA-Flow full (DiT4SR / SD3.5-medium dims); weights only from a local folder "
            "(--weights)",
            # no file: weights come only from a local folder; 12 iterations, RAFT's and the paper's default
            file=None, sha256=None, iters=12,
        ),
    )
}

ENTRIES: Mapping[str, ModelEntry] = _ENTRIES  # read-only to callers; register() adds


class _Networks(Mapping[str, NetworkEntry]):
    """The learned entries of the registry, live (an entry added by register() shows here too)."""

    def __getitem__(self, name: str) -> NetworkEntry:
        e = _ENTRIES[name]
        if not isinstance(e, NetworkEntry):
            raise KeyError(name)
        return e

    def __iter__(self) -> Iterator[str]:
        return (n for n, e in _ENTRIES.items() if isinstance(e, NetworkEntry))

    def __len__(self) -> int:
        return sum(1 for _ in self)


NETWORKS: Mapping[str, NetworkEntry] = _Networks()


def register(new: ModelEntry) -> None:
    """Add (or replace) a model under ``new.name``. Its factories must accept the keywords of
    :func:`load_estimator` (estimator) or none (network)."""
    _ENTRIES[new.name] = new


def resolve_default_model() -> str:
    """The model ``--model default`` runs (:data:`DEFAULT_VARIANT`, whose comment says why)."""
    return DEFAULT_VARIANT


def model_names() -> list[str]:
    """Every name ``--model`` accepts, ``default`` first."""
    return [DEFAULT_MODEL, *sorted(_ENTRIES)]


def entry(name: str) -> ModelEntry:
    """The entry of ``name`` (``"default"`` resolves first); :class:`ModelError` listing the names."""
    resolved = resolve_default_model() if name == DEFAULT_MODEL else name
    try:
        return _ENTRIES[resolved]
    except KeyError:
        known = ", ".join(model_names())
        raise ModelError(f"unknown model {name!r}; `model` is one of: {known} (see `daflow-vfx models`)",
                         param="model") from None


def network_entry(name: str) -> NetworkEntry:
    """The entry of a learned model; :class:`ModelError` for unknown and classical names."""
    found = entry(name)
    if not isinstance(found, NetworkEntry):
        learned = ", ".join(NETWORKS)
        raise ModelError(f"{found.name} is a classical method with no network; `model` is one of: {learned}",
                         param="model")
    return found


def load_estimator(name: str, *, device: str = "cpu", dtype: str = "float32", weights: str | None = None,
                   iters: int | None = None, allow_random: bool = False) -> FlowEstimator:
    """Build the estimator registered under ``name`` (``"default"`` resolves first); ``dtype`` may be
    ``auto`` (:func:`daflow_vfx.devices.dtype_that_runs`)."""
    found = entry(name)
    if dtype == "auto":
        from .devices import dtype_that_runs

        dtype = dtype_that_runs(found.name, dtype, device)
    return found.load()(name=found.name, device=device, dtype=dtype, weights=weights, iters=iters,
                        allow_random=allow_random)


def model_window(name: str) -> int:
    """Frames per window of ``name`` without loading the model (ModelError for unknown names)."""
    return entry(name).window


def model_is_cpu_only(name: str) -> bool:
    """True for models that never run on a GPU (the classical OpenCV methods)."""
    return entry(name).cpu_only


def available_models() -> list[ModelInfo]:
    """One :class:`ModelInfo` per registered model, sorted by name."""
    return [
        ModelInfo(name=e.name, description=e.description, params=e.params,
                  weights_present=e.weights_present())
        for e in sorted(_ENTRIES.values(), key=lambda e: e.name)
    ]


def default_iters() -> dict[str, int]:
    """Each learned model's refinement iterations when none are given (for help texts)."""
    return {name: e.iters for name, e in sorted(NETWORKS.items())}


def network_names(*, backbone: bool | None = None, prior_free: bool | None = None) -> list[str]:
    """Learned models, sorted; only those with (or without) a backbone or a prior when asked."""
    return sorted(n for n, e in NETWORKS.items()
                  if (backbone is None or e.backbone == backbone)
                  and (prior_free is None or (e.flow_init is None) == prior_free))


def runnable_names() -> list[str]:
    """Models that run here without local weights: learned ones with shipped weights, then the classical
    ones (what an error about missing weights offers instead)."""
    learned = [n for n, e in NETWORKS.items() if e.weights_present()]
    return learned + [n for n, e in _ENTRIES.items() if not isinstance(e, NetworkEntry)]
