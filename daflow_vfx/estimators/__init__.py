"""Flow estimators behind one contract (:mod:`.base`); the list of models is :mod:`daflow_vfx.registry`.

The registry's look-ups are re-exported here because the engine and the jobs reach models through
this package: ``load_estimator("dis")``, ``model_window(name)`` and the rest are the registry's own.
"""

from __future__ import annotations

from daflow_vfx.estimators.base import FlowEstimator, WindowFlows
from daflow_vfx.registry import (
    DEFAULT_MODEL,
    ModelEntry,
    ModelInfo,
    available_models,
    load_estimator,
    model_is_cpu_only,
    model_names,
    model_window,
    register,
    resolve_default_model,
)

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
