"""The engine: window anchoring, chunk invariance, padding, tiling, threads, estimate_flow, devices."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from daflow_vfx.devices import resolve_device
from daflow_vfx.engine import FlowEngine, estimate_flow, plan_windows, window_anchor
from daflow_vfx.errors import CorruptFileError, DeviceError, ModelError, OutputError, UsageError
from daflow_vfx.estimators import available_models, load_estimator, resolve_default_model
from daflow_vfx.jobs.options import EngineOptions
from daflow_vfx.jobs.render import RenderJob, render
from tests.helpers import LocalEstimator, WindowedEstimator, noise_texture, translated_frames, write_sequence

# ---------------------------------------------------------------------------------------------- windows


def test_window_anchor_is_absolute() -> None:
    assert [window_anchor(n, 3) for n in range(6)] == [0, 0, 2, 2, 4, 4]
    assert [window_anchor(n, 2) for n in (1001, 1002)] == [1001, 1002]
    # negative frame numbers anchor on the same grid
    assert window_anchor(-1, 3) == -2 and window_anchor(-2, 3) == -2


def test_plan_windows_reads_neighbours_and_truncates_only_at_plate_ends() -> None:
    # frame 1005 needs pairs 1004 (window 1004..1006) and 1005 (same window)
    assert plan_windows([1005], first=1001, last=1010, window=3) == [[1004, 1005, 1006]]
    # frame 1004 needs pairs 1003 (window 1002..1004) and 1004 (window 1004..1006)
    assert plan_windows([1004], first=1001, last=1010, window=3) == [[1002, 1003, 1004], [1004, 1005, 1006]]
    # the plate's first and last frames cut windows; a chunk never does
    assert plan_windows([1001], first=1001, last=1010, window=3) == [[1001, 1002]]
    assert plan_windows([1010], first=1001, last=1010, window=3) == [[1008, 1009, 1010]]
    assert plan_windows([3], first=1, last=4, window=2) == [[2, 3], [3, 4]]


def _run(engine: FlowEngine, frames: np.ndarray, wanted: list[int], first: int = 1001):
    def read(frame: int) -> np.ndarray:
        return frames[frame - first]

    last = first + len(frames) - 1
    return {ff.frame: ff for ff in engine.flows(read, wanted, first=first, last=last)}


@pytest.mark.parametrize("make", [WindowedEstimator, lambda: load_estimator("dis")], ids=["windowed", "dis"])
def test_chunked_equals_unchunked(make) -> None:
    frames = translated_frames(9, 37, 45, dx=1, dy=1)  # odd size: padding is exercised too
    engine = FlowEngine(make())
    whole = _run(engine, frames, list(range(1001, 1010)))
    chunked = {}
    for chunk in ([1001, 1002], [1003, 1004, 1005], [1006], [1007, 1008, 1009]):
        chunked.update(_run(FlowEngine(make()), frames, chunk))
    assert sorted(chunked) == sorted(whole) == list(range(1001, 1010))
    for f, ref in whole.items():
        got = chunked[f]
        for key in ("forward", "backward"):
            a, b = getattr(ref, key), getattr(got, key)
            assert (a is None) == (b is None), (f, key)
            if a is not None:
                np.testing.assert_allclose(b, a, atol=1e-5, err_msg=f"frame {f} {key}")
    assert whole[1001].backward is None and whole[1009].forward is None
    assert whole[1001].source_frames == (None, 1001, 1002)
    assert whole[1009].source_frames == (1008, 1009, None)


def test_chunk_invariance_test_has_teeth() -> None:
    """Windows cut at the chunk start would give different flows for the windowed estimator."""
    frames = translated_frames(6, 16, 16, dx=1, dy=0) + np.linspace(0, 0.1, 6)[:, None, None, None]
    engine = FlowEngine(WindowedEstimator())
    anchored = _run(engine, frames, [1003])[1003].forward  # pair 1003 lives in window 1002..1004
    cut_at_chunk = engine.estimate_window(frames[2:5]).forward[0]  # window 1003..1005
    assert np.abs(anchored - cut_at_chunk).max() > 1e-3


# ------------------------------------------------------------------------------------- padding, tiling


@pytest.mark.parametrize("shape", [(37, 53), (8, 8), (17, 64)])
def test_padding_to_stride_is_cropped_back(shape) -> None:
    estimator = WindowedEstimator()
    engine = FlowEngine(estimator)
    frames = np.stack([noise_texture(*shape, seed=s) for s in range(3)])
    result = engine.estimate_window(frames)
    assert result.forward.shape == (2, *shape, 2) and result.backward.shape == (2, *shape, 2)
    assert all(s[1] % 8 == 0 and s[2] % 8 == 0 for s in estimator.shapes)
    # the estimator is per-pixel, so the valid pixels must match an unpadded evaluation exactly
    context = frames.mean(axis=(0, 3))[None, ..., None]
    np.testing.assert_allclose(result.forward, (frames[1:] - frames[:-1])[..., :2] + context, atol=1e-6)


def test_tiling_reproduces_a_local_estimator_exactly() -> None:
    frames = np.stack([noise_texture(70, 90, seed=s) for s in range(2)])
    whole = FlowEngine(LocalEstimator()).estimate_window(frames)
    tiled = FlowEngine(LocalEstimator(), tile=32, tile_pad=8).estimate_window(frames)
    for key in ("forward", "backward", "confidence_forward", "confidence_backward"):
        np.testing.assert_allclose(getattr(tiled, key), getattr(whole, key), atol=1e-5, err_msg=key)


def test_tiling_with_dis_agrees_with_whole_frame() -> None:
    frames = translated_frames(2, 96, 128, dx=3, dy=-2)
    whole = FlowEngine("dis").estimate_window(frames).forward[0]
    tiled = FlowEngine("dis", tile=64, tile_pad=24).estimate_window(frames).forward[0]
    inner = (slice(12, -12), slice(12, -12))
    assert np.abs(tiled[inner] - whole[inner]).mean() < 0.1
    np.testing.assert_allclose(np.median(tiled[inner].reshape(-1, 2), axis=0), [3, -2], atol=0.1)


# ------------------------------------------------------------------------------------------- threads


def _no_daflow_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("daflow-")]


def test_reader_error_reaches_caller_and_threads_stop() -> None:
    frames = translated_frames(6, 16, 16, dx=1, dy=0)

    def read(frame: int) -> np.ndarray:
        if frame == 1004:
            raise CorruptFileError("plate.1004.exr: truncated")
        return frames[frame - 1001]

    engine = FlowEngine(LocalEstimator())
    with pytest.raises(CorruptFileError, match="1004"):
        list(engine.flows(read, range(1001, 1007), first=1001, last=1006))
    assert _no_daflow_threads()


def test_writer_error_reaches_caller(tmp_path, monkeypatch) -> None:
    import daflow_vfx.io.exr as exr

    plate = write_sequence(tmp_path / "plate", translated_frames(4, 16, 16, dx=1, dy=0))

    def failing_write(path, **kwargs):
        raise OutputError(f"{path}: disk full")

    monkeypatch.setattr(exr, "write_motion_exr", failing_write)
    with pytest.raises(OutputError, match="disk full"):
        render(RenderJob(input=plate, output=str(tmp_path / "out" / "v.####.exr"),
                         engine=EngineOptions(model="dis", device="cpu")))
    assert _no_daflow_threads()


# -------------------------------------------------------------------------------------- estimate_flow


def test_estimate_flow_translation_and_convention() -> None:
    frames = translated_frames(2, 64, 80, dx=2, dy=3)
    flow = estimate_flow(frames[0], frames[1], model="dis", device="cpu")
    assert flow.shape == (64, 80, 2) and flow.dtype == np.float32
    inner = flow[10:-10, 10:-10].reshape(-1, 2)
    np.testing.assert_allclose(np.median(inner, axis=0), [2, 3], atol=0.1)  # +x right, +y down


def test_estimate_flow_default_model_and_integer_input() -> None:
    # 128 px: the default model works on a 1/8 grid, and a 48 px frame (6x6 cells) is mostly border.
    frames = translated_frames(2, 128, 128, dx=-1, dy=0)
    as_u8 = np.round(frames * np.iinfo(np.uint8).max).astype(np.uint8)
    flow = estimate_flow(as_u8[0], as_u8[1])
    np.testing.assert_allclose(np.median(flow[8:-8, 8:-8].reshape(-1, 2), axis=0), [-1, 0], atol=0.1)


def test_estimate_flow_rejects_bad_frames() -> None:
    with pytest.raises(UsageError, match="same size"):
        estimate_flow(np.zeros((8, 8, 3), np.float32), np.zeros((8, 9, 3), np.float32), model="dis")
    with pytest.raises(UsageError, match=r"\[H, W, 3\]"):
        estimate_flow(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32), model="dis")


@pytest.mark.slow  # imports torch to ask about CUDA
def test_devices() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) in ("cpu", "cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        assert resolve_device("auto") == "cpu"
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")
        with pytest.raises(DeviceError):
            estimate_flow(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32), device="cuda:0")


def test_auto_device_for_classical_models_needs_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom daflow_vfx.devices import device_for_model\n"
            "assert device_for_model('dis', 'auto') == 'cpu'\nassert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_options_are_checked() -> None:
    with pytest.raises(UsageError, match="dtype"):
        FlowEngine(LocalEstimator(), dtype="float64")
    with pytest.raises(UsageError, match="tile"):
        FlowEngine(LocalEstimator(), tile=0)


# ----------------------------------------------------------------------------------------- registry


def test_registry() -> None:
    names = {m.name for m in available_models()}
    assert {"dis", "farneback", "deepflow"} <= names
    assert load_estimator("default").name == resolve_default_model()
    with pytest.raises(ModelError, match="unknown model"):
        load_estimator("nope")


@pytest.mark.parametrize("name", ["dis", "farneback", "deepflow"])
def test_classical_estimators_follow_the_flo_convention(name) -> None:
    frames = translated_frames(2, 64, 64, dx=2, dy=-1)
    estimator = load_estimator(name)
    assert estimator.window == 2 and estimator.stride == 1 and estimator.version.startswith("opencv-")
    result = FlowEngine(estimator).estimate_window(frames)
    inner = (slice(12, -12), slice(12, -12))
    forward = np.median(result.forward[0][inner].reshape(-1, 2), axis=0)
    backward = np.median(result.backward[0][inner].reshape(-1, 2), axis=0)
    np.testing.assert_allclose(forward, [2, -1], atol=0.25)
    np.testing.assert_allclose(backward, [-2, 1], atol=0.25)


def test_import_is_light() -> None:
    code = (
        "import sys, daflow_vfx\n"
        "heavy = [m for m in ('torch', 'cv2', 'av', 'bpy', 'nuke', 'OpenImageIO') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert daflow_vfx.__version__\n"
        "assert callable(daflow_vfx.estimate_flow) and daflow_vfx.FlowEngine.__name__ == 'FlowEngine'\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
