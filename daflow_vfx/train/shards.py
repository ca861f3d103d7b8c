"""Weights as a few size-capped safetensors shards, and back into one file.

A lent device returns at most 8 files of 16 MiB each, so the device run writes its weights in shards
under a byte cap; on the CPU afterwards :func:`merge_shards` rebuilds one strict-checked file.
Shards of one set are named ``NAME-00001-of-00003.safetensors`` and each carries the whole metadata.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from ..model.weights import get_entry, load_state_strict, save_state, save_weights

# 15 MiB of tensor data leaves room for the safetensors header under the device's 16 MiB per file.
DEVICE_SHARD_BYTES = 15 * 2**20
_SHARD = re.compile(r"^(?P<name>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.safetensors$")


def shard_state(state: Mapping[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Split a state dict into groups of at most ``max_bytes`` of tensor data, keys in sorted order."""
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        t = state[key]
        nbytes = t.numel() * t.element_size()
        if nbytes > max_bytes:
            raise WeightsError(f"tensor {key} alone is {nbytes} bytes, over the shard cap of {max_bytes}")
        if size + nbytes > max_bytes and groups[-1]:
            groups.append({})
            size = 0
        groups[-1][key] = t
        size += nbytes
    return groups


def write_shards(model: nn.Module, folder: str | os.PathLike, name: str, *, dtype: torch.dtype,
                 metadata: Mapping[str, object], max_bytes: int = DEVICE_SHARD_BYTES) -> list[Path]:
    """Write ``model``'s weights as ``name-0000k-of-0000n.safetensors`` in ``folder`` (atomically each).

    Shards of an earlier call with another count are removed, so the folder always holds one set.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    meta = {**metadata, "dtype": str(dtype).removeprefix("torch.")}
    groups = shard_state(state, max_bytes)
    paths = []
    for i, group in enumerate(groups, start=1):
        path = folder / f"{name}-{i:05d}-of-{len(groups):05d}.safetensors"
        save_state(group, path, metadata=meta)
        paths.append(path)
    for old in folder.glob(f"{name}-*-of-*.safetensors"):
        m = _SHARD.match(old.name)
        if m and m["name"] == name and int(m["count"]) != len(groups):
            old.unlink(missing_ok=True)
    return paths


def find_shards(folder: str | os.PathLike, name: str) -> list[Path]:
    """The complete shard set ``name`` in ``folder``, in order (WeightsError if one is missing)."""
    folder = Path(folder)
    found: dict[int, tuple[int, Path]] = {}
    for p in folder.glob(f"{name}-*-of-*.safetensors"):
        m = _SHARD.match(p.name)
        if m and m["name"] == name:
            found[int(m["index"])] = (int(m["count"]), p)
    if not found:
        raise WeightsError(f"{folder}: no {name}-NNNNN-of-NNNNN.safetensors shards; check the folder")
    counts = {c for c, _ in found.values()}
    count = counts.pop()
    if counts or sorted(found) != list(range(1, count + 1)):
        raise WeightsError(f"{folder}: the {name} shards are incomplete or mixed ({len(found)} files, "
                           f"expected {count}); fetch the device run's files again")
    return [found[i][1] for i in range(1, count + 1)]


def merge_shards(folder: str | os.PathLike, name: str, output: str | os.PathLike, *, model: str,
                 dtype: torch.dtype = torch.float16, extra_metadata: Mapping[str, object] | None = None
                 ) -> str:
    """Merge shard set ``name`` into one ``output`` file of registry variant ``model``; return its sha256.

    The weights are strict-loaded into a fresh ``model`` first, so a set of another variant fails
    with the folder named, and the merged file loads exactly as a shipped one does.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    shards = find_shards(folder, name)
    state: dict[str, torch.Tensor] = {}
    for p in shards:
        state.update(load_file(str(p)))
    with safe_open(str(shards[0]), framework="pt") as f:
        meta: dict[str, object] = dict(f.metadata() or {})
    net = get_entry(model).build_network()
    load_state_strict(net, {k: v.float() for k, v in state.items()}, source=str(folder))
    meta.update(extra_metadata or {})
    meta["dtype"] = str(dtype).removeprefix("torch.")
    return save_weights(net.to(dtype), output, metadata=meta)
