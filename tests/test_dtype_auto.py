"""``--dtype auto``: bfloat16 where the device has it in hardware, float32 elsewhere."""

import pytest
import torch

from daflow_vfx import numerics
from daflow_vfx.devices import check_dtype
from daflow_vfx.errors import UsageError
from daflow_vfx.numerics import native_bfloat16, resolve_dtype


def _cpu_bf16(monkeypatch, present: bool) -> None:
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda present=present: present, raising=False)


@pytest.mark.parametrize("present", [True, False])
def test_auto_follows_the_cpus_bf16_hardware(monkeypatch, present):
    _cpu_bf16(monkeypatch, present)
    assert native_bfloat16("cpu") is present
    assert resolve_dtype("auto", "cpu") == ("bfloat16" if present else "float32")


def test_a_named_dtype_is_kept_whatever_the_hardware(monkeypatch):
    _cpu_bf16(monkeypatch, True)
    for dtype in ("float32", "float16", "bfloat16"):
        assert resolve_dtype(dtype, "cpu") == dtype


def test_cuda_without_cuda_is_not_native():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    assert not native_bfloat16("cuda:0")
    assert resolve_dtype("auto", "cuda") == "float32"


def test_auto_is_a_dtype_choice_and_nonsense_is_one_error():
    assert check_dtype("auto") == "auto"
    with pytest.raises(UsageError, match="auto, float32"):
        check_dtype("float64")


@pytest.mark.parametrize("present", [True, False])
def test_the_engine_and_the_estimator_run_the_resolved_dtype(monkeypatch, present):
    """The engine records the concrete dtype (render's sidecar shows what ran); with native bf16 the
    CPU estimator also puts its convolutions in channels_last."""
    from daflow_vfx.engine import FlowEngine

    _cpu_bf16(monkeypatch, present)
    engine = FlowEngine("daflow-compact-noprior", device="cpu", dtype="auto", weights=None)
    expected = "bfloat16" if present else "float32"
    assert engine.dtype == expected
    est = engine.estimator
    assert est.dtype == getattr(torch, expected)
    assert est.channels_last is present
    conv = next(m for m in est.model.feature_encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is present
    assert numerics.AUTO_DTYPE in numerics.DTYPE_CHOICES


def test_a_built_estimator_keeps_its_own_precision_under_auto():
    from daflow_vfx.engine import FlowEngine
    from daflow_vfx.registry import load_estimator

    est = load_estimator("daflow-compact-noprior", device="cpu", dtype="float32")
    assert FlowEngine(est, device="cpu", dtype="auto").dtype == "float32"
    assert FlowEngine(load_estimator("dis"), device="cpu", dtype="auto").dtype == "float32"


def test_classical_models_record_float32_whatever_the_hardware(monkeypatch):
    """DIS never computes in bf16: an auto render with it records float32 on any machine, so a farm of
    mixed CPUs resumes its outputs instead of redoing them; a learned model records what ran."""
    from daflow_vfx.devices import dtype_that_runs
    from daflow_vfx.engine import FlowEngine

    for present in (True, False):
        _cpu_bf16(monkeypatch, present)
        assert FlowEngine("dis", device="cpu", dtype="auto").dtype == "float32"
        assert dtype_that_runs("dis", "auto", "cpu") == "float32"
        learned = "bfloat16" if present else "float32"
        assert dtype_that_runs("daflow-compact-noprior", "auto", "cpu") == learned
        assert dtype_that_runs("daflow-compact-noprior", "float16", "cpu") == "float16"
