"""Turn a training run into shipped weights (``daflow-vfx train export``).

The shipped file is float16 safetensors (half the size; inference runs in float32 after a
strict load) with the training recipe in its metadata. The registry's sha256 must then be set
to the printed digest, which the tests check against the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import WeightsError
from ..model.weights import get_entry, load_state_strict, read_metadata, save_weights

# Runs started before the DPT fix carry a skip unit in the first fusion block that was never
# used (its input is always None), so it holds no trained information and is dropped on export.
_DEAD_KEYS = re.compile(r"^dpt_(query|key|context)\.fusion\.0\.skip_unit\.")


def export_run(
    run_dir: str | Path,
    output: str | Path,
    *,
    model: str,
    dtype: torch.dtype = torch.float16,
    extra_metadata: dict[str, object] | None = None,
) -> str:
    """Write ``run_dir/weights.safetensors`` as ``output`` for ``model``; return the sha256."""
    from safetensors.torch import load_file

    src = Path(run_dir) / "weights.safetensors"
    if not src.is_file():
        raise WeightsError(f"{src}: no weights in this training run yet; train first")
    entry = get_entry(model)
    net = entry.build_network()
    state = {k: v for k, v in load_file(str(src)).items() if not _DEAD_KEYS.match(k)}
    load_state_strict(net, state, source=str(src))
    meta: dict[str, object] = dict(read_metadata(src))
    meta.update(extra_metadata or {})
    return _save_as(net, output, dtype=dtype, metadata=meta)


def _save_as(
    net: torch.nn.Module, output: str | Path, *, dtype: torch.dtype, metadata: dict[str, object]
) -> str:
    """Cast ``net`` to the shipped dtype, record it in the metadata, write it; return the sha256."""
    if dtype != torch.float32:
        net = net.to(dtype)
    return save_weights(net, output, metadata={**metadata, "dtype": str(dtype).removeprefix("torch.")})


def average_weights(
    inputs: list[str | Path],
    output: str | Path,
    *,
    model: str,
    dtype: torch.dtype = torch.float16,
) -> str:
    """Write the uniform average of weight files of ``model`` (a "model soup") as ``output``.

    The inputs must be fine-tuned from one starting point (e.g. the shipped weights and runs that
    continued from them); their average often generalises better than any one of them (Wortsman et
    al., 2022, "Model soups"). Each is loaded strictly first, so files of another variant or with
    missing keys fail with the path named. Return the sha256.
    """
    from safetensors.torch import load_file

    if len(inputs) < 2:
        raise WeightsError("give at least two weight files to average")
    net = get_entry(model).build_network()
    total: dict[str, torch.Tensor] | None = None
    sources = []
    for path in inputs:
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: no such weights file")
        state = {k: v.float() for k, v in load_file(str(path)).items() if not _DEAD_KEYS.match(k)}
        load_state_strict(net, state, source=str(path))  # same variant, same keys and shapes
        total = state if total is None else {k: total[k] + v for k, v in state.items()}
        sources.append(path.name)
    assert total is not None
    load_state_strict(net, {k: v / len(inputs) for k, v in total.items()}, source="the average")
    # the first file's recipe, without the step and stage that belong to that file alone
    first = read_metadata(inputs[0])
    meta: dict[str, object] = {k: v for k, v in first.items() if k not in ("step", "stage")}
    meta["averaged_from"] = sources
    return _save_as(net, output, dtype=dtype, metadata=meta)
