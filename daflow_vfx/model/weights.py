"""Weights registry and strict safetensors loading.

A :class:`WeightsEntry` names a model variant, the factory that builds it, the shipped weights
file (relative to ``daflow_vfx/weights/``) with its sha256, a metadata dict (parameters, recipe,
evaluation) and the input transform that maps display-referred [0, 1] frames to what the
network's ``forward()`` expects. Nothing here downloads: weights are shipped in the package or
read from a local path the user gives.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError, WeightsError
from .daflow import DAFlow, daflow_compact, daflow_compact_cnn, daflow_full

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class InputTransform:
    """Display-referred [0, 1] RGB to the network's input: ``(x - mean) / std``.

    Kept outside ``forward()`` so colour handling lives at the boundary (see ``daflow_vfx.color``).
    """

    mean: float = 0.5
    std: float = 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


# Initial flows a variant can be trained to refine. "dis": OpenCV DIS (medium) on the same frames,
# computed at the boundary (estimators/daflow.py, train/data.py) and passed as ``flow_init``; the
# network then learns a correction to a classical estimate instead of flow from nothing.
FLOW_INITS = ("dis",)


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    description: str
    factory: Callable[[], DAFlow]
    file: str | None  # relative to WEIGHTS_DIR; None when weights only come from a user path
    sha256: str | None
    transform: InputTransform = InputTransform()
    metadata: Mapping[str, str] = field(default_factory=dict)
    flow_init: str | None = None  # one of FLOW_INITS when the shipped weights refine an initial flow
    # Refinement iterations when the caller gives none: what the shipped weights were evaluated with.
    iters: int = 12

    @property
    def path(self) -> Path | None:
        return None if self.file is None else WEIGHTS_DIR / self.file

    def weights_present(self) -> bool:
        return self.path is not None and self.path.is_file()


REGISTRY: dict[str, WeightsEntry] = {
    "daflow-compact": WeightsEntry(
        name="daflow-compact",
        description="DA-Flow compact (~14 M params): lifted MM-DiT on pixel patches + CNN + RAFT refinement",
        factory=daflow_compact,
        file="daflow_compact.safetensors",
        sha256="9c62b72dd5981ba1e1668b3393a7a3e2187a813d893cda0a3584223c38a69894",
        flow_init="dis",
        # Trained with 6 and refining DIS, these weights are most accurate with few iterations
        # (flow-dev EPE clean / severe, `daflow-vfx bench accuracy --iters N`; session-4 weights:
        # 2 -> 2.12 / 2.97, 4 -> 2.15 / 2.93; session-3 weights: 2 -> 2.22 / 3.15, 4 -> 2.27 / 3.17,
        # 6 -> 2.30 / 3.18, 12 -> 2.44 / 3.27). 4: the better of the two on degraded footage.
        iters=4,
    ),
    "daflow-compact-cnn": WeightsEntry(
        name="daflow-compact-cnn",
        description="ablation: daflow-compact without the diffusion branch (CNN + refinement only)",
        factory=daflow_compact_cnn,
        file="daflow_compact_cnn.safetensors",
        # Step 900 of configs/train_compact_cnn.yaml: the same stage-2 budget as daflow-compact's
        # session-2 step-900 checkpoint (git show 05a87cb:docs/training/checkpoints/...), the
        # same-budget comparison in docs/benchmarks.md.
        sha256="03931defbb326941d74edfe3bc6720ebb6c587f7dc36c7f8c494b45a03034726",
        flow_init="dis",
        iters=4,  # evaluated as daflow-compact is
    ),
    # Prior-free variants: the same networks predicting their own flow from zero, as RAFT and the
    # DA-Flow paper do. DIS fails on large motion (40 to 190 px on flow-large) and costs about 0.3 s
    # of host time per 1080p window; these are trained on a lent GPU by the prepared device run
    # (tools/device/train.sh, configs/train_gpu_*.yaml), which starts from the DIS-refining weights above.
    # Their files appear once a device run has returned and been committed.
    "daflow-compact-noprior": WeightsEntry(
        name="daflow-compact-noprior",
        description="DA-Flow compact predicting its own flow (no DIS prior); GPU-trained",
        factory=daflow_compact,
        file="daflow_compact_noprior.safetensors",
        sha256=None,
        iters=12,
    ),
    "daflow-compact-cnn-noprior": WeightsEntry(
        name="daflow-compact-cnn-noprior",
        description="ablation: daflow-compact-noprior without the diffusion branch, same GPU budget",
        factory=daflow_compact_cnn,
        file="daflow_compact_cnn_noprior.safetensors",
        sha256=None,
        iters=12,
    ),
    "daflow-full": WeightsEntry(
        name="daflow-full",
        description="DA-Flow full (DiT4SR / SD3.5-medium dims, ~2.2 B transformer); local weights only",
        factory=daflow_full,
        file=None,
        sha256=None,
    ),
}


def get_entry(name: str) -> WeightsEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))}") from None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_weights(
    model: nn.Module, path: str | os.PathLike, *, metadata: Mapping[str, object] | None = None
) -> str:
    """Write the model's state dict as safetensors (atomically); return the file's sha256.

    Metadata values are stored as strings (JSON for non-strings), as safetensors requires.
    """
    from safetensors.torch import save_file

    path = Path(path)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(state, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256_file(path)


def flow_init_of(entry: WeightsEntry, weights: str | os.PathLike | None) -> str | None:
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
) -> tuple[DAFlow, WeightsEntry, str | None]:
    """Build a registered variant and load its weights; return (model, entry, weights sha256).

    ``weights`` overrides the shipped file (a safetensors file, or a folder for daflow-full).
    Random weights are only for tests and timing (``allow_random``), never a user default.
    """
    entry = get_entry(name)
    path: Path | None = Path(weights) if weights is not None else entry.path
    # Decide before building: the full variant is 2.35 B parameters (~9 GB in float32).
    if path is None or (weights is None and not path.is_file()):
        if allow_random:
            return entry.factory(), entry, None
        trained = [n for n, e in REGISTRY.items() if e.weights_present()]
        how = " (pass a local weights path with --weights)" if entry.file is None else f" ({path} is missing)"
        raise WeightsError(
            f"model {name!r} has no trained weights here{how}; "
            f"available: {', '.join(trained + ['dis', 'farneback', 'deepflow'])}"
        )
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found; check the path you gave")
    model = entry.factory()
    if path.is_dir():
        digest = load_full_from_folder(model, path)
    else:
        digest = load_weights(model, path, expected_sha256=entry.sha256 if weights is None else None)
    model.eval()
    return model, entry, digest
