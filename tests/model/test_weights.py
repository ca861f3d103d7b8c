"""Weights registry: strict, bit-exact safetensors round trips and clean errors."""

import pytest
import torch

from daflow_vfx.errors import WeightsError
from daflow_vfx.model.weights import (
    REGISTRY,
    build_model,
    load_weights,
    read_metadata,
    save_weights,
    sha256_file,
)

from .conftest import tiny_daflow


def test_round_trip_is_strict_and_bit_exact(tmp_path):
    torch.manual_seed(0)
    a = tiny_daflow()
    path = tmp_path / "w.safetensors"
    digest = save_weights(a, path, metadata={"steps": 3, "note": "test"})
    assert digest == sha256_file(path)
    assert read_metadata(path) == {"steps": "3", "note": "test"}
    torch.manual_seed(1)
    b = tiny_daflow()
    assert load_weights(b, path, expected_sha256=digest) == digest
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_corrupt_file_is_a_clean_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00\x01not safetensors")
    with pytest.raises(WeightsError, match="bad.safetensors"):
        load_weights(tiny_daflow(), path)


def test_mismatched_file_names_the_keys(tmp_path):
    path = tmp_path / "other.safetensors"
    save_weights(tiny_daflow(backbone=False), path)
    with pytest.raises(WeightsError, match=r"other\.safetensors: weights do not match the model: missing"):
        load_weights(tiny_daflow(), path)


def test_sha256_mismatch_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(tiny_daflow(), path)
    with pytest.raises(WeightsError, match="does not match the registry"):
        load_weights(tiny_daflow(), path, expected_sha256="0" * 64)


def test_missing_file_is_a_clean_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tiny_daflow(), tmp_path / "nope.safetensors")


def test_full_needs_a_local_path_and_names_alternatives():
    with pytest.raises(WeightsError, match="no trained weights.*--weights.*dis"):
        build_model("daflow-full")


def test_full_folder_without_files_names_the_folder(tmp_path):
    from daflow_vfx.model.weights import load_full_from_folder

    with torch.device("meta"):
        from daflow_vfx.model.daflow import daflow_full

        model = daflow_full()
    with pytest.raises(WeightsError, match="transformer"):
        load_full_from_folder(model, tmp_path)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_shipped_files_match_the_registry(name):
    entry = REGISTRY[name]
    if not entry.weights_present():
        pytest.skip(f"{name}: no shipped weights")
    assert entry.sha256 == sha256_file(entry.path)
    model, _, digest = build_model(name)
    assert digest == entry.sha256 and not model.training
