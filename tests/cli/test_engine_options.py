"""One decorator gives every flow command the same engine options; library errors show as flags."""

from __future__ import annotations

from dataclasses import fields

import click
import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.cli._common import DaflowClickError, option_flags
from daflow_vfx.errors import UsageError
from daflow_vfx.jobs.options import EngineOptions
from tests.helpers import translated_frames, write_sequence

FLOW_COMMANDS = ("render", "flow", "retime", "stabilize", "propagate")


def _options(name: str) -> dict[str, click.Option]:
    return {p.name: p for p in main.commands[name].params if isinstance(p, click.Option)}


def test_every_flow_command_takes_the_same_engine_options() -> None:
    wanted = {f.name for f in fields(EngineOptions)}
    spelled = None
    for name in FLOW_COMMANDS:
        options = _options(name)
        assert wanted <= set(options), f"{name} lacks {sorted(wanted - set(options))}"
        same = {n: (tuple(options[n].opts), options[n].default, options[n].help) for n in wanted}
        assert spelled is None or same == spelled, name
        spelled = same


def test_marked_parameters_become_the_commands_flags() -> None:
    flags = option_flags(main.commands["stabilize"])
    assert flags["tile_pad"] == "--tile-pad" and flags["interpolation"] == "--filter"
    error = UsageError("`strength` 2 is out of range for frames 1-2; `tile_pad` too, and `min_crop`",
                       param=("strength", "tile_pad", "min_crop"))
    message = DaflowClickError(error, flags).message
    # only the marked names change: the word "frames" stays, a parameter with no flag loses its marks
    assert message == "--strength 2 is out of range for frames 1-2; --tile-pad too, and min_crop"
    assert option_flags(main.commands["retime"])["fps"] == "--fps"  # the option is named "rate"


@pytest.mark.parametrize("command", ["retime", "stabilize"])
def test_retime_and_stabilize_take_the_performance_options(tmp_path, command) -> None:
    plate = write_sequence(tmp_path / "plate", translated_frames(3, 32, 48, dx=1, dy=0))
    timing = ["--speed", "0.5"] if command == "retime" else []
    args = [command, plate, "-o", str(tmp_path / "out" / "o.####.png"), *timing, "--model", "dis"]
    performance = ["--max-memory", "64M", "--threads", "1", "--compile", "--tile", "32", "--tile-pad", "8"]
    result = CliRunner().invoke(main, [*args, *performance])
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(main, [*args, "--max-memory", "8Q"])
    assert bad.exit_code == 2 and bad.output.strip().splitlines()[-1].startswith("Error: --max-memory: ")
