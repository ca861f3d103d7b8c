"""The registry of flow estimators: one :class:`ModelEntry` per name users can pass to ``--model``.

Listing models imports nothing heavy: each entry names its factory as ``"module:function"`` and the
module is imported only when that model is loaded. To add a model, add one entry to ``_ENTRIES``
(or call :func:`register`), with a factory that accepts the keyword arguments of
:func:`load_estimator` and returns a :class:`~daflow_vfx.estimators.base.FlowEstimator`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from daflow_vfx.errors import ModelError
from daflow_vfx.estimators.base import FlowEstimator, ModelInfo, WindowFlows

__all__ = [
    "DEFAULT_MODEL",
    "FlowEstimator",
    "ModelEntry",
    "ModelInfo",
    "WindowFlows",
    "available_models",
    "load_estimator",
    "model_is_cpu_only",
    "model_names",
    "model_window",
    "register",
    "resolve_default_model",
]

DEFAULT_MODEL = "default"  # the alias users type; resolve_default_model() says what it means today


def _always() -> bool:
    return True


def _shipped(file: str) -> bool:
    # A plain path check: `daflow-vfx models` must not import torch.
    from pathlib import Path

    return (Path(__file__).resolve().parent.parent / "weights" / file).is_file()


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """How to build one estimator, and what ``daflow-vfx models`` says about it."""

    name: str
    description: str
    factory: str  # "module:function"; called with device, dtype, weights, iters, allow_random
    params: int | None = None  # learnable parameters, None for classical methods
    window: int = 2  # frames per window, known before loading (the render checks those frames' headers)
    cpu_only: bool = False  # True: never uses a GPU, so device "auto" means cpu without asking torch
    weights_present: Callable[[], bool] = field(default=_always)  # False -> `models` says weights are missing

    def load(self) -> Callable[..., FlowEstimator]:
        module_name, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module_name), attr)


_ENTRIES: dict[str, ModelEntry] = {
    "dis": ModelEntry(
        name="dis",
        description="OpenCV DIS optical flow (medium preset): fast classical CPU baseline",
        factory="daflow_vfx.estimators.classical:make_dis",
        cpu_only=True,
    ),
    "farneback": ModelEntry(
        name="farneback",
        description="OpenCV Farneback dense flow: classical baseline for benchmarks",
        factory="daflow_vfx.estimators.classical:make_farneback",
        cpu_only=True,
    ),
    "deepflow": ModelEntry(
        name="deepflow",
        description="OpenCV contrib DeepFlow: slow classical baseline for benchmarks",
        factory="daflow_vfx.estimators.classical:make_deepflow",
        cpu_only=True,
    ),
    "daflow-compact": ModelEntry(
        name="daflow-compact",
        description="DA-Flow compact: lifted MM-DiT on pixel patches + CNN + RAFT refinement (CPU-sized)",
        factory="daflow_vfx.estimators.daflow:make_daflow_compact",
        params=12_631_427,
        window=3,
        weights_present=lambda: _shipped("daflow_compact.safetensors"),
    ),
    "daflow-compact-cnn": ModelEntry(
        name="daflow-compact-cnn",
        description="ablation of daflow-compact without the diffusion branch (CNN + refinement only)",
        factory="daflow_vfx.estimators.daflow:make_daflow_compact_cnn",
        params=1_802_051,
        window=3,
        weights_present=lambda: _shipped("daflow_compact_cnn.safetensors"),
    ),
    "daflow-compact-noprior": ModelEntry(
        name="daflow-compact-noprior",
        description="DA-Flow compact predicting its own flow (no DIS prior): for large motion; GPU-trained",
        factory="daflow_vfx.estimators.daflow:make_daflow_compact_noprior",
        params=12_631_427,
        window=3,
        weights_present=lambda: _shipped("daflow_compact_noprior.safetensors"),
    ),
    "daflow-compact-cnn-noprior": ModelEntry(
        name="daflow-compact-cnn-noprior",
        description="ablation of daflow-compact-noprior without the diffusion branch (same GPU budget)",
        factory="daflow_vfx.estimators.daflow:make_daflow_compact_cnn_noprior",
        params=1_802_051,
        window=3,
        weights_present=lambda: _shipped("daflow_compact_cnn_noprior.safetensors"),
    ),
    "daflow-full": ModelEntry(
        name="daflow-full",
        description="DA-Flow full (DiT4SR / SD3.5-medium dims); weights only from a local folder (--weights)",
        factory="daflow_vfx.estimators.daflow:make_daflow_full",
        params=2_352_014_246,
        window=3,
        weights_present=lambda: False,
    ),
}


def register(entry: ModelEntry) -> None:
    """Add (or replace) a model under ``entry.name``."""
    _ENTRIES[entry.name] = entry


def resolve_default_model() -> str:
    """The model ``--model default`` runs: the shipped ``daflow-compact`` weights.

    They are more accurate than DIS on flow-dev at every degradation level (docs/benchmarks.md, the
    weights' model card); ``dis`` stays one ``--model dis`` away for speed (about 50x faster on CPU).
    """
    return "daflow-compact"


def model_names() -> list[str]:
    """Every name ``--model`` accepts, ``default`` first."""
    return [DEFAULT_MODEL, *sorted(_ENTRIES)]


def _entry(name: str) -> ModelEntry:
    resolved = resolve_default_model() if name == DEFAULT_MODEL else name
    try:
        return _ENTRIES[resolved]
    except KeyError:
        known = ", ".join(model_names())
        raise ModelError(f"unknown model {name!r}; choose one of: {known} (see `daflow-vfx models`)") \
            from None


def load_estimator(
    name: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    weights: str | None = None,
    iters: int | None = None,
    allow_random: bool = False,
) -> FlowEstimator:
    """Build the estimator registered under ``name`` (``"default"`` resolves first)."""
    factory = _entry(name).load()
    return factory(device=device, dtype=dtype, weights=weights, iters=iters, allow_random=allow_random)


def model_window(name: str) -> int:
    """Frames per window of ``name`` without loading the model (ModelError for unknown names)."""
    return _entry(name).window


def model_is_cpu_only(name: str) -> bool:
    """True for models that never run on a GPU (the classical OpenCV methods)."""
    return _entry(name).cpu_only


def available_models() -> list[ModelInfo]:
    """One :class:`ModelInfo` per registered model, sorted by name."""
    return [
        ModelInfo(name=e.name, description=e.description, params=e.params,
                  weights_present=e.weights_present())
        for e in sorted(_ENTRIES.values(), key=lambda e: e.name)
    ]
