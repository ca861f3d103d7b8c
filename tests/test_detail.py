"""Vector detail (`--detail`, Kronos' "Vector Detail"): flow at a fraction of the plate's size, upsampled
to full size with the vectors scaled; detail 1 is the unresized path; tiling, padding, memory and
out-of-memory retries work on the reduced frames; the option reaches every job and the EXR header."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.detail import reduced_size
from daflow_vfx.engine import FlowEngine
from daflow_vfx.errors import UsageError
from daflow_vfx.estimators import load_estimator
from daflow_vfx.estimators.base import FlowEstimator, WindowFlows
from daflow_vfx.jobs.options import EngineOptions, build_engine
from daflow_vfx.jobs.render import RenderJob, render
from tests.helpers import read_exr, translated_frames, write_sequence

INNER = (slice(12, -12), slice(12, -12))  # away from the borders, where content enters and leaves


class Recorder(FlowEstimator):
    """Delegates to ``inner`` (default: a constant flow of one pixel right and down, confidence 0.5) and
    records the shape of every window it is given and every memory estimate asked of it."""

    def __init__(self, inner: FlowEstimator | None = None, *, stride: int = 1,
                 oom_above: int | None = None) -> None:
        self.inner = inner
        self.name, self.version = (inner.name, inner.version) if inner else ("constant", "test")
        self.window = inner.window if inner else 2
        self.stride = inner.stride if inner else stride
        self.oom_above = oom_above  # pixels per frame above which estimate() runs out of memory
        self.shapes: list[tuple[int, ...]] = []
        self.estimates: list[tuple[int, int]] = []
        self.failures = 0

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        self.shapes.append(tuple(frames.shape))
        if self.oom_above is not None and frames.shape[1] * frames.shape[2] > self.oom_above:
            self.failures += 1
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.inner is not None:
            return self.inner.estimate(frames)
        pairs, h, w = frames.shape[0] - 1, frames.shape[1], frames.shape[2]
        ones = np.ones((pairs, h, w, 2), np.float32)  # [F-1, h, w, 2]
        half = np.full((pairs, h, w), 0.5, np.float32)  # [F-1, h, w]
        return WindowFlows(forward=ones, backward=-ones, confidence_forward=half, confidence_backward=half)

    def memory_estimate(self, *, frames: int, height: int, width: int) -> int | None:
        self.estimates.append((height, width))
        if self.inner is not None:
            return self.inner.memory_estimate(frames=frames, height=height, width=width)
        return 1000 * height * width


# ------------------------------------------------------------------------------------------ the engine


def test_half_detail_gives_full_size_vectors_of_the_full_magnitude() -> None:
    frames = translated_frames(2, 96, 128, dx=8, dy=-4)  # [2, 96, 128, 3]: 8 px right, 4 px up
    spy = Recorder(load_estimator("dis"))
    out = FlowEngine(spy, detail=0.5).estimate_window(frames)
    assert spy.shapes == [(2, 48, 64, 3)]  # the estimator saw half-size frames ...
    assert out.forward.shape == out.backward.shape == (1, 96, 128, 2)  # ... the flow is the plate's size
    # 8 px, not the 4 px the estimator measured on the reduced frames
    np.testing.assert_allclose(np.median(out.forward[0][INNER].reshape(-1, 2), axis=0), [8, -4], atol=0.3)
    np.testing.assert_allclose(np.median(out.backward[0][INNER].reshape(-1, 2), axis=0), [-8, 4], atol=0.3)


def test_vectors_are_scaled_by_the_true_ratio_of_each_axis() -> None:
    # 97x131 at 0.3 rounds to 29x39: the ratios are 97/29 and 131/39, neither of them 1/0.3
    assert reduced_size(97, 131, 0.3) == (29, 39)
    spy = Recorder()
    out = FlowEngine(spy, detail=0.3).estimate_window(translated_frames(3, 97, 131, dx=1, dy=0)[:2])
    assert spy.shapes == [(2, 29, 39, 3)]
    assert out.forward.shape == (1, 97, 131, 2) and out.forward.dtype == np.float32
    np.testing.assert_allclose(out.forward[0, ..., 0], 131 / 39, rtol=1e-6)
    np.testing.assert_allclose(out.forward[0, ..., 1], 97 / 29, rtol=1e-6)
    np.testing.assert_allclose(out.backward[0], -out.forward[0], rtol=1e-6)
    # confidence is resampled, not scaled
    assert out.confidence_forward.shape == (1, 97, 131)
    np.testing.assert_allclose(out.confidence_forward, 0.5, atol=1e-6)


def test_padding_to_the_stride_comes_after_the_resize() -> None:
    spy = Recorder(stride=8)
    out = FlowEngine(spy, detail=0.3).estimate_window(translated_frames(2, 97, 131, dx=1, dy=0))
    # 29x39 reduced, padded to 32x40; padding first (104x136 -> 31x41) would break the stride
    assert spy.shapes == [(2, 32, 40, 3)]
    np.testing.assert_allclose(out.forward[0, ..., 0], 131 / 39, rtol=1e-6)  # the crop undid the padding


def test_full_detail_is_the_unresized_path_bit_for_bit(monkeypatch) -> None:
    import daflow_vfx.engine as engine_module

    frames = translated_frames(2, 37, 45, dx=2, dy=1)
    default = FlowEngine("dis").estimate_window(frames)

    def never(*args, **kwargs):
        raise AssertionError("detail 1 must not resize")

    monkeypatch.setattr(engine_module, "downscale_frames", never)
    monkeypatch.setattr(engine_module, "upscale_flows", never)
    for detail in (1.0, 1, 0.99):  # 0.99 of 37x45 rounds back to 37x45: nothing to resize either
        got = FlowEngine("dis", detail=detail).estimate_window(frames)
        np.testing.assert_array_equal(got.forward, default.forward)
        np.testing.assert_array_equal(got.backward, default.backward)


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, 2, math.nan, math.inf, True, "0.5", None])
def test_a_detail_outside_zero_to_one_is_one_usage_error(bad) -> None:
    for make in (lambda: EngineOptions(model="dis", detail=bad), lambda: FlowEngine(Recorder(), detail=bad)):
        with pytest.raises(UsageError, match=r"`detail` must be a fraction .* in \(0, 1\]") as caught:
            make()
        assert caught.value.params == ("detail",)


def test_tiles_are_cut_from_the_reduced_frames() -> None:
    frames = translated_frames(2, 128, 160, dx=6, dy=2)
    spy = Recorder(load_estimator("dis"))
    out = FlowEngine(spy, detail=0.5, tile=48, tile_pad=8).estimate_window(frames)
    # 64x80 reduced, cut into 2x2 tiles of at most 40x40 cores plus an 8-px overlap
    assert len(spy.shapes) == 4 and all(h <= 48 and w <= 48 for _, h, w, _ in spy.shapes)
    assert out.forward.shape == (1, 128, 160, 2)
    np.testing.assert_allclose(np.median(out.forward[0][INNER].reshape(-1, 2), axis=0), [6, 2], atol=0.3)


def test_the_memory_budget_is_checked_at_the_reduced_size() -> None:
    frames = translated_frames(2, 192, 256, dx=2, dy=0)
    spy = Recorder()
    half = FlowEngine(spy, detail=0.5, tile_pad=8)
    # enough for the whole reduced frame and the engine's own buffers, far too little for the full frame
    budget = half.host_bytes(2, 192, 256) + spy.memory_estimate(frames=2, height=96, width=128)
    spy.estimates.clear()
    FlowEngine(spy, detail=0.5, tile_pad=8, max_memory=budget).estimate_window(frames)
    assert spy.estimates[0] == (96, 128) and spy.shapes == [(2, 96, 128, 3)]  # untiled
    spy.shapes.clear()
    FlowEngine(spy, tile_pad=8, max_memory=budget).estimate_window(frames)
    assert len(spy.shapes) > 1  # the same budget at full detail has to tile
    # the engine's own host memory grows by the reduced copies, never shrinks
    assert half.host_bytes(2, 192, 256) > FlowEngine(spy).host_bytes(2, 192, 256)


def test_out_of_memory_retries_halve_the_reduced_frame() -> None:
    spy = Recorder(oom_above=80 * 80)
    out = FlowEngine(spy, detail=0.5, tile_pad=8).estimate_window(translated_frames(2, 200, 240, dx=1, dy=0))
    # 100x120 reduced fails once; the retry is half of 120 (the 64-px floor), not half of the plate's 240
    assert spy.failures == 1 and spy.shapes[0] == (2, 100, 120, 3)
    assert all(h <= 64 + 16 and w <= 64 + 16 for _, h, w, _ in spy.shapes[1:])
    assert out.forward.shape == (1, 200, 240, 2)


def test_build_engine_passes_detail() -> None:
    assert build_engine(EngineOptions(model="dis", device="cpu", detail=0.25)).detail == 0.25
    assert build_engine(EngineOptions(model="dis", device="cpu")).detail == 1.0


# ---------------------------------------------------------------------------------- commands and jobs


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> str:
    return write_sequence(tmp_path_factory.mktemp("plate"), translated_frames(3, 64, 80, dx=4, dy=2),
                          name="shift")


@pytest.mark.parametrize("command", ["render", "flow", "retime", "stabilize"])
def test_the_flag_reaches_each_job(command, plate, tmp_path, monkeypatch) -> None:
    import daflow_vfx.jobs.options as options_module

    seen: list[float] = []
    real = options_module.build_engine

    def spy(options: EngineOptions, **kwargs) -> FlowEngine:
        seen.append(options.detail)
        return real(options, **kwargs)

    job_module = __import__(f"daflow_vfx.jobs.{command}", fromlist=["build_engine"])
    monkeypatch.setattr(job_module, "build_engine", spy)
    if command == "flow":
        args = ["flow", plate.replace("####", "1001"), plate.replace("####", "1002"), "-o",
                str(tmp_path / "f.flo")]
    else:
        args = [command, plate, "-o", str(tmp_path / "out" / "o.####.exr")]
        args += ["--speed", "0.5"] if command == "retime" else []
    result = CliRunner().invoke(main, [*args, "--model", "dis", "--device", "cpu", "--detail", "0.5"])
    assert result.exit_code == 0, result.output
    assert seen == [0.5]


def test_a_bad_detail_on_the_command_line_is_one_error_naming_the_flag(plate, tmp_path) -> None:
    for bad in ("0", "1.5", "nan"):
        result = CliRunner().invoke(main, ["render", plate, "-o", str(tmp_path / "v.####.exr"), "--model",
                                           "dis", "--detail", bad])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert [ln for ln in lines if ln.startswith("Error:")] == lines[-1:], result.output
        assert lines[-1].startswith("Error: --detail must be a fraction") and "`" not in lines[-1]
    assert not (tmp_path / "v.1001.exr").exists()


def test_a_preset_can_set_detail(plate, tmp_path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("detail: 0.5\nmodel: dis\ndevice: cpu\n")
    result = CliRunner().invoke(main, ["render", plate, "-o", str(tmp_path / "v.####.exr"), "--frames",
                                       "1002", "--config", str(preset)])
    assert result.exit_code == 0, result.output
    _, attrs = read_exr(tmp_path / "v.1002.exr")
    assert attrs["daflow/detail"] == "0.5"


def _render(plate: str, out: str, *, detail: float = 1.0, skip: bool = False):
    job = RenderJob(input=plate, output=out, skip_existing=skip,
                    engine=EngineOptions(model="dis", device="cpu", detail=detail))
    return render(job)


def test_the_header_records_detail_and_resume_redoes_another_detail(plate, tmp_path) -> None:
    out = str(tmp_path / "v.####.exr")
    assert _render(plate, out, detail=0.5).written == [1001, 1002, 1003]
    channels, attrs = read_exr(tmp_path / "v.1002.exr")
    assert attrs["daflow/detail"] == "0.5"
    assert json.loads(attrs["daflow/settings"])["detail"] == 0.5
    assert np.median(channels["forward.u"][INNER]) == pytest.approx(4, abs=0.3)  # plate pixels, not 2
    assert channels["forward.u"].shape == (64, 80)
    again = _render(plate, out, detail=0.5, skip=True)
    assert again.skipped == [1001, 1002, 1003] and again.written == []
    other = _render(plate, out, detail=0.25, skip=True)
    assert other.skipped == [] and other.written == [1001, 1002, 1003]
    full = _render(plate, out, skip=True)  # detail 1 after a reduced render: stale too
    assert full.skipped == [] and full.written == [1001, 1002, 1003]
    _, attrs = read_exr(tmp_path / "v.1002.exr")
    # full detail leaves the settings as they were before `detail` existed, so those renders stay complete
    assert attrs["daflow/detail"] == "1.0" and "detail" not in json.loads(attrs["daflow/settings"])
    assert _render(plate, out, skip=True).skipped == [1001, 1002, 1003]


def test_bench_accuracy_takes_detail(tmp_path) -> None:
    from daflow_vfx.bench.accuracy import run_accuracy
    from tests.helpers import write_shift_pairs

    data = write_shift_pairs(tmp_path)
    full, _ = run_accuracy(data, models=("dis",), levels=("clean",))
    half, _ = run_accuracy(data, models=("dis",), levels=("clean",), detail=0.5)
    assert full[0].epe != half[0].epe  # the engine really ran at another detail
    assert half[0].epe < 1.0  # and the vectors are in the pairs' pixels (unscaled they would be far off)
    result = CliRunner().invoke(main, ["bench", "accuracy", "--data", str(data), "--models", "dis",
                                       "--levels", "clean", "--detail", "0.5", "--output", "-"])
    assert result.exit_code == 0, result.output
    assert "vector detail 0.5" in result.output
    bad = CliRunner().invoke(main, ["bench", "accuracy", "--data", str(data), "--detail", "0"])
    assert bad.exit_code == 2 and bad.output.strip().splitlines()[-1].startswith("Error: --detail must be")
