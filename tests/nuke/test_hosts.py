"""daflow_vfx.hosts.nuke: knob values -> command lines, frame ranges, progress, the background process,
and the idempotent ~/.nuke/init.py installer. No Nuke needed."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from daflow_vfx.errors import FrameSpecError, UsageError
from daflow_vfx.hosts import nuke as hosts
from daflow_vfx.hosts.nuke import NodeSettings


def settings(tmp_path: Path, **overrides) -> NodeSettings:
    knobs = {"model": "dis", "device": "cpu", "frame_range": "", "layout": "nuke", "input_colorspace": "auto",
             "output_folder": str(tmp_path / "vec"), "output_name": "sh010.####.exr", "executable": "",
             "chunk_size": 5.0, "skip_existing": False, "vector_detail": 1.0}
    knobs.update(overrides)
    return NodeSettings.from_knobs(knobs, input="/plates/sh010.%04d.exr", node_name="DAFlow1",
                                   input_first=1001, input_last=1010)


def test_knobs_to_render_args(tmp_path) -> None:
    s = settings(tmp_path)
    assert s.chunk_size == 5  # Nuke hands integer knobs over as floats
    args = hosts.render_args(s)
    assert args == ["render", "/plates/sh010.%04d.exr", "-o", str(tmp_path / "vec" / "sh010.####.exr"),
                    "--frames", "1001-1010", "--layout", "nuke", "--model", "dis", "--device", "cpu",
                    "--input-colorspace", "auto", "--detail", "1"]
    args = hosts.render_args(settings(tmp_path, frame_range="1003-1005", layout="both", skip_existing=True,
                                      input_colorspace="log", vector_detail=0.5))
    assert args[args.index("--detail") + 1] == "0.5"
    assert args[args.index("--frames") + 1] == "1003-1005"
    assert args[args.index("--layout") + 1] == "both"
    assert args[args.index("--input-colorspace") + 1] == "log"
    assert args[-1] == "--skip-existing"
    # the frames override is what the farm uses
    farm = hosts.render_args(s, frames="<STARTFRAME>-<ENDFRAME>")
    assert farm[farm.index("--frames") + 1] == "<STARTFRAME>-<ENDFRAME>"


def test_frame_ranges(tmp_path) -> None:
    assert hosts.frame_list(settings(tmp_path)) == list(range(1001, 1011))
    assert hosts.frame_list(settings(tmp_path, frame_range="1001-1009x4")) == [1001, 1005, 1009]
    assert hosts.frame_list(settings(tmp_path, frame_range="1002, 1004-1005")) == [1002, 1004, 1005]
    with pytest.raises(UsageError, match="1011-1012 are outside the input's range 1001-1010"):
        hosts.frame_list(settings(tmp_path, frame_range="1009-1012"))
    with pytest.raises(FrameSpecError):
        hosts.frame_list(settings(tmp_path, frame_range="10-a"))
    no_range = NodeSettings.from_knobs({"output_folder": "/x"}, input="p.####.exr")
    with pytest.raises(UsageError, match="set the frame range knob"):
        hosts.frame_list(no_range)


def test_output_pattern(tmp_path) -> None:
    folder = tmp_path / "vec"
    assert hosts.output_pattern(settings(tmp_path, output_name="v.%04d.exr")) == str(folder / "v.####.exr")
    assert hosts.output_pattern(settings(tmp_path, output_name="v.#.exr")) == str(folder / "v.####.exr")
    six = settings(tmp_path, output_name="v.######.exr")
    assert hosts.output_pattern(six) == str(folder / "v.######.exr")
    assert hosts.output_pattern(settings(tmp_path, output_name="")) == str(folder / "vectors.####.exr")
    for bad, message in (("v.exr", "no frame token"), ("v.####.png", "must end in .exr"),
                         ("sub/v.####.exr", "must be a file name")):
        with pytest.raises(UsageError, match=message):
            hosts.output_pattern(settings(tmp_path, output_name=bad))
    with pytest.raises(UsageError, match="output folder is empty"):
        hosts.output_pattern(settings(tmp_path, output_folder=""))


def test_invalid_knobs(tmp_path) -> None:
    with pytest.raises(UsageError, match="layout 'blender'"):
        hosts.render_args(settings(tmp_path, layout="blender"))
    with pytest.raises(UsageError, match="colourspace"):
        hosts.render_args(settings(tmp_path, input_colorspace="srgb\nlinear"))
    # OCIO names go through to the render, which checks them against the config
    args = hosts.render_args(settings(tmp_path, input_colorspace="ARRI LogC3 (EI800)"))
    assert args[args.index("--input-colorspace") + 1] == "ARRI LogC3 (EI800)"
    with pytest.raises(UsageError, match="device"):
        hosts.render_args(settings(tmp_path, device="gpu0"))
    args = hosts.render_args(settings(tmp_path, device="cuda:1"))
    assert args[args.index("--device") + 1] == "cuda:1"


def test_vector_detail_knob(tmp_path) -> None:
    from daflow_vfx.cli import main

    for value in (0.0, -1.0, 1.5, float("nan")):
        with pytest.raises(UsageError, match=r"DAFlow1: vector detail .* in \(0, 1\]"):
            hosts.render_args(settings(tmp_path, vector_detail=value))
    # a node saved before the knob existed renders at full detail
    knobs = {"output_folder": str(tmp_path), "model": "dis"}
    assert NodeSettings.from_knobs(knobs, input="p.####.exr").detail == 1.0
    # a slider's float noise is not carried into the command line, and the real CLI takes what is
    args = hosts.render_args(settings(tmp_path, vector_detail=0.1 + 0.2))
    assert args[args.index("--detail") + 1] == "0.3"
    ctx = main.commands["render"].make_context("render", args[1:])
    assert ctx.params["detail"] == 0.3
    farm = hosts.deadline_job(settings(tmp_path, vector_detail=0.5))
    assert farm.arguments[farm.arguments.index("--detail") + 1] == "0.5"


def test_colorspaces_match_the_library() -> None:
    from daflow_vfx.color import COLORSPACES

    assert hosts.COLORSPACES == COLORSPACES


def test_executable_resolution(tmp_path) -> None:
    exe = tmp_path / "my bin" / "daflow-vfx"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    assert hosts.resolve_executable("", env={}) == ["daflow-vfx"]
    assert hosts.resolve_executable("", env={hosts.EXECUTABLE_ENV: "/opt/df/bin/daflow-vfx"}) == [
        "/opt/df/bin/daflow-vfx"]
    assert hosts.resolve_executable(str(exe), env={hosts.EXECUTABLE_ENV: "/x"}) == [str(exe)]  # spaces kept
    assert hosts.resolve_executable("rez env daflow -- daflow-vfx", env={}) == [
        "rez", "env", "daflow", "--", "daflow-vfx"]
    command = hosts.command_line(settings(tmp_path, executable=str(exe)))
    assert command[:2] == [str(exe), "render"]


def test_source_plate(tmp_path) -> None:
    for f in (1, 2, 3):
        (tmp_path / f"p.{f:04d}.exr").write_bytes(b"")
    pattern = str(tmp_path / "p.####.exr")
    assert hosts.source_plate(pattern, [1, 2, 3]) == pattern
    assert hosts.source_plate(str(tmp_path / "p.%04d.exr"), [2, 3]) == str(tmp_path / "p.%04d.exr")
    assert hosts.source_plate(pattern, [2, 3, 4]) is None  # a frame is missing: write the input first
    assert hosts.source_plate(str(tmp_path / "clip.mov"), [1]) is None
    assert hosts.source_plate(None, [1]) is None
    cache = os.path.join("/out", "plate", "DAFlow1.plate.####.exr")
    assert hosts.plate_cache_pattern("/out", "DAFlow1") == cache


def test_parse_progress() -> None:
    assert hosts.parse_progress("Progress: 0%") == 0
    assert hosts.parse_progress("Progress: 42%\n") == 42
    assert hosts.parse_progress("Progress: 100%") == 100
    assert hosts.parse_progress("Wrote 3 EXR(s)") is None
    assert hosts.parse_progress("Error: Progress: 5%") is None


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "fake_render.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_run_render_reports_progress_and_errors(tmp_path) -> None:
    argv = _script(tmp_path, "import sys\nfor p in (0, 50, 100):\n    print(f'Progress: {p}%', flush=True)\n"
                   "print('Error: plate.1002.exr: frame 1002 is missing; render it', file=sys.stderr)\n"
                   "sys.exit(1)\n")
    seen: list[int] = []
    result = hosts.run_render(argv, progress=seen.append)
    assert seen == [0, 50, 100]
    assert result.returncode == 1 and not result.cancelled
    assert result.error == "Error: plate.1002.exr: frame 1002 is missing; render it"


def test_run_render_cancels(tmp_path) -> None:
    argv = _script(tmp_path, "import time\nprint('Progress: 0%', flush=True)\ntime.sleep(60)\n")
    seen: list[int] = []
    started = time.monotonic()
    result = hosts.run_render(argv, progress=seen.append, cancelled=lambda: bool(seen))
    assert result.cancelled and result.returncode != 0
    assert time.monotonic() - started < 20
    assert result.error is None  # cancelling is not an error


def test_run_render_missing_executable(tmp_path) -> None:
    with pytest.raises(UsageError, match="executable knob"):
        hosts.run_render([str(tmp_path / "no-such-daflow-vfx"), "render"])


def test_install_writes_the_lines_once(tmp_path) -> None:
    nuke_dir = tmp_path / "dot nuke"
    plugin = tmp_path / "site" / "daflow_vfx" / "plugins_nuke"
    first = hosts.install(nuke_dir, plugin_path=plugin, executable="/opt/df/bin/daflow-vfx")
    assert first.changed and first.init_path == nuke_dir / "init.py"
    text = first.init_path.read_text()
    assert f"nuke.pluginAddPath({str(plugin)!r})" in text
    assert "os.environ.setdefault('DAFLOW_VFX_EXECUTABLE', '/opt/df/bin/daflow-vfx')" in text
    compile(text, "init.py", "exec")
    again = hosts.install(nuke_dir, plugin_path=plugin, executable="/opt/df/bin/daflow-vfx")
    assert not again.changed
    assert again.init_path.read_text() == text
    assert not [p for p in os.listdir(nuke_dir) if p != "init.py"]  # no temp files left


def test_install_keeps_other_lines_and_updates_a_moved_plugin(tmp_path) -> None:
    init = tmp_path / "init.py"
    init.write_text("import nuke\nnuke.pluginAddPath('/studio/tools')")  # no trailing newline
    hosts.install(tmp_path, plugin_path="/old/place")
    hosts.install(tmp_path, plugin_path="/new/place")
    text = init.read_text()
    assert text.startswith("import nuke\nnuke.pluginAddPath('/studio/tools')\n")
    assert text.count(hosts.BLOCK_BEGIN) == 1 and text.count(hosts.BLOCK_END) == 1
    assert "/old/place" not in text and text.count("nuke.pluginAddPath('/new/place')") == 1
    assert "DAFLOW_VFX_EXECUTABLE" not in text  # none given
    compile(text, "init.py", "exec")


def test_plugin_dir_is_the_plugin_folder() -> None:
    folder = hosts.plugin_dir()
    assert (folder / "init.py").is_file() and (folder / "menu.py").is_file()
    assert (folder / "gizmos" / "DAFlow.gizmo").is_file()
    assert (folder / "daflow_nuke" / "__init__.py").is_file()


def test_read_colorspace_knob() -> None:
    assert hosts.read_colorspace("default (sRGB)") == "srgb"
    assert hosts.read_colorspace("Cineon") == "log"
    assert hosts.read_colorspace("AlexaV3LogC") == "ARRI LogC3 (EI800)"
    assert hosts.read_colorspace("ACES - ACEScg") == "ACES - ACEScg"   # OCIO names pass through
    assert hosts.read_colorspace("") is None and hosts.read_colorspace(None) is None
