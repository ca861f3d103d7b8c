"""Shared fixtures: the flow-dev data set, devices, dtypes and their tolerances."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Comparison tolerance per compute dtype (absolute, in the unit of the compared values).
TOLERANCES = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 5e-2}


def tol(dtype: str) -> float:
    """Absolute tolerance for comparing results computed in ``dtype``."""
    return TOLERANCES[dtype]


@functools.cache
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Decided only for tests that ask for a device, so the rest of the suite never imports torch.
    if "device" in metafunc.fixturenames:
        params = [pytest.param("cpu", id="cpu")]
        if cuda_available():
            params.append(pytest.param("cuda", id="cuda", marks=pytest.mark.gpu))
        metafunc.parametrize("device", params)


@pytest.fixture(params=["float32", "bfloat16"])
def dtype(request: pytest.FixtureRequest) -> str:
    """Compute dtypes a model test should hold up in; pair with ``tol(dtype)``."""
    return request.param


@pytest.fixture(name="tol")
def tol_fixture():
    """The :func:`tol` helper, for tests that prefer a fixture to an import."""
    return tol


@pytest.fixture(scope="session")
def flow_dev_dir() -> Path:
    """``../shared/data/flow-dev`` beside the repository (or ``$DAFLOW_FLOW_DEV``); skips when absent."""
    env = os.environ.get("DAFLOW_FLOW_DEV")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "flow-dev"
    if not path.is_dir():
        pytest.skip(f"flow-dev data not found at {path} (set DAFLOW_FLOW_DEV)")
    return path
