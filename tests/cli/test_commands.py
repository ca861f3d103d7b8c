"""`flow`, `info`, `models`, `demo`, `--version`: in-process through click's test runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx import __version__
from daflow_vfx.cli import main
from tests.helpers import read_exr, translated_frames, write_sequence


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_version_and_help() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("render", "flow", "info", "models", "demo"):
        assert name in result.output
    assert invoke("render", "--help").exit_code == 0
    assert invoke("nonsense").exit_code == 2


def test_flow_writes_flo_and_exr(tmp_path) -> None:
    from daflow_vfx.io.flo import read_flo

    plate = write_sequence(tmp_path, translated_frames(2, 64, 80, dx=-2, dy=1), name="img")
    img1, img2 = plate.replace("####", "1001"), plate.replace("####", "1002")
    result = invoke("flow", img1, img2, "-o", str(tmp_path / "out" / "pair.flo"), "--model", "dis")
    assert result.exit_code == 0, result.output
    flow = read_flo(tmp_path / "out" / "pair.flo")
    assert flow.shape == (64, 80, 2)
    np.testing.assert_allclose(np.median(flow[12:-12, 12:-12].reshape(-1, 2), axis=0), [-2, 1], atol=0.15)

    result = invoke("flow", img1, img2, "-o", str(tmp_path / "pair.exr"), "--layout", "blender",
                    "--model", "dis")
    assert result.exit_code == 0, result.output
    ch, attrs = read_exr(tmp_path / "pair.exr")
    assert np.median(ch["Vector.Z"][12:-12, 12:-12]) == pytest.approx(2, abs=0.15)  # -fwd_u
    assert attrs["daflow/estimator"] == "dis"


def test_flow_bad_inputs(tmp_path) -> None:
    plate = write_sequence(tmp_path, translated_frames(2, 32, 32, dx=1, dy=0), name="img")
    img1 = plate.replace("####", "1001")
    result = invoke("flow", img1, str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.flo"))
    assert result.exit_code == 1 and "missing.png" in result.output and "Traceback" not in result.output
    result = invoke("flow", img1, img1, "-o", str(tmp_path / "o.png"))
    assert result.exit_code == 2 and ".flo or .exr" in result.output
    assert not (tmp_path / "o.flo").exists()


def test_info_text_and_json(tmp_path) -> None:
    plate = write_sequence(tmp_path, translated_frames(4, 24, 40, dx=1, dy=0), name="sh010")
    (tmp_path / "sh010.1003.png").unlink()
    result = invoke("info", plate)
    assert result.exit_code == 0, result.output
    assert "1001-1004 (4 frames)" in result.output and "40x24" in result.output
    assert "missing:  1003" in result.output and "srgb" in result.output
    data = json.loads(invoke("info", plate, "--json").stdout)
    assert data["width"] == 40 and data["missing"] == [1003] and data["channels"][:3] == ["R", "G", "B"]
    missing = invoke("info", str(tmp_path / "nope.####.exr"))
    assert missing.exit_code == 1 and missing.output.startswith("Error: ")


def test_models_lists_the_default() -> None:
    from daflow_vfx.estimators import resolve_default_model

    result = invoke("models")
    assert result.exit_code == 0
    assert "farneback" in result.output and "deepflow" in result.output
    assert any(line.startswith(resolve_default_model()) and "(default)" in line
               for line in result.output.splitlines())


@pytest.mark.slow
def test_demo_writes_plate_ground_truth_and_vectors(tmp_path) -> None:
    result = invoke("demo", "-o", str(tmp_path), "--model", "dis", "--device", "cpu")
    assert result.exit_code == 0, result.output
    plate = sorted(p.name for p in (tmp_path / "plate").glob("*.png"))
    assert plate[0] == "demo.1001.png" and len(plate) == 24
    assert (tmp_path / "plate" / "demo.mp4").stat().st_size > 0
    assert len(list((tmp_path / "gt").glob("*.flo"))) == 23
    vectors = sorted((tmp_path / "vectors").glob("demo.*.exr"))
    assert len(vectors) == 24
    ch, _ = read_exr(vectors[5])
    assert {"forward.u", "forward.v", "Vector.Z", "Vector.W"} <= set(ch)  # demo writes both layouts
    epe = float(result.output.split("mean endpoint error ")[1].split()[0])
    assert epe < 1.0  # DIS on the degraded demo plate; the background pans at (-2.5, 0.75) px/frame


def test_demo_is_deterministic(tmp_path) -> None:
    from daflow_vfx.demo import write_demo_plate

    a = write_demo_plate(str(tmp_path / "a"), frames=3, width=64, height=48)
    b = write_demo_plate(str(tmp_path / "b"), frames=3, width=64, height=48)
    for frame in (1001, 1003):
        assert (tmp_path / "a" / "plate" / f"demo.{frame}.png").read_bytes() == \
            (tmp_path / "b" / "plate" / f"demo.{frame}.png").read_bytes()
    assert a[0].endswith("demo.####.png") and b[0].endswith("demo.####.png")
