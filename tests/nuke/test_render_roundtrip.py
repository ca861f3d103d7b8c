"""Render through exactly the command line the DAFlow node builds, and check the EXRs carry the layers
the node's internal Read and Copy expect. In-process through the CLI, model dis, a tiny plate."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.frames import SequencePattern
from daflow_vfx.hosts.nuke import CHANNELS, NodeSettings, command_line, frame_list, output_pattern
from tests.helpers import read_exr, translated_frames, write_sequence


def test_node_command_line_renders_the_layers_the_read_expects(tmp_path) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 48, 64, dx=2, dy=1), name="sh")
    knobs = {"model": "dis", "device": "cpu", "frame_range": "", "layout": "nuke", "input_colorspace": "auto",
             "output_folder": str(tmp_path / "vectors"), "output_name": "sh.####.exr", "chunk_size": 10}
    settings = NodeSettings.from_knobs(knobs, input=plate, node_name="DAFlow1", input_first=1001,
                                       input_last=1003)
    argv = command_line(settings, env={})
    assert argv[0] == "daflow-vfx"
    result = CliRunner().invoke(main, argv[1:])
    assert result.exit_code == 0, result.output
    assert "Progress: 100%" in result.output  # what the node's progress task parses

    # what the Render button puts into the node's vectors_file / read_first / read_last knobs
    pattern = SequencePattern.parse(output_pattern(settings))
    frames = frame_list(settings)
    assert frames == [1001, 1002, 1003]
    for frame in frames:
        channels, attrs = read_exr(pattern.path(frame))
        assert set(CHANNELS) <= set(channels), sorted(channels)
        assert attrs["daflow/estimator"] == "dis"
    middle, _ = read_exr(pattern.path(1002))
    inner = (slice(12, -12), slice(12, -12))
    # Nuke convention (+v up): the texture moves right and down in the image
    assert np.median(middle["forward.u"][inner]) > 1.0
    assert np.median(middle["forward.v"][inner]) < -0.5
    assert np.median(middle["backward.u"][inner]) < -1.0
