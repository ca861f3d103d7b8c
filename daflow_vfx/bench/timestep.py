"""Feature-timestep experiment: which one-step timestep t gives DA-Flow the best features.

DA-Flow reads its backbone's features from a single denoising step: the degraded latent is noised
to time t (with fixed-seed noise) and the lifted MM-DiT runs once. ``daflow-vfx bench timestep``
measures, with fixed weights, for each t:

1. **Backbone correspondence**, independent of the flow heads. On synthetic windows with exact
   flow, every 16x16 token of frame 0 is matched to the most similar token of frame 1 (cosine
   similarity of the concatenated, per-channel standardised taps). The error is the distance in
   pixels between the matched token's centre and where the token's content really went (the mean
   ground-truth flow over the token). Measured on clean and on severely degraded copies of the same
   windows: useful features match well, and degradation-aware ones are hardly hurt by the
   degradation. The quantisation of a 16-pixel grid puts a floor of a few pixels under this error.
2. **End to end**: the model's EPE on the synthetic severe validation set of the training loop
   (``train.loop.validate``), and on severely degraded development pairs when ``--data`` is given.
   The flow heads were trained at one timestep, which favours that t here; measurement 1 has no
   such bias because the backbone is frozen after its restoration pretraining.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

# Matching uses tokens whose 16x16 block is mostly valid ground truth and whose content stays in frame.
_MIN_VALID = 0.5


@dataclass(frozen=True)
class TimestepRow:
    timestep: float
    match_clean: float  # px, token matching error on clean windows
    match_severe: float  # px, the same windows severely degraded
    val_epe: float  # px, synthetic severe validation set (the training loop's)
    dev_epe: float | None  # px, degraded development pairs (None without --data)


@dataclass(frozen=True, kw_only=True)
class TimestepJob:
    """What `daflow-vfx bench timestep` runs."""

    model: str = "daflow-compact"
    weights: str | None = None
    timesteps: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
    samples: int = 16
    match_size: tuple[int, int] = (192, 256)
    data: str | None = None
    limit: int | None = 8
    seed: int = 0
    allow_random: bool = False  # tests only: a model without trained weights
    output: str | None = None  # markdown file whose section is replaced (bench/markdown.py); None: none
    command: str = ""


def parse_timesteps(text: str) -> tuple[float, ...]:
    """``"0.25,0.5"`` -> (0.25, 0.5); every value must lie in (0, 1)."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"`timesteps` {text!r}: give numbers between 0 and 1, e.g. 0.25,0.5,0.75",
                         param="timesteps") from None
    if not values or any(not 0.0 < v < 1.0 for v in values):
        raise UsageError(f"`timesteps` {text!r}: every timestep must lie strictly between 0 and 1",
                         param="timesteps")
    return values


def _standardised_tokens(taps: list) -> np.ndarray:
    """taps: each [F, C, h, w] -> [F, h*w, sum C], per-channel standardised, L2-normalised per token."""
    import torch

    parts = []
    for t in taps:
        t = t.float()
        mean = t.mean(dim=(0, 2, 3), keepdim=True)
        std = t.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        parts.append((t - mean) / std)
    feats = torch.cat(parts, dim=1).flatten(2).transpose(1, 2)  # [F, h*w, C]
    return torch.nn.functional.normalize(feats, dim=-1).numpy()


def token_match_error(
    tokens: np.ndarray, flow: np.ndarray, valid: np.ndarray, patch: int
) -> tuple[float, int]:
    """Sum of matching errors (px) and the number of tokens matched, frame 0 -> frame 1.

    tokens: [F, h*w, C]; flow: [2, H, W] ground truth frame 0 -> 1; valid: [H, W].
    """
    _, hh, ww = flow.shape
    h, w = hh // patch, ww // patch
    blocks = flow[:, : h * patch, : w * patch].reshape(2, h, patch, w, patch)
    vblocks = valid[: h * patch, : w * patch].reshape(h, patch, w, patch).astype(np.float64)
    vcount = vblocks.sum(axis=(1, 3))  # [h, w]
    mean_flow = (blocks * vblocks).sum(axis=(2, 4)) / np.maximum(vcount, 1)  # [2, h, w]
    ys, xs = np.mgrid[0:h, 0:w]
    centre = np.stack([xs * patch + (patch - 1) / 2, ys * patch + (patch - 1) / 2])  # [2, h, w] (x, y)
    target = centre + mean_flow
    inside = (target[0] >= 0) & (target[0] <= ww - 1) & (target[1] >= 0) & (target[1] <= hh - 1)
    use = (vcount >= _MIN_VALID * patch * patch) & inside
    sim = tokens[0] @ tokens[1].T  # [h*w, h*w]
    best = sim.argmax(axis=1)
    matched = np.stack([(best % w) * patch + (patch - 1) / 2, (best // w) * patch + (patch - 1) / 2])
    err = np.linalg.norm(matched.reshape(2, h, w) - target, axis=0)[use]
    return float(err.sum()), int(err.size)


def run_timestep(
    job: TimestepJob, *, progress: Callable[[int, int], None] | None = None
) -> list[TimestepRow]:
    import torch

    from ..engine import FlowEngine
    from ..estimators.daflow import DAFlowEstimator
    from ..io import read_flo
    from ..model.weights import build_model
    from ..train.data import SyntheticFlowDataset
    from ..train.loop import TrainConfig, validate, validation_samples
    from .accuracy import degrade_pair, flow_errors, load_pairs, read_display

    if not job.timesteps:
        raise UsageError("no timesteps to measure; give `timesteps`, e.g. 0.25,0.5,0.75", param="timesteps")
    if job.samples < 1:
        raise UsageError("`samples` must be at least 1", param="samples")
    model, entry, digest = build_model(job.model, weights=job.weights, allow_random=job.allow_random)
    if model.backbone is None:
        raise UsageError(f"model {job.model!r} has no diffusion backbone, so it has no feature timestep")
    model.eval()
    transform = entry.transform
    windows = SyntheticFlowDataset(
        size=job.match_size,
        num_frames=2,
        seed=20_000 + job.seed,
        length=job.samples,
        degrade_preset="severe",
        clean_fraction=0.0,
    )
    windows = [windows[i] for i in range(len(windows))]
    dev: list[tuple[np.ndarray, np.ndarray]] = []
    if job.data:
        for i, p in enumerate(load_pairs(job.data)[: job.limit]):
            gt = read_flo(p.flow)
            clean = np.stack([read_display(p.img1), read_display(p.img2)])
            dev.append((degrade_pair(clean, gt, "severe", seed=1000 + i), gt))
    val_cfg = TrainConfig(val_samples=job.samples, seed=job.seed)
    val_set = validation_samples(val_cfg)  # the same samples for every timestep
    patch = model.stride
    original = model.feature_timesteps
    rows = []
    try:
        for k, t in enumerate(job.timesteps):
            model.feature_timesteps = (float(t),)
            sums = {"clean": [0.0, 0], "degraded": [0.0, 0]}
            with torch.inference_mode():
                for s in windows:
                    for key in sums:
                        taps = model.backbone_taps(transform(s[key][None]))  # each [F, C, h, w]
                        e, n = token_match_error(
                            _standardised_tokens(taps),
                            s["flow_fwd"][0].numpy(),
                            s["valid_fwd"][0].numpy(),
                            patch,
                        )
                        sums[key][0] += e
                        sums[key][1] += n
                val = validate(model, val_cfg, transform, samples=val_set)
            dev_epe = None
            if dev:
                engine = FlowEngine(
                    DAFlowEstimator(model=model, transform=transform, name=job.model, weights_sha256=digest)
                )
                e_sum = n_sum = 0.0
                for frames, gt in dev:
                    e, _, _, nv = flow_errors(engine.estimate_pair(frames[0], frames[1]), gt)
                    e_sum, n_sum = e_sum + e, n_sum + nv
                dev_epe = e_sum / max(n_sum, 1.0)
            rows.append(
                TimestepRow(
                    timestep=float(t),
                    match_clean=sums["clean"][0] / max(sums["clean"][1], 1),
                    match_severe=sums["degraded"][0] / max(sums["degraded"][1], 1),
                    val_epe=val,
                    dev_epe=dev_epe,
                )
            )
            if progress is not None:
                progress(k + 1, len(job.timesteps))
    finally:
        model.feature_timesteps = original
    return rows


def format_table(rows: Sequence[TimestepRow]) -> str:
    lines = [
        "| t | token match, clean (px) | token match, severe (px) | val EPE, synthetic severe (px) "
        "| EPE, dev pairs severe (px) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        dev = "-" if r.dev_epe is None else f"{r.dev_epe:.2f}"
        lines.append(
            f"| {r.timestep:g} | {r.match_clean:.2f} | {r.match_severe:.2f} | {r.val_epe:.2f} | {dev} |"
        )
    return "\n".join(lines)


def bench_timestep(job: TimestepJob, *, progress: Callable[[int, int], None] | None = None) -> str:
    """Run the sweep, write its section into ``job.output`` (if any), return the markdown."""
    import torch

    from .markdown import update_markdown

    t0 = time.perf_counter()
    rows = run_timestep(job, progress=progress)
    minutes = (time.perf_counter() - t0) / 60
    h, w = job.match_size
    weights = f" ({job.weights})" if job.weights else ""
    body = "\n".join(
        [
            "## Feature timestep (one-step features)",
            "",
            f"Command: `{job.command}`" if job.command else "",
            "",
            f"Model `{job.model}`{weights}, fixed weights. Token match: "
            f"each 16x16 token of frame 0 matched to its most similar token of frame 1 by the backbone's "
            f"tapped features alone (no flow heads), mean distance to where the token really went, on "
            f"{job.samples} synthetic {w}x{h} windows, clean and severely degraded. Val EPE: the whole "
            f"model on the training loop's synthetic severe validation set; its flow heads were trained at "
            f"one timestep, which favours that one.",
            "",
            format_table(rows),
            "",
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; run took {minutes:.1f} min.",
        ]
    )
    if job.output:
        update_markdown(job.output, "timestep", body)
    return body
