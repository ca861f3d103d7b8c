"""Shared helpers for the farm tests: running `daflow-vfx submit` in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from daflow_vfx.cli import main

PLATE = "/plates/sh 010/sh010.####.exr"  # a space: every farm must keep the argument whole


@pytest.fixture
def submit(tmp_path: Path):
    """``submit(farm, *farm_options, job=[...])`` -> click Result; output under tmp_path/vec."""

    def run(farm: str, *options: str, job: list[str] | None = None) -> Result:
        job = job if job is not None else ["render", PLATE, "-o", str(tmp_path / "vec" / "sh010.####.exr"),
                                           "--frames", "1001-1025", "--model", "dis"]
        return CliRunner().invoke(main, ["submit", "--farm", farm, *options, *job])

    return run
