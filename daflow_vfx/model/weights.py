"""Strict safetensors loading of the registry's learned models.

What each variant is (network factory, shipped file, sha256, iterations, prior, input transform) is
:mod:`daflow_vfx.registry`; this module builds a variant's network and loads weights into it, strictly
and sha-checked. Nothing here downloads: weights are shipped in the package or read from a local path
the user gives. ``REGISTRY``, ``get_entry``, ``InputTransform``, ``FLOW_INITS`` and ``WEIGHTS_DIR`` are
the registry's, under the names training and the tests import them by.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from ..registry import FLOW_INITS, WEIGHTS_DIR, InputTransform, NetworkEntry, network_entry, runnable_names
from ..registry import NETWORKS as REGISTRY
from .daflow import DAFlow

__all__ = [
    "FLOW_INITS",
    "REGISTRY",
    "WEIGHTS_DIR",
    "InputTransform",
    "build_model",
    "flow_init_of",
    "get_entry",
    "load_full_from_folder",
    "load_state_strict",
    "load_weights",
    "read_metadata",
    "save_weights",
    "sha256_file",
]


def get_entry(name: str) -> NetworkEntry:
    """The registry entry of a learned model (ModelError for unknown and classical names)."""
    return network_entry(name)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_weights(
    model: nn.Module, path: str | os.PathLike, *, metadata: Mapping[str, object] | None = None
) -> str:
    """Write the model's state dict as safetensors (atomically, :func:`save_state`); return its sha256."""
    path = Path(path)
    save_state({k: v.detach().cpu() for k, v in model.state_dict().items()}, path, metadata=metadata)
    return sha256_file(path)


def save_state(state: Mapping[str, torch.Tensor], path: str | os.PathLike, *,
               metadata: Mapping[str, object] | None = None) -> None:
    """Write tensors as one safetensors file, atomically (a hidden temp renamed into place).

    Metadata values are stored as strings (JSON for non-strings), as safetensors requires.
    """
    from safetensors.torch import save_file

    path = Path(path)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def flow_init_of(entry: NetworkEntry, weights: str | os.PathLike | None) -> str | None:
    """The initial flow the weights expect: a weights file says so in its metadata (``flow_init``);
    without a file (random weights, tests) the registry entry decides."""
    path = Path(weights) if weights is not None else entry.path
    if path is None or not path.is_file():
        return entry.flow_init
    value = read_metadata(path).get("flow_init") or None
    if value is not None and value not in FLOW_INITS:
        known = ", ".join(FLOW_INITS)
        raise WeightsError(f"{path}: unknown flow_init {value!r} in its metadata; known: {known}")
    return value


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _read_state(paths: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for p in paths:
        if not p.is_file():
            raise WeightsError(f"{p}: weights file not found; check the path you gave")
        try:
            state.update(load_file(str(p)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(
                f"{p}: not a readable safetensors file ({exc}); re-copy or re-export it"
            ) from None
    return state


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the file and the key mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
        raise WeightsError(f"{source}: weights do not match the model: {'; '.join(parts)}")
    for k, v in state.items():
        want = tuple(expected[k].shape)
        if tuple(v.shape) != want:
            raise WeightsError(f"{source}: tensor {k} has shape {tuple(v.shape)}, the model expects {want}")
    model.load_state_dict(state, strict=True)


def load_weights(model: nn.Module, path: str | os.PathLike, *, expected_sha256: str | None = None) -> str:
    """Load one safetensors file strictly into ``model``; return its sha256."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found; check the path you gave")
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise WeightsError(
            f"{path}: sha256 {digest[:12]}... does not match the registry's {expected_sha256[:12]}...; "
            "the file is corrupt or from another version: reinstall daflow-vfx"
        )
    load_state_strict(model, _read_state([path]), source=str(path))
    return digest


def _shards(folder: Path) -> list[Path]:
    index = sorted(folder.glob("*.safetensors.index.json"))
    if index:
        names = sorted(set(json.loads(index[0].read_text())["weight_map"].values()))
        return [folder / n for n in names]
    return sorted(folder.glob("*.safetensors"))


def load_full_from_folder(model: DAFlow, folder: str | os.PathLike) -> str:
    """Load ``daflow-full`` weights from a local folder; return a combined sha256.

    Expected layout (diffusers-style), every file read locally:

    - ``transformer/*.safetensors`` (optionally sharded with an ``.index.json``): keys of
      :class:`~daflow_vfx.model.dit.LiftedMMDiT` (``pos_embed.proj.*``, ``cond_embed.proj.*``,
      ``time_embed.*``, ``frame_embed.*``, ``transformer_blocks.N.*``, ``norm_out.*``, ``proj_out.*``);
    - ``vae/*.safetensors``: diffusers ``AutoencoderKL`` keys of SD3's VAE;
    - ``flow/*.safetensors``: every other DA-Flow key (``dpt_*``, ``feature_encoder.*``,
      ``context_encoder.*``, ``update_block.*``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(
            f"{folder}: not a folder; give the daflow-full weights folder (transformer/, vae/, flow/)"
        )
    state: dict[str, torch.Tensor] = {}
    digests = []
    for sub, prefix in (("transformer", "backbone."), ("vae", "frontend.vae."), ("flow", "")):
        files = _shards(folder / sub)
        if not files:
            raise WeightsError(
                f"{folder / sub}: no .safetensors files; daflow-full needs transformer/, vae/ and flow/"
            )
        for k, v in _read_state(files).items():
            state[prefix + k] = v
        digests.extend(sha256_file(p) for p in files)
    load_state_strict(model, state, source=str(folder))
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def build_model(
    name: str, *, weights: str | os.PathLike | None = None, allow_random: bool = False
) -> tuple[DAFlow, NetworkEntry, str | None]:
    """Build a registered variant and load its weights; return (model, entry, weights sha256).

    ``weights`` overrides the shipped file (a safetensors file, or a folder for daflow-full).
    Random weights are only for tests and timing (``allow_random``), never a user default.
    """
    entry = get_entry(name)
    path: Path | None = Path(weights) if weights is not None else entry.path
    # Decide before building: the full variant is 2.35 B parameters (~9 GB in float32).
    if path is None or (weights is None and not path.is_file()):
        if allow_random:
            return entry.build_network(), entry, None
        how = " (pass a local weights path with --weights)" if entry.file is None else f" ({path} is missing)"
        raise WeightsError(
            f"model {name!r} has no trained weights here{how}; available: {', '.join(runnable_names())}"
        )
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found; check the path you gave")
    model = entry.build_network()
    if path.is_dir():
        digest = load_full_from_folder(model, path)
    else:
        digest = load_weights(model, path, expected_sha256=entry.sha256 if weights is None else None)
    model.eval()
    return model, entry, digest
