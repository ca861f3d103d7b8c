"""Where a benchmark's markdown goes: printed by default, --output FILE, --update-docs in a checkout only."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from daflow_vfx.bench import markdown
from daflow_vfx.cli import main
from daflow_vfx.errors import UsageError

QUICK = ["bench", "speed", "--sizes", "64x48", "--models", "dis", "--repeats", "1", "--warmup", "0",
         "--threads", "1", "--reuse-frames", "0", "--in-process"]


def _tree(root: Path, *, checkout: bool) -> Path:
    """A fake install at ``root``: daflow_vfx/ alone, or inside a checkout with docs/benchmarks.md."""
    package = root / "daflow_vfx"
    package.mkdir(parents=True)
    if checkout:
        (root / "pyproject.toml").write_text("[project]\nname = 'daflow-vfx'\n")
        (root / "docs").mkdir()
        (root / "docs" / "benchmarks.md").write_text("# Benchmarks\n\nintro stays\n")
    return package


def test_by_default_the_section_is_printed_and_no_file_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the old default wrote docs/benchmarks.md under the current folder
    res = CliRunner().invoke(main, QUICK)
    assert res.exit_code == 0, res.output
    assert "| dis |" in res.output and "## Speed and memory (CPU)" in res.output
    assert list(tmp_path.iterdir()) == []


def test_update_docs_rewrites_the_checkouts_section(tmp_path, monkeypatch):
    monkeypatch.setattr(markdown, "PACKAGE_DIR", _tree(tmp_path / "src", checkout=True))
    res = CliRunner().invoke(main, [*QUICK, "--update-docs"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "src" / "docs" / "benchmarks.md").read_text()
    assert "intro stays" in text and text.count("<!-- speed-cpu:begin -->") == 1 and "| dis |" in text


def test_update_docs_of_an_installed_package_is_one_clean_error(tmp_path, monkeypatch):
    monkeypatch.setattr(markdown, "PACKAGE_DIR", _tree(tmp_path / "site-packages", checkout=False))
    res = CliRunner().invoke(main, [*QUICK, "--update-docs"])
    assert res.exit_code == 2
    assert res.output.startswith("Error: --update-docs rewrites docs/benchmarks.md of a source checkout")
    assert "--output" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "docs").exists()
    with pytest.raises(UsageError) as caught:
        markdown.checkout_benchmarks()
    assert caught.value.params == ("update_docs", "output")


def test_output_and_update_docs_together_are_refused(tmp_path):
    res = CliRunner().invoke(main, [*QUICK, "--output", str(tmp_path / "b.md"), "--update-docs"])
    assert res.exit_code == 2 and "give --output or --update-docs, not both" in res.output
    assert not (tmp_path / "b.md").exists()


def test_this_checkout_has_its_docs():
    assert markdown.checkout_benchmarks() == Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    assert markdown.output_target("-") is None and markdown.output_target(None) is None
    assert markdown.output_target("x.md") == "x.md"
