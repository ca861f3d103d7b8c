"""The one registry of models: what it says matches what it builds, and the CLI's texts come from it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from daflow_vfx import registry
from daflow_vfx.errors import ModelError
from daflow_vfx.registry import FLOW_INITS, NETWORKS


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_each_param_count_is_the_built_networks(name: str) -> None:
    from daflow_vfx.model.dit import param_count

    entry = NETWORKS[name]
    with torch.device("meta"):  # shapes only: daflow-full is 2.35 B parameters
        network = entry.build_network()
    assert param_count(network) == entry.params
    assert (network.backbone is not None) == entry.backbone


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_each_weights_spec_is_complete(name: str) -> None:
    entry = NETWORKS[name]
    assert entry.iters >= 1 and entry.window == 3
    assert entry.flow_init in (None, *FLOW_INITS)
    # a shipped file is pinned by its digest; a file still to come (a device run's) has none yet
    if entry.weights_present():
        assert entry.sha256 is not None and len(entry.sha256) == 64
    if entry.file is None:
        assert entry.sha256 is None


def test_the_default_is_a_learned_model_with_shipped_weights() -> None:
    default = registry.entry("default")
    assert default.name == registry.resolve_default_model() == registry.DEFAULT_VARIANT
    assert isinstance(default, registry.NetworkEntry) and default.file is not None


def test_an_unknown_name_lists_every_model() -> None:
    with pytest.raises(ModelError, match="unknown model 'nope'") as caught:
        registry.load_estimator("nope")
    assert caught.value.param == "model"
    for name in registry.model_names():
        assert name in str(caught.value)
    with pytest.raises(ModelError, match="classical"):
        registry.network_entry("dis")


def _help(*args: str) -> str:
    from daflow_vfx.cli import main

    text = " ".join(CliRunner().invoke(main, [*args, "--help"]).output.split())
    return text.replace("- ", "-")  # click wraps long names at their hyphens


def _option_help(text: str, option: str) -> str:
    """The help of ``option`` in a one-line ``--help`` text: up to the next option."""
    after = text.split(f" {option} ", 1)[1]
    return after.split(" --", 1)[0]


def test_help_texts_come_from_the_registry() -> None:
    render = _help("render")
    for name in registry.model_names():
        assert name in _option_help(render, "--model")
    iters = _option_help(render, "--iters")
    for name, entry in NETWORKS.items():
        assert f"{name} {entry.iters}" in iters  # each model's own default, not one number for all
    # a bench command that needs the diffusion backbone offers only the variants that have one
    budget = _option_help(_help("bench", "budget"), "--model")
    listed = budget.split(": ", 1)[1].split(".", 1)[0].split(", ")
    assert listed == registry.network_names(backbone=True) and "daflow-compact-cnn" not in listed


def test_listing_models_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from daflow_vfx.cli import main\n"
        "out = CliRunner().invoke(main, ['models']).output\n"
        "assert 'daflow-compact-noprior' in out and '12.6M' in out, out\n"
        "assert 'torch' not in sys.modules and 'cv2' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
