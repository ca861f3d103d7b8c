"""Issue 8, engine side: memory budget and automatic tiling, out-of-memory retry, threads, and the parts
of the CUDA fast path that can be checked on a CPU (channels_last, compile, attention kernel, autocast
numerics)."""

from __future__ import annotations

import copy
import inspect
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.devices import parse_memory_size, thread_limit
from daflow_vfx.engine import FlowEngine
from daflow_vfx.errors import DeviceError, UsageError
from daflow_vfx.estimators import load_estimator
from daflow_vfx.estimators.base import FlowEstimator, WindowFlows
from daflow_vfx.estimators.daflow import DAFlowEstimator, working_memory_bytes
from daflow_vfx.jobs.options import EngineOptions
from daflow_vfx.jobs.render import RenderJob, render
from daflow_vfx.model.weights import REGISTRY
from daflow_vfx.numerics import autocast_epe, fixed_window
from tests.helpers import LocalEstimator, translated_frames, write_sequence
from tests.model.conftest import tiny_daflow

TRANSFORM = REGISTRY["daflow-compact"].transform


def _tiny(*, iters: int = 2, corr_impl: str = "auto", seed: int = 0, **model_kw) -> DAFlowEstimator:
    torch.manual_seed(seed)
    return DAFlowEstimator(model=tiny_daflow(**model_kw), transform=TRANSFORM, name="daflow-tiny",
                           weights_sha256=None, iters=iters, corr_impl=corr_impl)


def _weights_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _peak_torch_bytes(fn) -> int:
    """Peak bytes held by torch's CPU allocator while ``fn`` runs, from the profiler's allocation events.

    (tracemalloc cannot see torch's allocations.) Memory allocated before ``fn`` (the weights) is not
    counted.
    """
    from torch.profiler import ProfilerActivity, profile

    try:
        from torch._C._profiler import _EventType
    except ImportError:
        pytest.skip("this torch's profiler has no allocation events")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    sizes: list[tuple[int, int]] = []

    def walk(nodes) -> None:
        for node in nodes:
            if node.tag == _EventType.Allocation:
                sizes.append((node.start_time_ns, node.extra_fields.alloc_size))  # frees are negative
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    current = peak = 0
    for _, size in sorted(sizes):
        current += size
        peak = max(peak, current)
    return peak


class Spy(FlowEstimator):
    """Delegates to ``inner``; records each call's frame size, threads, estimate and measured peak."""

    def __init__(self, inner: FlowEstimator, *, measure: bool = False) -> None:
        self.inner = inner
        self.name, self.version = inner.name, inner.version
        self.window, self.stride = inner.window, inner.stride
        self.weights_sha256 = inner.weights_sha256
        self.measure = measure
        self.calls: list[dict] = []

    def memory_estimate(self, *, frames: int, height: int, width: int) -> int | None:
        return self.inner.memory_estimate(frames=frames, height=height, width=width)

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        import cv2

        call = {"shape": frames.shape, "torch_threads": torch.get_num_threads(),
                "cv2_threads": cv2.getNumThreads()}
        call["estimate"] = self.memory_estimate(frames=frames.shape[0], height=frames.shape[1],
                                                width=frames.shape[2])
        result: list[WindowFlows] = []
        if self.measure:
            call["peak"] = _peak_torch_bytes(lambda: result.append(self.inner.estimate(frames)))
        else:
            result.append(self.inner.estimate(frames))
        self.calls.append(call)
        return result[0]


class OutOfMemoryEstimator(FlowEstimator):
    """A test double of a GPU that runs out of memory: above ``max_pixels`` per frame ``estimate()``
    raises what torch raises (``torch.cuda.OutOfMemoryError`` or a RuntimeError saying "out of
    memory"); below it, :class:`LocalEstimator`'s per-pixel flow, which tiling reproduces exactly."""

    name = "oom-double"
    version = "test"
    window = 2
    stride = 1

    def __init__(self, *, max_pixels: int, error: type[BaseException] | None = None,
                 message: str = "CUDA out of memory. Tried to allocate 2.00 GiB") -> None:
        self.max_pixels = max_pixels
        self.error = error or torch.cuda.OutOfMemoryError
        self.message = message
        self.failures = 0
        self.shapes: list[tuple[int, ...]] = []

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        self.shapes.append(frames.shape)
        if frames.shape[1] * frames.shape[2] > self.max_pixels:
            self.failures += 1
            raise self.error(self.message)
        return LocalEstimator().estimate(frames)


# ------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(("text", "size"), [
    ("8G", 8 * 2**30), ("512M", 512 * 2**20), ("1.5g", 3 * 2**29), ("8GB", 8 * 2**30), ("8GiB", 8 * 2**30),
    ("2T", 2 * 2**40), ("4096K", 4 * 2**20), (str(2**30), 2**30), (2**30, 2**30), (None, None),
])
def test_parse_memory_size(text, size) -> None:
    assert parse_memory_size(text) == size


@pytest.mark.parametrize("text", ["8Q", "G", "-1G", "", "8 G B", "1e9", "100K", "12"])
def test_parse_memory_size_rejects_bad_values(text) -> None:
    with pytest.raises(UsageError, match="max_memory"):
        parse_memory_size(text)


# ---------------------------------------------------------------------------------- memory formula


@pytest.mark.parametrize("corr_impl", ["auto", "local"])
@pytest.mark.parametrize("variant", ["gru", "convnext-capped", "cnn", "dis-prior", "dis-prior-device"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_memory_formula_bounds_the_measured_peak(variant, corr_impl, dtype) -> None:
    """Measured (torch allocations while estimate() runs, plus the weights) <= formula; and in float32
    the formula is not so loose that it would tile needlessly (<= 3x; bf16 activations take half the
    bytes the formula counts)."""
    kw = {"gru": {}, "convnext-capped": {"cell": "convnext", "max_tokens": 8}, "cnn": {"backbone": False},
          "dis-prior": {}, "dis-prior-device": {}}
    estimator = _tiny(corr_impl=corr_impl, **kw[variant])
    if variant == "dis-prior":
        estimator.flow_init = "dis"
    if variant == "dis-prior-device":
        estimator.flow_init, estimator.prior_on_device = "dis", True
    estimator.dtype = getattr(torch, dtype)
    frames = np.random.default_rng(0).random((3, 96, 128, 3), dtype=np.float32)
    estimator.estimate(frames)  # warm-up: lazy initialisation is not working memory
    measured = _peak_torch_bytes(lambda: estimator.estimate(frames)) + _weights_bytes(estimator.model)
    formula = estimator.memory_estimate(frames=3, height=96, width=128)
    assert measured <= formula
    if dtype == "float32":
        assert formula <= 3 * measured


@pytest.mark.slow  # builds the 12.6 M-parameter model
@pytest.mark.parametrize("corr_impl", ["auto", "local"])
def test_memory_formula_bounds_the_compact_model(corr_impl) -> None:
    torch.manual_seed(0)
    model = REGISTRY["daflow-compact"].build_network()
    estimator = DAFlowEstimator(model=model, transform=TRANSFORM, name="daflow-compact", weights_sha256=None,
                                iters=1, corr_impl=corr_impl)
    frames = np.random.default_rng(0).random((3, 64, 96, 3), dtype=np.float32)
    estimator.estimate(frames)
    measured = _peak_torch_bytes(lambda: estimator.estimate(frames)) + _weights_bytes(model)
    formula = estimator.memory_estimate(frames=3, height=64, width=96)
    assert measured <= formula <= 3 * measured


def test_memory_formula_grows_with_the_frame_and_switches_to_on_demand_correlation() -> None:
    model = tiny_daflow()
    small, large = (working_memory_bytes(model, frames=3, height=s, width=s) for s in (128, 256))
    assert large > 3 * (small - _weights_bytes(model))
    # above max_all_pairs (at 1/8) the on-demand look-up is used: far less than the all-pairs volume
    side = 8 * (int(model.max_all_pairs**0.5) + 16)
    forced = working_memory_bytes(model, frames=3, height=side, width=side, corr_impl="all_pairs")
    assert working_memory_bytes(model, frames=3, height=side, width=side) < forced / 2
    # CUDA adds a workspace allowance; autocast adds a half-precision copy of the weights
    base = working_memory_bytes(model, frames=3, height=128, width=128)
    assert working_memory_bytes(model, frames=3, height=128, width=128, cuda=True) > base
    assert working_memory_bytes(model, frames=3, height=128, width=128, low_precision=True) > base


def test_classical_memory_estimate() -> None:
    dis = load_estimator("dis")
    assert dis.memory_estimate(frames=2, height=100, width=200) == 100 * 200 * (2 + 2 * 2 * 2 * 4 + 96)
    assert LocalEstimator().memory_estimate(frames=2, height=8, width=8) is None  # the contract's default


# ---------------------------------------------------------------------------------- automatic tiles


def test_auto_tile_keeps_the_measured_peak_under_the_budget() -> None:
    spy = Spy(_tiny(), measure=True)
    frames = np.random.default_rng(1).random((3, 96, 160, 3), dtype=np.float32)
    whole = spy.memory_estimate(frames=3, height=96, width=160)
    budget = whole  # the whole frame plus the engine's own buffers cannot fit: it must tile
    engine = FlowEngine(spy, max_memory=budget, tile_pad=16)
    out = engine.estimate_window(frames)
    assert out.forward.shape == (2, 96, 160, 2) and np.isfinite(out.forward).all()
    assert len(spy.calls) > 1
    weights = _weights_bytes(spy.inner.model)
    for call in spy.calls:
        _, h, w, _ = call["shape"]
        assert h * w < 96 * 160
        assert call["estimate"] <= budget
        assert call["peak"] + weights <= call["estimate"]  # the measured peak, inside the budget


def test_auto_tiled_flow_agrees_with_untiled_dis() -> None:
    """Tolerance: mean |difference| under 0.1 px away from the borders, and the tiled median motion
    within 0.1 px of the truth (the same bounds as the explicit --tile test)."""
    frames = translated_frames(2, 256, 320, dx=3, dy=-2)
    whole = FlowEngine("dis").estimate_window(frames).forward[0]
    spy = Spy(load_estimator("dis"))
    probe = FlowEngine(spy, tile_pad=24)
    budget = probe.host_bytes(2, 256, 320) + spy.memory_estimate(frames=2, height=160, width=160)
    tiled = FlowEngine(spy, max_memory=budget, tile_pad=24).estimate_window(frames).forward[0]
    assert len(spy.calls) > 1 and all(c["shape"][1] * c["shape"][2] <= 160 * 160 for c in spy.calls)
    inner = (slice(12, -12), slice(12, -12))
    assert np.abs(tiled[inner] - whole[inner]).mean() < 0.1
    np.testing.assert_allclose(np.median(tiled[inner].reshape(-1, 2), axis=0), [3, -2], atol=0.1)


def test_frames_that_fit_are_not_tiled_and_an_explicit_tile_is_a_ceiling() -> None:
    frames = translated_frames(2, 96, 128, dx=1, dy=0)
    spy = Spy(load_estimator("dis"))
    FlowEngine(spy, max_memory="1G").estimate_window(frames)
    assert [c["shape"][1:3] for c in spy.calls] == [(96, 128)]
    spy.calls.clear()
    FlowEngine(spy, max_memory="1G", tile=64, tile_pad=8).estimate_window(frames)
    assert len(spy.calls) == 4 and max(c["shape"][2] for c in spy.calls) <= 64 + 2 * 8


def test_a_budget_too_small_for_any_tile_is_a_usage_error() -> None:
    frames = translated_frames(2, 512, 512, dx=1, dy=0)
    with pytest.raises(UsageError, match=r"`max_memory` 1 MiB is too little for dis on 512x512.*64-px"):
        FlowEngine("dis", max_memory="1M").estimate_window(frames)


def test_an_estimator_that_cannot_estimate_runs_untiled_with_a_warning(caplog) -> None:
    frames = translated_frames(2, 32, 32, dx=1, dy=0)
    with caplog.at_level(logging.WARNING, logger="daflow_vfx"):
        out = FlowEngine(LocalEstimator(), max_memory="1M").estimate_window(frames)
    assert out.forward.shape == (1, 32, 32, 2)
    assert "cannot estimate its memory" in caplog.text


# ---------------------------------------------------------------------------------- out of memory


def _run(engine: FlowEngine, frames: np.ndarray, first: int = 1001) -> dict:
    last = first + len(frames) - 1
    return {ff.frame: ff for ff in engine.flows(lambda f: frames[f - first], range(first, last + 1),
                                                  first=first, last=last)}


@pytest.mark.parametrize("error", [None, RuntimeError], ids=["OutOfMemoryError", "RuntimeError"])
def test_out_of_memory_retries_the_window_in_tiles(error, caplog) -> None:
    frames = np.stack([translated_frames(1, 100, 120, dx=0, dy=0, seed=s)[0] for s in range(4)])
    reference = _run(FlowEngine(LocalEstimator()), frames)
    double = OutOfMemoryEstimator(max_pixels=80 * 80, error=error)
    with caplog.at_level(logging.WARNING, logger="daflow_vfx"):
        got = _run(FlowEngine(double, tile_pad=8), frames)
    assert double.failures == 1  # later windows start at the tile that worked
    assert "frames 1001-1002: out of memory" in caplog.text and "64-px tiles" in caplog.text
    for f, ref in reference.items():
        for key in ("forward", "backward", "confidence_forward", "confidence_backward"):
            a, b = getattr(ref, key), getattr(got[f], key)
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(b, a, atol=1e-5, err_msg=f"{f} {key}")


def test_out_of_memory_at_the_smallest_tile_is_a_device_error() -> None:
    frames = translated_frames(3, 100, 120, dx=1, dy=0)
    double = OutOfMemoryEstimator(max_pixels=1000)
    message = r"frames 1001-1002: out of memory on cpu even in 64-px tiles.*`max_memory`.*`tile`"
    with pytest.raises(DeviceError, match=message):
        _run(FlowEngine(double, tile_pad=8), frames)
    assert [s[1:3] for s in double.shapes] == [(100, 120), (58, 68)]  # whole, then a 64-px tile


def test_other_runtime_errors_are_not_retried() -> None:
    double = OutOfMemoryEstimator(max_pixels=0, error=RuntimeError, message="shape mismatch")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        FlowEngine(double).estimate_window(translated_frames(2, 100, 120, dx=1, dy=0))
    assert double.failures == 1


# ---------------------------------------------------------------------------------------- threads


def test_threads_apply_while_computing_and_are_restored() -> None:
    import cv2

    before = (torch.get_num_threads(), cv2.getNumThreads())
    try:
        torch.set_num_threads(2)
        cv2.setNumThreads(2)
        spy = Spy(load_estimator("dis"))
        engine = FlowEngine(spy, threads=1)
        engine.estimate_window(translated_frames(2, 32, 32, dx=1, dy=0))
        assert (spy.calls[0]["torch_threads"], spy.calls[0]["cv2_threads"]) == (1, 1)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (2, 2)
        # restored after a failure as well
        failing = FlowEngine(OutOfMemoryEstimator(max_pixels=0, error=ValueError, message="boom"), threads=1)
        with pytest.raises(ValueError, match="boom"):
            failing.estimate_window(translated_frames(2, 32, 32, dx=1, dy=0))
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (2, 2)
        with thread_limit(None):  # None leaves everything alone
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def test_threads_option_is_checked_and_does_not_import_torch_for_classical_models() -> None:
    with pytest.raises(UsageError, match="threads"):
        FlowEngine(LocalEstimator(), threads=0)
    code = ("import sys, numpy as np\nfrom daflow_vfx.engine import FlowEngine\n"
            "FlowEngine('dis', threads=1).estimate_window(np.random.rand(2, 32, 32, 3).astype('float32'))\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------- CUDA fast path, on a CPU


def test_channels_last_gives_the_same_flow() -> None:
    """channels_last is on by default only on CUDA; forced on a CPU it must not change the numbers."""
    reference = _tiny(iters=3)
    assert not reference.channels_last
    torch.manual_seed(0)
    model = copy.deepcopy(reference.model)
    fast = DAFlowEstimator(model=model, transform=TRANSFORM, name="t", weights_sha256=None, iters=3,
                           channels_last=True)
    for part in (model.feature_encoder, model.context_encoder, model.update_block, model.dpt_query):
        conv = next(m for m in part.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    frames = fixed_window(height=64, width=96)
    a, b = reference.estimate(frames), fast.estimate(frames)
    np.testing.assert_allclose(b.forward, a.forward, atol=1e-4)
    np.testing.assert_allclose(b.confidence_backward, a.confidence_backward, atol=1e-5)


# importing inductor warns about torch's own use of torch.jit.script_method
@pytest.mark.filterwarnings("ignore:.*script_method.*:DeprecationWarning")
def test_compile_wraps_the_network_parts_in_place(caplog) -> None:
    estimator = _tiny()
    keys = set(estimator.model.state_dict())
    assert FlowEngine(estimator, compile=True).estimator.compiled
    model = estimator.model
    for part in (model.feature_encoder, model.context_encoder, model.update_block, model.backbone,
                 model.dpt_query, model.dpt_key, model.dpt_context):
        assert part._compiled_call_impl is not None  # nn.Module.compile(): compiled on first call
    assert set(model.state_dict()) == keys
    with caplog.at_level(logging.WARNING, logger="daflow_vfx"):
        FlowEngine(LocalEstimator(), compile=True)
    assert "--compile is ignored" in caplog.text


@pytest.mark.slow  # dynamo traces every part (a few seconds), with the eager backend: no C++ compiler
@pytest.mark.filterwarnings("ignore:.*script_method.*:DeprecationWarning")
def test_compiled_parts_trace_and_give_the_same_flow() -> None:
    estimator = _tiny(iters=1)
    frames = fixed_window(height=32, width=48)
    before = estimator.estimate(frames)
    estimator.enable_compile(backend="eager")
    after = estimator.estimate(frames)
    np.testing.assert_allclose(after.forward, before.forward, atol=1e-5)


def test_joint_attention_goes_through_scaled_dot_product_attention() -> None:
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    backbone = tiny_daflow().backbone
    processors = [block.attn.processor for block in backbone.transformer_blocks]
    processors += [block.attn2.processor for block in backbone.transformer_blocks if block.attn2 is not None]
    assert processors and all(type(p) is JointAttnProcessor2_0 for p in processors)
    assert "F.scaled_dot_product_attention(" in inspect.getsource(JointAttnProcessor2_0.__call__)
    # and at run time: one fused attention op per attention layer of the tapped blocks, nothing patched
    from torch.profiler import ProfilerActivity, profile

    model = tiny_daflow().eval()
    x = torch.from_numpy(fixed_window(height=32, width=48)).permute(0, 3, 1, 2)[None] * 2 - 1
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model.backbone_taps(x)
    calls = sum(1 for e in prof.events() if e.name == "aten::scaled_dot_product_attention")
    blocks = model.backbone.transformer_blocks[: max(model.backbone.taps) + 1]
    assert calls == sum(1 + (b.attn2 is not None) for b in blocks)


# Autocast against float32 on the fixed window, for a tiny random model: measured 0.006-0.012 px
# (bfloat16, 8-bit mantissa) and about 0.001 px (float16, 11-bit) mean EPE over seeds 0-2.
AUTOCAST_EPE_TOLERANCE = {"bfloat16": 0.05, "float16": 0.01}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_autocast_epe_against_float32(dtype) -> None:
    check = autocast_epe(_tiny(iters=4), dtype=dtype)
    assert (check.height, check.width, check.device) == (64, 96, "cpu")
    assert 0 < check.epe_mean < AUTOCAST_EPE_TOLERANCE[dtype]  # > 0: autocast really ran
    assert check.epe_max < 10 * AUTOCAST_EPE_TOLERANCE[dtype]
    assert check.flow_mean > 10 * check.epe_mean
    assert check.confidence_mean_abs < 0.01
    with pytest.raises(UsageError, match="float16 or bfloat16"):
        autocast_epe(_tiny(), dtype="float32")


def test_estimator_on_each_device_matches_the_cpu(device) -> None:
    """On CUDA: channels_last, pinned memory and non-blocking copies must give the CPU's flow."""
    reference = _tiny(iters=2)
    torch.manual_seed(0)
    on_device = DAFlowEstimator(model=copy.deepcopy(reference.model), transform=TRANSFORM, name="t",
                                weights_sha256=None, iters=2, device=device)
    assert on_device.channels_last == (device == "cuda")
    frames = fixed_window(height=64, width=96)
    atol = 1e-5 if device == "cpu" else 2e-2  # CUDA convolutions use TF32 by default
    np.testing.assert_allclose(on_device.estimate(frames).forward, reference.estimate(frames).forward,
                               atol=atol)


# ------------------------------------------------------------------------------------- jobs and CLI


def test_render_checks_max_memory_before_work(tmp_path) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 32, 32, dx=1, dy=0))
    with pytest.raises(UsageError, match="max_memory"):
        render(RenderJob(input=plate, output=str(tmp_path / "out" / "v.####.exr"),
                         engine=EngineOptions(model="dis", max_memory="lots")))
    assert not (tmp_path / "out").exists()


def test_cli_options(tmp_path) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 48, 64, dx=2, dy=1))
    out = str(tmp_path / "v.####.exr")
    result = CliRunner().invoke(main, ["render", plate, "-o", out, "--model", "dis", "--max-memory", "8Q"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: --max-memory: cannot read '8Q'"), result.output
    result = CliRunner().invoke(main, ["render", plate, "-o", out, "--model", "dis", "--threads", "0"])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["render", plate, "-o", out, "--model", "dis", "--max-memory",
                                       "64M", "--threads", "1", "--compile"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v.1002.exr").is_file()
    image1, image2 = (str(tmp_path / "plate" / f"plate.{f}.png") for f in (1001, 1002))
    flo = str(tmp_path / "f.flo")
    result = CliRunner().invoke(main, ["flow", image1, image2, "-o", flo, "--model", "dis",
                                       "--max-memory", "1.5M", "--threads", "1"])
    assert result.exit_code == 0, result.output
