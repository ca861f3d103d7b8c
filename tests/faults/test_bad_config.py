"""Corrupt presets and weights: one ``Error:`` line that names the file, the right exit code, and nothing
written, not even the output folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import FAST, assert_one_error, run_cli, snapshot

RENDER = ["render", "exr/p.####.exr", "-o", "out/new/v.####.exr"]

PRESETS = {
    "binary file": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\xfd" * 8, "not a text file"),
    "invalid YAML": (b"layout: [unclosed\n", "not valid YAML"),
    "a list": (b"- layout\n- nuke\n", "must be a mapping"),
    "unknown key": (b"layuot: blender\n", "unknown key(s) layuot"),
    "wrong type for --tile": (b"tile: abc\n", "preset key 'tile'"),
    "wrong type for a flag": (b"skip-existing: maybe\n", "preset key 'skip-existing'"),
    "tile out of range": (b"tile: 4\n", "preset key 'tile'"),
}


@pytest.mark.parametrize(("content", "message"), list(PRESETS.values()), ids=list(PRESETS))
def test_corrupt_preset_is_a_usage_error_naming_the_preset(work, content, message) -> None:
    preset = work / "preset.yaml"
    preset.write_bytes(content)
    before = snapshot(work)
    line = assert_one_error(run_cli(*RENDER, *FAST, "--config", preset, cwd=work), 2, message)
    assert "preset.yaml" in line and "Invalid value for" not in line  # the preset, not a typed flag
    assert snapshot(work) == before


def test_missing_preset_is_a_usage_error(work) -> None:
    before = snapshot(work)
    assert_one_error(run_cli(*RENDER, *FAST, "--config", "nothing.yaml", cwd=work), 2, "nothing.yaml")
    assert snapshot(work) == before


WEIGHTS = {
    "garbage bytes": lambda path: path.write_bytes(b"\x00\x01not safetensors at all" * 64),
    "truncated file": lambda path: path.write_bytes(_shipped_weights().read_bytes()[:4096]),
    "missing file": lambda path: None,
}


def _shipped_weights() -> Path:
    import daflow_vfx

    return min((Path(daflow_vfx.__file__).parent / "weights").glob("*.safetensors"))


@pytest.mark.parametrize("make", list(WEIGHTS.values()), ids=list(WEIGHTS))
def test_corrupt_weights_fail_before_any_folder_is_made(work, make) -> None:
    weights = work / "w.safetensors"
    make(weights)
    before = snapshot(work)
    result = run_cli(*RENDER, "--model", "daflow-compact", "--device", "cpu", "--weights", weights, cwd=work)
    assert_one_error(result, 1, "w.safetensors")
    assert snapshot(work) == before  # no out/, no out/new/
