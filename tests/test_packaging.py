"""Packaging facts that break quietly: the explicit package list, and CI running the README's command."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import REPO_ROOT


def test_every_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for init in (REPO_ROOT / "daflow_vfx").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert config["package-dir"]["daflow_vfx.cli"] == "cli"
    assert "cli" not in listed  # never a generic top-level module


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```(?:bash|sh)\n(.*?)\n```", quick_start, re.S)
    assert len(commands) == 2, "the quick start has exactly two commands"
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert commands[1].strip() in ci

