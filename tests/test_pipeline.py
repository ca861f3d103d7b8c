"""Issue 21, item 3: the overlapped render pipeline on a CPU.

Several windows in one estimator call give each window's flow alone; a render through the pipeline (prefetch
thread, batches, writer thread) writes the EXRs a plain one-window-at-a-time loop on one thread writes; an
error on the reader or the writer thread is the typed error, one ``Error:`` line, with the threads joined
and no partial output left.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.engine import FlowEngine, plan_windows
from daflow_vfx.errors import CorruptFileError, UsageError
from daflow_vfx.estimators.daflow import DAFlowEstimator
from daflow_vfx.jobs.options import EngineOptions, build_engine
from daflow_vfx.jobs.render import RenderJob, render
from daflow_vfx.model.weights import REGISTRY
from daflow_vfx.pipeline import batch_groups
from tests.helpers import LocalEstimator, read_exr, translated_frames, write_sequence
from tests.model.conftest import tiny_daflow

SMALL = "daflow-compact-cnn-noprior"  # the smallest shipped network (1.8 M parameters, no DIS prior)


def _tiny(seed: int = 0) -> DAFlowEstimator:
    torch.manual_seed(seed)
    return DAFlowEstimator(model=tiny_daflow(), transform=REGISTRY["daflow-compact"].transform,
                           name="daflow-tiny", weights_sha256=None, iters=2)


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("daflow-prefetch", "daflow-writer")]


def test_batch_groups_keep_the_order_and_one_frame_count_per_group() -> None:
    windows = plan_windows(range(0, 8), first=0, last=7, window=3)  # 0-2, 2-4, 4-6, 6-7
    assert batch_groups(windows, 2) == [[[0, 1, 2], [2, 3, 4]], [[4, 5, 6]], [[6, 7]]]
    assert batch_groups(windows, 1) == [[w] for w in windows]
    assert batch_groups(windows, 8) == [windows[:3], windows[3:]]


@pytest.mark.parametrize("detail", [1.0, 0.5])
def test_batched_windows_give_the_flows_of_one_window_at_a_time(detail, caplog) -> None:
    # 7 frames of 40x56 (not multiples of the stride 16: padded) -> windows 0-2, 2-4, 4-6 in one call
    frames = translated_frames(7, 40, 56, dx=2, dy=1)
    estimator = _tiny()

    def run(batch: int) -> dict:
        engine = FlowEngine(estimator, batch_windows=batch, detail=detail)
        return {ff.frame: ff for ff in engine.flows(lambda f: frames[f], range(7), first=0, last=6)}

    alone = run(1)
    with caplog.at_level(logging.DEBUG, logger="daflow_vfx.engine"):
        together = run(3)
    assert "3 windows of 56x40 frames in one call" in caplog.text
    assert sorted(together) == list(range(7))
    for f, ff in alone.items():
        for key in ("forward", "backward", "confidence_forward", "confidence_backward"):
            a, b = getattr(ff, key), getattr(together[f], key)
            assert (a is None) == (b is None), (f, key)
            if a is not None:
                # the same windows: only the summation order of the batched kernels differs
                np.testing.assert_allclose(b, a, atol=1e-5, err_msg=f"frame {f} {key}")


def test_batches_fit_max_memory(caplog) -> None:
    frames = translated_frames(9, 32, 48, dx=1, dy=0)  # windows 0-2, 2-4, 4-6, 6-8
    estimator = _tiny()
    probe = FlowEngine(estimator)
    one = estimator.memory_estimate(frames=3, height=32, width=48) + probe.host_bytes(3, 32, 48)
    engine = FlowEngine(estimator, batch_windows=4, max_memory=int(2.5 * one))  # two windows fit, not three
    with caplog.at_level(logging.DEBUG, logger="daflow_vfx.engine"):
        done = [ff.frame for ff in engine.flows(lambda f: frames[f], range(9), first=0, last=8)]
    assert done == list(range(9))
    assert caplog.text.count("2 windows of 48x32 frames in one call") == 2
    assert "4 windows" not in caplog.text and "3 windows" not in caplog.text


def _assert_same_flows(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for f, ff in want.items():
        for key in ("forward", "backward", "confidence_forward", "confidence_backward"):
            a, b = getattr(ff, key), getattr(got[f], key)
            assert (a is None and b is None) or np.array_equal(a, b), (f, key)


class DeferredEstimator(LocalEstimator):
    """LocalEstimator as a GPU estimator looks to the engine: its results are collected after the
    launch returns. Records the order of launches and collections."""

    device = "cuda"  # what the engine reads to keep a batch in flight

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def launch(self, windows: np.ndarray):
        n = sum(1 for kind, _ in self.events if kind == "launch")
        self.events.append(("launch", n))
        results = [self.estimate(frames) for frames in windows]

        def finish():
            self.events.append(("finish", n))
            return results

        return finish


def test_on_a_device_the_next_batch_is_queued_before_the_last_is_collected() -> None:
    frames = translated_frames(7, 16, 24, dx=1, dy=0)  # pairwise: 6 windows, 3 batches of 2
    deferred = DeferredEstimator()
    engine = FlowEngine(deferred, batch_windows=2)
    assert engine.asynchronous
    got = {ff.frame: ff for ff in engine.flows(lambda f: frames[f], range(7), first=0, last=6)}
    assert deferred.events == [("launch", 0), ("launch", 1), ("finish", 0), ("launch", 2), ("finish", 1),
                               ("finish", 2)]
    want = {ff.frame: ff for ff in FlowEngine(LocalEstimator()).flows(lambda f: frames[f], range(7), first=0,
                                                                      last=6)}
    assert list(got) == list(range(7))
    _assert_same_flows(got, want)


class BatchTooBig(LocalEstimator):
    """Runs out of device memory whenever it is given more than one window at once."""

    def __init__(self) -> None:
        self.refused = 0

    def launch(self, windows: np.ndarray):
        if len(windows) > 1:
            self.refused += 1
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().launch(windows)


def test_a_batch_out_of_memory_is_redone_one_window_at_a_time(caplog) -> None:
    frames = translated_frames(7, 16, 24, dx=1, dy=0)
    estimator = BatchTooBig()
    with caplog.at_level(logging.WARNING, logger="daflow_vfx.engine"):
        got = {ff.frame: ff for ff in FlowEngine(estimator, batch_windows=3).flows(
            lambda f: frames[f], range(7), first=0, last=6)}
    assert estimator.refused == 1  # the size is not batched again
    assert "3 windows of 24x16 frames: out of memory together" in caplog.text
    want = {ff.frame: ff for ff in FlowEngine(LocalEstimator()).flows(lambda f: frames[f], range(7), first=0,
                                                                      last=6)}
    _assert_same_flows(got, want)


def test_batch_windows_is_checked() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="batch_windows") as info:
            EngineOptions(model="dis", batch_windows=bad)
        assert info.value.param == "batch_windows"
    result = CliRunner().invoke(main, ["render", "x.####.exr", "-o", "v.####.exr", "--batch-windows", "0"])
    assert result.exit_code == 2 and "--batch-windows" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------------------ render


def _sequential_render(plate: str, out: Path, options: EngineOptions) -> None:
    """The reference: every step on this thread, one window at a time, no reader or writer thread."""
    from daflow_vfx.color import resolve_colorspace, sanitize, to_display
    from daflow_vfx.io import open_plate
    from daflow_vfx.io.exr import write_motion_exr

    engine = build_engine(options, device="cpu")
    with open_plate(plate) as source:
        first, last = source.info.require_span(needs="flow")
        colorspace = resolve_colorspace("auto", source.info)
        frames = {f: to_display(sanitize(source.read(f)).image, colorspace) for f in range(first, last + 1)}
    forward, backward = {}, {}
    for win in plan_windows(range(first, last + 1), first=first, last=last, window=engine.estimator.window):
        result = engine.estimate_window(np.stack([frames[f] for f in win]))
        for i, n in enumerate(win[:-1]):
            forward[n] = (result.forward[i], result.confidence_forward[i])
            backward[n + 1] = result.backward[i]
    out.mkdir()
    for f in range(first, last + 1):
        flow, confidence = forward.get(f, (None, None))
        write_motion_exr(out / f"v.{f}.exr", forward=flow, backward=backward.get(f), confidence=confidence)


def _channels(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    return {p.name: read_exr(p)[0] for p in sorted(folder.glob("*.exr"))}


@pytest.fixture
def plate(tmp_path) -> str:
    return write_sequence(tmp_path / "plate", translated_frames(6, 32, 48, dx=1, dy=1), ext="exr")


def test_pipelined_render_writes_what_a_sequential_loop_writes(plate, tmp_path) -> None:
    options = EngineOptions(model=SMALL, device="cpu")
    _sequential_render(plate, tmp_path / "reference", options)
    want = _channels(tmp_path / "reference")
    assert len(want) == 6
    render(RenderJob(input=plate, output=str(tmp_path / "one" / "v.####.exr"), engine=options))
    got = _channels(tmp_path / "one")
    assert list(got) == list(want)
    for name, channels in want.items():
        assert list(got[name]) == list(channels)
        for key, value in channels.items():
            assert np.array_equal(got[name][key], value), f"{name} {key}"  # bit for bit
    # batched: each window's flow alone, up to float32 summation order (well under a half-float step)
    batched = EngineOptions(model=SMALL, device="cpu", batch_windows=3)
    render(RenderJob(input=plate, output=str(tmp_path / "three" / "v.####.exr"), engine=batched))
    for name, channels in _channels(tmp_path / "three").items():
        for key, value in channels.items():
            np.testing.assert_allclose(value, want[name][key], atol=2e-3, err_msg=f"{name} {key}")
    assert _pipeline_threads() == []


def test_reader_error_is_the_typed_error_with_threads_joined(plate, tmp_path) -> None:
    bad = Path(plate.replace("####", "1004"))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size * 2 // 3])  # header intact, pixels cut off
    out = tmp_path / "out"
    args = ["render", plate, "-o", str(out / "v.####.exr"), "--model", SMALL, "--device", "cpu",
            "--batch-windows", "2"]
    with pytest.raises(CorruptFileError, match="plate.1004.exr"):
        render(RenderJob(input=plate, output=str(out / "v.####.exr"),
                         engine=EngineOptions(model=SMALL, device="cpu", batch_windows=2)))
    assert _pipeline_threads() == []
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("Progress")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "plate.1004.exr" in lines[0], result.output
    assert _pipeline_threads() == []
    # frames whose flows never touch 1004 may be complete; nothing partial, no temp file
    names = sorted(p.name for p in out.iterdir())
    assert set(names) <= {"v.1001.exr", "v.1002.exr"}, names
    for name in names:
        assert set(read_exr(out / name)[0]) >= {"forward.u", "backward.u"}


def _no_file_growth() -> None:
    # in the child, before exec: any write that would grow a file fails with EFBIG instead of a signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_writer_error_is_one_error_line_and_leaves_nothing(plate, tmp_path) -> None:
    from tests.faults.conftest import installed_command

    out = tmp_path / "out"
    args = ["render", plate, "-o", str(out / "v.####.exr"), "--model", SMALL, "--device", "cpu",
            "--batch-windows", "2"]
    done = subprocess.run([installed_command(), *args], capture_output=True, text=True, timeout=300,
                          preexec_fn=_no_file_growth)
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "v.1001.exr" in errors[0], output
    assert sorted(os.listdir(out)) == [], "the failed writes left files behind"
