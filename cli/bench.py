"""`daflow-vfx bench`: measured benchmarks (not timed tests)."""

from __future__ import annotations

import shlex
import sys

import click

from daflow_vfx.cli._common import ProgressPrinter, device_option


def _pairs_options(*, levels: str):
    """--data, --levels, --seed and --limit: the degraded ground-truth pairs of `accuracy` and `budget`."""

    def decorate(f):
        for option in reversed((
            click.option("--data", required=True, type=click.Path(),
                         help="Folder with pairs.csv and .flo ground truth."),
            click.option("--levels", default=levels, show_default=True,
                         help="Comma-separated degradation levels."),
            click.option("--seed", default=0, show_default=True, type=int, help="Degradation seed."),
            click.option("--limit", default=None, type=int, help="Only the first N pairs."),
        )):
            f = option(f)
        return f

    return decorate


def _levels(text: str) -> tuple[str, ...]:
    return tuple(lv.strip() for lv in text.split(",") if lv.strip())


@click.group("bench")
def command() -> None:
    """Accuracy and speed benchmarks; results go into docs/benchmarks.md."""


@command.command("accuracy")
@_pairs_options(levels="clean,mild,severe,extreme")
@click.option(
    "--models",
    default="daflow-compact,daflow-compact-cnn,dis,farneback,deepflow",
    show_default=True,
    help="Comma-separated model names (models without weights are skipped); NAME=WEIGHTS evaluates "
    "a weights file of that model (e.g. a training run's export) as an extra row.",
)
@click.option(
    "--iters",
    default=None,
    type=click.IntRange(min=1),
    help="Refinement iterations of the DA-Flow models (default: each model's registry value).",
)
@click.option(
    "--output",
    default="docs/benchmarks.md",
    show_default=True,
    help="Markdown file whose accuracy section is replaced; '-' prints only.",
)
@device_option
def accuracy(
    data: str,
    models: str,
    levels: str,
    seed: int,
    limit: int | None,
    iters: int | None,
    output: str,
    device: str,
) -> None:
    """EPE and outlier rates of each model at each degradation level, side by side."""
    from daflow_vfx.bench.accuracy import AccuracyJob, bench_accuracy
    from daflow_vfx.engine import resolve_device

    job = AccuracyJob(
        data=data,
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        levels=_levels(levels),
        seed=seed,
        device=resolve_device(device),
        limit=limit,
        iters=iters,
        output=None if output == "-" else output,
        command="daflow-vfx " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    with ProgressPrinter("bench accuracy") as bar:
        body = bench_accuracy(job, progress=bar)
    click.echo(body)


@command.command("speed")
@click.option(
    "--models",
    default="daflow-compact,daflow-full,dis,raft_small,raft_large",
    show_default=True,
    help="Comma-separated models: daflow-compact, daflow-full, dis, raft_small, raft_large "
    "(learned models without trained weights run with random weights, and the table says so).",
)
@click.option(
    "--sizes",
    default="960x540,1920x1080,4096x2160",
    show_default=True,
    help="Comma-separated frame sizes WIDTHxHEIGHT; e.g. 320x180 for a quick run.",
)
@click.option(
    "--repeats",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Timed calls per case; the median is reported.",
)
@click.option(
    "--warmup",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Untimed calls per case before timing.",
)
@click.option(
    "--iters",
    default=12,
    show_default=True,
    type=click.IntRange(min=1),
    help="Refinement iterations of DA-Flow and RAFT (the same for all).",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(min=1),
    help="CPU threads for torch and OpenCV (default: torch's default).",
)
@click.option(
    "--isolate/--in-process",
    default=True,
    show_default=True,
    help="Measure each case in a fresh process (exact peak memory) or all in this one (faster).",
)
@click.option(
    "--full-on-cpu",
    is_flag=True,
    default=False,
    help="Run daflow-full on the CPU at every size (by default only up to 128x128 pixels).",
)
@click.option(
    "--dtypes",
    default=None,
    metavar="LIST",
    help="Compute dtypes of the DA-Flow rows, from float32,bfloat16,float16; each reduced one also "
    "reports how far it moves the flow from float32 (default: float32 on the CPU; on CUDA float32 "
    "and bfloat16 for daflow-compact, bfloat16 for daflow-full).",
)
@click.option(
    "--reuse-frames",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="Sequence length for the windowed-reuse measurement of daflow-compact (0: off).",
)
@click.option(
    "--output",
    default="docs/benchmarks.md",
    show_default=True,
    help="Markdown file whose speed-cpu / speed-cuda section is replaced; '-' prints only.",
)
@device_option
def speed(
    models: str,
    sizes: str,
    repeats: int,
    warmup: int,
    iters: int,
    threads: int | None,
    isolate: bool,
    full_on_cpu: bool,
    dtypes: str | None,
    reuse_frames: int,
    output: str,
    device: str,
) -> None:
    """Frame pairs per second and peak memory of DA-Flow, DIS and torchvision RAFT, side by side."""
    from daflow_vfx.bench.speed import SpeedJob, bench_speed, check_dtypes, check_models, parse_sizes
    from daflow_vfx.engine import resolve_device

    job = SpeedJob(
        models=check_models([m.strip() for m in models.split(",") if m.strip()]),
        sizes=parse_sizes(sizes),
        repeats=repeats,
        warmup=warmup,
        iters=iters,
        device=resolve_device(device),
        threads=threads,
        isolate=isolate,
        full_on_cpu=full_on_cpu,
        dtypes=None if dtypes is None else check_dtypes([d.strip() for d in dtypes.split(",") if d.strip()]),
        reuse_frames=reuse_frames,
        output=None if output == "-" else output,
        command="daflow-vfx " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    with ProgressPrinter("bench speed") as bar:
        body = bench_speed(job, progress=bar)
    click.echo(body)


@command.command("budget")
@_pairs_options(levels="clean,severe")
@click.option("--model", default="daflow-compact", show_default=True,
              help="A DA-Flow variant with a backbone.")
@click.option("--weights", default=None, metavar="PATH", help="Local weights instead of the shipped ones.")
@click.option("--tokens", default="2048,1024,512", show_default=True,
              help="Comma-separated backbone budgets, in tokens per frame.")
@click.option("--scale", default=2.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Upscale the pairs (and their ground truth) by this factor, so frames exceed the budgets.")
@click.option(
    "--output",
    default="docs/benchmarks.md",
    show_default=True,
    help="Markdown file whose budget section is replaced; '-' prints only.",
)
@device_option
def budget(
    data: str,
    model: str,
    weights: str | None,
    tokens: str,
    scale: float,
    levels: str,
    seed: int,
    limit: int | None,
    output: str,
    device: str,
) -> None:
    """Accuracy on upscaled pairs against the backbone's token budget (its attention cost)."""
    from daflow_vfx.bench.budget import BudgetJob, bench_budget, parse_budgets
    from daflow_vfx.engine import resolve_device

    job = BudgetJob(
        data=data,
        model=model,
        weights=weights,
        budgets=parse_budgets(tokens),
        scale=scale,
        levels=_levels(levels),
        seed=seed,
        device=resolve_device(device),
        limit=limit,
        output=None if output == "-" else output,
        command="daflow-vfx " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    with ProgressPrinter("bench budget") as bar:
        body = bench_budget(job, progress=bar)
    click.echo(body)


@command.command("ablation")
@click.option("--data", "data", required=True, multiple=True, type=click.Path(),
              help="Folder with pairs.csv and .flo ground truth; repeat for more data sets.")
@click.option("--levels", default="clean,mild,severe,extreme", show_default=True,
              help="Comma-separated degradation levels.")
@click.option("--seed", default=0, show_default=True, type=int, help="Degradation seed.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Only the first N pairs of each set.")
@click.option("--model", default="daflow-compact", show_default=True,
              help="The DA-Flow variant whose DiT taps are zeroed.")
@click.option("--weights", default=None, metavar="PATH", help="Local weights instead of the shipped ones.")
@click.option("--cnn", default="daflow-compact-cnn", show_default=True,
              help="The CNN-only model (the same network without the diffusion branch) to compare with.")
@click.option(
    "--output",
    default="docs/benchmarks.md",
    show_default=True,
    help="Markdown file whose ablation-taps section is replaced; '-' prints only.",
)
@device_option
def ablation(
    data: tuple[str, ...],
    levels: str,
    seed: int,
    limit: int | None,
    model: str,
    weights: str | None,
    cnn: str,
    output: str,
    device: str,
) -> None:
    """EPE with the DiT taps zeroed against as shipped, and against the CNN-only model."""
    from daflow_vfx.bench.ablation import AblationJob, bench_ablation
    from daflow_vfx.engine import resolve_device

    job = AblationJob(
        data=data,
        model=model,
        weights=weights,
        cnn=cnn,
        levels=_levels(levels),
        seed=seed,
        device=resolve_device(device),
        limit=limit,
        output=None if output == "-" else output,
        command="daflow-vfx " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    with ProgressPrinter("bench ablation") as bar:
        body = bench_ablation(job, progress=bar)
    click.echo(body)


@command.command("timestep")
@click.option(
    "--model", default="daflow-compact", show_default=True, help="A DA-Flow variant with a backbone."
)
@click.option("--weights", default=None, metavar="PATH", help="Local weights instead of the shipped ones.")
@click.option(
    "--timesteps", default="0.1,0.25,0.5,0.75,0.9", show_default=True, help="Comma-separated t in (0, 1)."
)
@click.option("--samples", default=16, show_default=True, type=click.IntRange(min=1),
              help="Synthetic windows per measurement.")
@click.option(
    "--data", default=None, type=click.Path(), help="Also measure on these pairs (pairs.csv + .flo)."
)
@click.option("--limit", default=8, show_default=True, type=int, help="Only the first N pairs of --data.")
@click.option(
    "--output",
    default="docs/benchmarks.md",
    show_default=True,
    help="Markdown file whose timestep section is replaced; '-' prints only.",
)
def timestep(
    model: str, weights: str | None, timesteps: str, samples: int, data: str | None, limit: int, output: str
) -> None:
    """Which one-step feature timestep works best: backbone matching and flow EPE per t."""
    from daflow_vfx.bench.timestep import TimestepJob, bench_timestep, parse_timesteps

    job = TimestepJob(
        model=model,
        weights=weights,
        timesteps=parse_timesteps(timesteps),
        samples=samples,
        data=data,
        limit=limit,
        output=None if output == "-" else output,
        command="daflow-vfx " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    with ProgressPrinter("bench timestep") as bar:
        body = bench_timestep(job, progress=bar)
    click.echo(body)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: give HEIGHTxWIDTH, e.g. 384x512", param_hint="--size") from None
    if h < 16 or w < 16:
        raise click.BadParameter(f"{text!r}: at least 16x16", param_hint="--size")
    return h, w


@command.command("train")
@click.option("--model", default="daflow-compact-noprior", show_default=True,
              help="A prior-free DA-Flow variant (its weights do not matter for speed).")
@click.option("--size", default="384x512", show_default=True, help="Crop, HEIGHTxWIDTH.")
@click.option("--batch", "batch_size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--frames", "num_frames", default=3, show_default=True, type=click.IntRange(min=2, max=8))
@click.option("--iters", default=10, show_default=True, type=click.IntRange(min=1),
              help="Refinement iterations per training step.")
@click.option("--stage", default=2, show_default=True, type=click.IntRange(1, 2),
              help="1: restoration pretraining of the DiT; 2: flow.")
@click.option("--autocast", type=click.Choice(["bfloat16", "float16"]), default=None,
              help="Mixed precision for the forward pass (default float32).")
@click.option("--seconds", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Timed per measurement, after a warm-up.")
@click.option("--output", default="docs/benchmarks.md", show_default=True,
              help="Markdown file whose train-<device> section is replaced; '-' prints only.")
@device_option
def train_speed(model: str, size: str, batch_size: int, num_frames: int, iters: int, stage: int,
                autocast: str | None, seconds: float, output: str, device: str) -> None:
    """Training throughput: windows/s of the on-device data alone and of full training steps."""
    from daflow_vfx.bench.accuracy import update_markdown
    from daflow_vfx.bench.train_speed import TrainSpeedJob, format_train_speed, measure_train_speed
    from daflow_vfx.engine import resolve_device

    job = TrainSpeedJob(model=model, device=resolve_device(device), size=_size(size), batch_size=batch_size,
                        num_frames=num_frames, iters=iters, stage=stage, autocast=autocast, seconds=seconds)
    rows = measure_train_speed(job)
    body = format_train_speed(rows, command=" ".join(["daflow-vfx bench train", *job.cli_args()]))
    if output != "-":
        update_markdown(output, f"train-{job.device.split(':')[0]}", body)
    click.echo(body)
