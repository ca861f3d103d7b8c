"""The prepared device run: one call on a lent GPU that continues training and returns the weights.

``tools/device/train.sh`` runs ``python -m daflow_vfx.train.device_run run --out $OUT ...`` there. It

1. measures training throughput (``bench train``: data alone and full steps) into ``bench_train.md``;
2. trains every given config at once, one process each, for a fixed number of minutes, so the call
   ends well inside the device's 10-minute limit. Each run continues from the last committed weights
   of its variant (``daflow_vfx/weights/<file>``), or, before the first device run of that variant,
   from the config's ``init_weights``. Its seed moves on by the number of device runs those weights
   have already had, so no run repeats an earlier run's windows;
3. writes each run's weights as float16 safetensors shards of at most 15 MiB (the device returns at
   most 8 files of 16 MiB), refreshed at every checkpoint so a run cut short still returns weights,
   with its training log and a ``summary.json``.

Evaluation happens on the CPU afterwards (``../shared`` does not travel): ``daflow-vfx train import``
merges the shards into the variant's weights file, then ``daflow-vfx bench accuracy`` scores it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DaflowError
from .shards import DEVICE_SHARD_BYTES


@dataclass(frozen=True, kw_only=True)
class InitChoice:
    path: str | None  # weights to start from (None: random, only for a config that names none)
    device_runs: int  # device runs these weights have had
    windows: int  # training windows they have seen on devices


def choose_init(committed: Path | None, config_init: str | None) -> InitChoice:
    """Start from the committed weights of the variant when there are any, else the config's."""
    from ..model.weights import read_metadata

    if committed is not None and committed.is_file():
        meta = read_metadata(committed)
        return InitChoice(path=str(committed), device_runs=int(meta.get("device_runs", "0")),
                          windows=int(meta.get("device_windows", "0")))
    return InitChoice(path=config_init, device_runs=0, windows=0)


def _worker(config: str, out: Path, minutes: float, device: str | None, shard_bytes: int) -> dict:
    """Train one config for ``minutes``; shards, log and the run's summary go to ``out``."""
    import torch

    from ..model.weights import get_entry
    from .config import TrainConfig
    from .loop import train
    from .shards import write_shards

    cfg = TrainConfig.from_yaml(config)
    entry = get_entry(cfg.model)
    init = choose_init(entry.path, cfg.init_weights)
    if init.path != cfg.init_weights:
        cfg.init_cut_branch = False  # the committed weights are this variant's own
    cfg.init_weights = init.path
    cfg.seed += init.device_runs
    cfg.max_minutes = minutes
    if device is not None:
        cfg.device = device
    stem = Path(entry.file or cfg.model).name.removesuffix(".safetensors")
    cfg.out_dir = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"daflow-device-run-{stem}-{os.getpid()}")
    log_copy = out / f"{stem}.log.jsonl"

    if cfg.device.startswith("cuda"):
        # TF32 for the float32 parts (correlation, losses): the H100/H200 run them on tensor cores.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    def on_log(rec: dict) -> None:
        if rec["step"] % 50 == 0 or any(k.startswith("val") for k in rec):
            print(f"[{stem}] {json.dumps(rec)}", flush=True)

    def on_checkpoint(model, meta: dict, batches: int) -> None:
        # What the next device run reads back: how many runs and windows these weights have had.
        meta = {**meta, "device_runs": init.device_runs + 1,
                "device_windows": init.windows + batches * cfg.batch_size,
                "recipe": Path(config).name, "init": Path(init.path).name if init.path else "random"}
        write_shards(model, out, stem, dtype=torch.float16, metadata=meta, max_bytes=shard_bytes)
        log_copy.write_bytes((Path(cfg.out_dir) / "log.jsonl").read_bytes())

    started = time.monotonic()
    while True:
        try:
            report = train(cfg, progress=False, on_log=on_log, on_checkpoint=on_checkpoint)
            break
        except torch.OutOfMemoryError:
            # One device window a session: an OOM must not cost it. Halve the batch and go on for the
            # minutes left (from the last checkpoint if one was written, else from the start weights).
            if cfg.batch_size == 1:
                raise
            cfg.batch_size //= 2
            cfg.max_minutes = minutes - (time.monotonic() - started) / 60
            torch.cuda.empty_cache()
            print(f"[{stem}] out of device memory; retrying with batch {cfg.batch_size}", flush=True)
    windows = report.batches * cfg.batch_size
    summary = {
        "config": config, "model": cfg.model, "init": init.path, "seed": cfg.seed,
        "device_runs": init.device_runs + 1, "stage": report.stage, "step": report.step,
        "batches": report.batches, "windows": windows, "minutes": round(report.seconds / 60, 2),
        "windows_per_s": round(windows / max(report.seconds, 1e-9), 1),
        "last_loss": report.last_loss, "val_epe": report.val_epe,
        "device": cfg.device, "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else None,
    }
    (out / f"{stem}.summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _bench(config: str, out: Path, seconds: float, device: str | None) -> None:
    from ..bench.train_speed import TrainSpeedJob, format_train_speed, measure_train_speed
    from .config import TrainConfig

    cfg = TrainConfig.from_yaml(config)
    job = TrainSpeedJob(model=cfg.model, device=device or cfg.device, size=cfg.crop,
                        batch_size=cfg.batch_size, num_frames=cfg.num_frames, iters=cfg.iters,
                        autocast=cfg.autocast, seconds=seconds, data_chunk=cfg.data_chunk)
    rows = measure_train_speed(job)
    text = format_train_speed(rows, command=" ".join(["daflow-vfx", "bench", "train", *job.cli_args()]))
    (out / "bench_train.md").write_text(text)
    print(text, flush=True)


def _bench_apart(config: str, out: Path, seconds: float, device: str | None) -> None:
    """The bench in a process of its own: a failure there (the first H200 run met a device-side
    assert in it) costs its figures, never the training, and its GPU memory is gone before training."""
    cmd = [sys.executable, "-m", "daflow_vfx.train.device_run", "bench", config, "--out", str(out),
           "--minutes", "0", "--bench-seconds", str(seconds)]
    if device is not None:
        cmd += ["--device", device]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=8 * seconds + 180)
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, text = "timeout", str(exc)
    if code == 0:
        print(done.stdout, end="", flush=True)
        return
    tail = "\n".join(text.strip().splitlines()[-15:])
    note = f"bench train failed ({code}); training went on.\n\n```\n{tail}\n```\n"
    (out / "bench_train.md").write_text(note)
    print(f"bench train failed ({code}); training goes on:\n{tail}", flush=True)


def run(configs: Sequence[str], *, out: str | os.PathLike, minutes: float, bench_seconds: float = 20.0,
        device: str | None = None, shard_bytes: int = DEVICE_SHARD_BYTES) -> list[dict]:
    """Bench, then train every config at once for ``minutes``; return the runs' summaries."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not configs:
        raise ConfigError("give at least one training config")
    for c in configs:
        if not Path(c).is_file():
            raise ConfigError(f"{c}: no such training config")
    if bench_seconds > 0:
        _bench_apart(configs[0], out, bench_seconds, device)
    procs = []
    started = time.monotonic()
    for c in configs:
        cmd = [sys.executable, "-m", "daflow_vfx.train.device_run", "worker", c, "--out", str(out),
               "--minutes", str(minutes), "--shard-bytes", str(shard_bytes)]
        if device is not None:
            cmd += ["--device", device]
        procs.append((c, subprocess.Popen(cmd)))
    failed = [c for c, p in procs if p.wait() != 0]
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("*.summary.json"))]
    (out / "summary.json").write_text(json.dumps(
        {"runs": summaries, "failed": failed, "wall_minutes": round((time.monotonic() - started) / 60, 2)},
        indent=1) + "\n")
    for p in out.glob("*.summary.json"):
        p.unlink()  # folded into summary.json: the device returns at most 8 files
    if failed:
        raise DaflowError(f"training failed for {', '.join(failed)}; see the output above")
    return summaries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daflow_vfx.train.device_run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="bench, then train the configs at once")
    p_run.add_argument("configs", nargs="+")
    p_run.add_argument("--bench-seconds", type=float, default=20.0)
    p_worker = sub.add_parser("worker", help="train one config (run starts these)")
    p_worker.add_argument("config")
    p_bench = sub.add_parser("bench", help="bench train for one config (run starts this)")
    p_bench.add_argument("config")
    p_bench.add_argument("--bench-seconds", type=float, default=20.0)
    for p in (p_run, p_worker, p_bench):
        p.add_argument("--out", required=True)
        p.add_argument("--minutes", type=float, required=True)
        p.add_argument("--device", default=None, help="override the configs' device (tests: cpu)")
        p.add_argument("--shard-bytes", type=int, default=DEVICE_SHARD_BYTES)
    args = parser.parse_args(argv)
    try:
        if args.command == "worker":
            _worker(args.config, Path(args.out), args.minutes, args.device, args.shard_bytes)
        elif args.command == "bench":
            Path(args.out).mkdir(parents=True, exist_ok=True)
            _bench(args.config, Path(args.out), args.bench_seconds, args.device)
        else:
            run(args.configs, out=args.out, minutes=args.minutes, bench_seconds=args.bench_seconds,
                device=args.device, shard_bytes=args.shard_bytes)
    except DaflowError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
