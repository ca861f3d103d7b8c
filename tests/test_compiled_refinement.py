"""Issue 21, item 2 on a CPU: the opt-in compiled refinement iteration (CUDA graphs on CUDA) keeps the flow.

The graph is captured by dynamo and run through AOT autograd's decompositions (``aot_eager``): the same
capture inductor compiles, without minutes of C++ code generation on a shared two-core machine.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from daflow_vfx.engine import FlowEngine
from daflow_vfx.estimators.daflow import DAFlowEstimator
from daflow_vfx.model.weights import REGISTRY
from daflow_vfx.numerics import fixed_window
from tests.helpers import LocalEstimator, translated_frames
from tests.model.conftest import tiny_daflow


def _tiny(device: str = "cpu", **model_kw) -> DAFlowEstimator:
    torch.manual_seed(0)
    return DAFlowEstimator(model=tiny_daflow(**model_kw), transform=REGISTRY["daflow-compact"].transform,
                           name="daflow-tiny", weights_sha256=None, iters=4, device=device)


@pytest.mark.filterwarnings("ignore:.*script_method.*:DeprecationWarning")
@pytest.mark.parametrize("cell", ["gru", "convnext"])
def test_compiled_refinement_keeps_the_flow(cell) -> None:
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    estimator = _tiny(cell=cell)
    first = fixed_window(height=32, width=48)  # [3, H, W, 3]
    second = translated_frames(3, 32, 48, dx=2, dy=-1)
    before = [estimator.estimate(w) for w in (first, second)]
    assert estimator.enable_refinement_compile(backend="aot_eager")
    compiled = estimator.model.compiled_step
    assert compiled is not None
    after = [estimator.estimate(first)]
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1  # the iteration really was captured
    after.append(estimator.estimate(second))
    assert counters["stats"]["unique_graphs"] == graphs  # another window of the size: no recompiling
    for a, b in zip(before, after, strict=True):
        # the same operations, captured and decomposed: only float32 round-off may differ
        np.testing.assert_allclose(b.forward, a.forward, atol=1e-4)
        np.testing.assert_allclose(b.backward, a.backward, atol=1e-4)
        np.testing.assert_allclose(b.confidence_forward, a.confidence_forward, atol=1e-5)
    assert estimator.enable_refinement_compile(backend="aot_eager")  # again: the same compiled step
    assert estimator.model.compiled_step is compiled
    # training needs every iteration's gradients: with autograd on, refine runs the eager iteration
    model = estimator.model
    x = torch.from_numpy(first).permute(0, 3, 1, 2)[None] * 2 - 1  # [1, 3, 3, H, W]
    with torch.enable_grad():
        flow = model(x, iters=2).flow
    assert flow.requires_grad


def test_engine_option_and_estimators_without_a_loop(caplog) -> None:
    estimator = _tiny()
    assert estimator.model.compiled_step is None  # off by default
    FlowEngine(estimator, compile_refinement=True)
    assert estimator.model.compiled_step is not None  # compiled on its first call
    with caplog.at_level(logging.WARNING, logger="daflow_vfx"):
        FlowEngine(LocalEstimator(), compile_refinement=True)
    assert "--compile-refinement is ignored" in caplog.text


@pytest.mark.slow  # inductor generates and builds C++ (about 30 s on two busy cores) or CUDA kernels
@pytest.mark.filterwarnings("ignore:.*script_method.*:DeprecationWarning")
def test_inductor_compiled_refinement_on_each_device(device) -> None:
    """What --compile-refinement runs: inductor, with CUDA graphs (mode reduce-overhead) on CUDA."""
    import shutil

    import torch._dynamo

    if device == "cpu" and shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("inductor needs a C++ compiler on the CPU")
    torch._dynamo.reset()
    estimator = _tiny(device, cell="convnext")
    frames = fixed_window(height=32, width=48)
    before = estimator.estimate(frames)
    estimator.enable_refinement_compile()
    for _ in range(2):  # on CUDA: the graphs are recorded, then replayed
        after = estimator.estimate(frames)
        np.testing.assert_allclose(after.forward, before.forward, atol=1e-3)  # TF32 on CUDA
