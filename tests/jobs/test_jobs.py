"""The job layer: one set of engine options for every flow command, one way to build the engine, the
shared output helpers, and the same errors from the array APIs for the same mistakes."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from daflow_vfx.errors import SequenceTooShortError, UsageError
from daflow_vfx.jobs.flow import FlowJob
from daflow_vfx.jobs.options import EngineOptions, build_engine
from daflow_vfx.jobs.outputs import output_kind, sidecar_path
from daflow_vfx.jobs.render import RenderJob
from daflow_vfx.jobs.retime import RetimeJob
from daflow_vfx.jobs.stabilize import StabilizeJob
from daflow_vfx.vfx.retiming import retime
from daflow_vfx.vfx.stabilization import stabilize
from daflow_vfx.vfx.timing import speed_map
from tests.helpers import translated_frames


@pytest.mark.parametrize("job", [RenderJob, FlowJob, RetimeJob, StabilizeJob])
def test_every_flow_job_holds_the_engine_options_and_no_copy_of_them(job) -> None:
    names = {f.name for f in fields(job)}
    assert "engine" in names
    assert not names & {f.name for f in fields(EngineOptions)}


def test_engine_options_are_checked_when_made_and_name_the_parameter() -> None:
    for bad, param in (({"dtype": "float64"}, "dtype"), ({"tile": 0}, "tile"), ({"tile_pad": -1}, "tile_pad"),
                       ({"threads": 0}, "threads"), ({"max_memory": "lots"}, "max_memory")):
        with pytest.raises(UsageError) as caught:
            EngineOptions(**bad)
        assert caught.value.param == param and "--" not in str(caught.value)


def test_build_engine_passes_every_option() -> None:
    options = EngineOptions(model="dis", device="cpu", tile=64, tile_pad=8, max_memory="1G", threads=1)
    engine = build_engine(options)
    assert (engine.estimator.name, engine.device, engine.tile, engine.tile_pad) == ("dis", "cpu", 64, 8)
    assert (engine.max_memory, engine.threads) == (2**30, 1)


def test_retime_arrays_use_the_engine_they_are_given() -> None:
    frames = translated_frames(3, 32, 48, dx=1, dy=0)
    engine = build_engine(EngineOptions(model="dis", device="cpu", tile=24, tile_pad=4))
    calls = []
    flows = engine.flows

    def counted(*args, **kwargs):
        calls.append(args)
        return flows(*args, **kwargs)

    engine.flows = counted
    result = retime(frames, speed_map(0, 2, 0.5), engine=engine)
    assert calls and len(result.images) == 4


def test_retime_and_stabilize_raise_the_same_errors_for_the_same_mistakes() -> None:
    frames = translated_frames(2, 16, 16, dx=1, dy=0)
    with pytest.raises(SequenceTooShortError):
        retime(frames[:1], [(0, 0.0)])
    with pytest.raises(SequenceTooShortError):
        stabilize(frames[:1], [])
    with pytest.raises(UsageError) as caught:
        retime(frames, [(0, 0.5)], forward=np.zeros((1, 8, 8, 2)), backward=np.zeros((1, 8, 8, 2)))
    assert caught.value.params == ("forward", "backward")
    with pytest.raises(UsageError) as caught:
        stabilize(frames, [np.zeros((16, 16, 2))] * 2)
    assert caught.value.param == "flows"
    with pytest.raises(UsageError) as caught:
        retime(frames, [(0, 0.5)], method="warp")
    assert caught.value.param == "method"


@pytest.mark.parametrize(("output", "kind"), [("out/a.####.exr", "sequence"), ("out/a.%04d.png", "sequence"),
                                              ("out/a.mov", "video")])
def test_output_kinds(output, kind) -> None:
    assert output_kind(output) == kind


@pytest.mark.parametrize(("output", "message"), [("out/a.png", "no frame token"),
                                                 ("out/a.####.gif", "unsupported extension")])
def test_bad_outputs_name_the_parameter(output, message) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        output_kind(output, param="stmap")
    assert caught.value.param == "stmap"


def test_one_sidecar_rule_for_every_tool() -> None:
    for tool in ("retime", "stabilize"):
        assert sidecar_path("out/sh010_####.exr", tool) == f"out/sh010.{tool}.json"
        assert sidecar_path("sh010.mp4", tool) == f"sh010.{tool}.json"
