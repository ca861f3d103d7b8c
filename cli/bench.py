"""`daflow-vfx bench`: measured benchmarks (not timed tests).

Every command prints its markdown section. ``--output FILE`` also writes it into FILE (that section
replaced, the rest kept); ``--update-docs`` does so for docs/benchmarks.md of a source checkout.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from daflow_vfx.cli._common import ProgressPrinter, colorspace_option, device_option, iters_help, own_iters
from daflow_vfx.numerics import DTYPE_CHOICES
from daflow_vfx.registry import model_names, network_names

F = TypeVar("F", bound=Callable[..., Any])


def _options(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Apply ``options`` so that ``--help`` lists them in the order given."""

    def decorate(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _pairs_options(*, levels: str, multiple: bool = False) -> Callable[[F], F]:
    """--data, --levels, --seed and --limit: the degraded ground-truth pairs of `accuracy`, `budget` and
    `ablation` (which takes several --data folders)."""
    more = "; repeat for more data sets" if multiple else ""
    return _options(
        click.option("--data", required=True, multiple=multiple, type=click.Path(),
                     help=f"Folder with pairs.csv and .flo ground truth{more}."),
        click.option("--levels", default=levels, show_default=True,
                     help="Comma-separated degradation levels."),
        click.option("--seed", default=0, show_default=True, type=int, help="Degradation seed."),
        click.option("--limit", default=None, type=click.IntRange(min=1),
                     help="Only the first N pairs" + (" of each set." if multiple else ".")),
    )


def _output_options(section: str) -> Callable[[F], F]:
    """--output FILE and --update-docs: where the printed section is also written."""
    return _options(
        click.option("--output", default=None, metavar="FILE",
                     help=f"Also write the markdown into FILE: its {section} section is replaced, the rest "
                     "kept ('-': print only)."),
        click.option("--update-docs", is_flag=True, default=False,
                     help=f"Also rewrite the {section} section of docs/benchmarks.md (a source checkout's)."),
    )


def _target(output: str | None, update_docs: bool) -> str | None:
    from daflow_vfx.bench.markdown import output_target

    return output_target(output, update_docs=update_docs)


def _items(text: str) -> tuple[str, ...]:
    """A comma-separated option's items, without blanks: ``"dis, farneback,"`` -> ("dis", "farneback")."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _command_line() -> str:
    """The command as typed, recorded in the section so a reader can run it again."""
    return "daflow-vfx " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _bench(label: str, bench: Callable[..., str], job_type: Callable[..., Any], output: str | None,
           update_docs: bool, **fields: Any) -> None:
    """Make the command's job (adding where its section goes and the command line) and run it, printing
    its progress and then its markdown."""
    job = job_type(**fields, output=_target(output, update_docs), command=_command_line())
    with ProgressPrinter(f"bench {label}") as bar:
        body = bench(job, progress=bar)
    click.echo(body)


def _device(name: str) -> str:
    from daflow_vfx.engine import resolve_device

    return resolve_device(name)


def _variants(what: str, names: list[str]) -> str:
    return f"{what}: {', '.join(names)}."


@click.group("bench")
def command() -> None:
    """Accuracy, speed and training benchmarks: each prints its markdown section (--output FILE and
    --update-docs also write it)."""


@command.command("accuracy")
@_pairs_options(levels="clean,mild,severe,extreme")
@click.option(
    "--models",
    default="daflow-compact,daflow-compact-cnn,dis,farneback,deepflow",
    show_default=True,
    help=f"Comma-separated models from {', '.join(model_names()[1:])} (those without weights are "
    "skipped); NAME=WEIGHTS evaluates a weights file of that model (e.g. a training run's export) as an "
    "extra row.",
)
@click.option("--iters", default=None, type=click.IntRange(min=1),
              help=iters_help("Refinement iterations of the DA-Flow models"))
@click.option("--detail", type=float, default=1.0, show_default=True, metavar="FRACTION",
              help="Vector detail in (0, 1], as `render --detail`: flow at this fraction of each pair's "
              "size, upsampled, to measure accuracy against speed.")
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="float32", show_default=True,
              help="Compute precision of the DA-Flow models, as `render --dtype` (to measure what a "
              "reduced precision costs in accuracy).")
@colorspace_option
@_output_options("accuracy")
@device_option
def accuracy(data: str, models: str, levels: str, seed: int, limit: int | None, iters: int | None,
             detail: float, dtype: str, input_colorspace: str, ocio_config: str | None, output: str | None,
             update_docs: bool, device: str) -> None:
    """EPE and outlier rates of each model at each degradation level, side by side."""
    from daflow_vfx.bench.accuracy import AccuracyJob, bench_accuracy

    _bench("accuracy", bench_accuracy, AccuracyJob, output, update_docs, data=data, models=_items(models),
           levels=_items(levels), seed=seed, device=_device(device), limit=limit, iters=iters, detail=detail,
           dtype=dtype, input_colorspace=input_colorspace, ocio_config=ocio_config)


@command.command("speed")
@click.option(
    "--models",
    default="daflow-compact,daflow-full,dis,raft_small,raft_large",
    show_default=True,
    help=f"Comma-separated models from {', '.join(model_names()[1:])}, raft_small, raft_large "
    "(learned models without trained weights run with random weights, and the table says so).",
)
@click.option(
    "--sizes",
    default="960x540,1920x1080,4096x2160",
    show_default=True,
    help="Comma-separated frame sizes WIDTHxHEIGHT; e.g. 320x180 for a quick run.",
)
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1),
              help="Timed calls per case; the median is reported.")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0),
              help="Untimed calls per case before timing.")
@click.option(
    "--iters", default=12, show_default=True, type=click.IntRange(min=1),
    help="Refinement iterations of DA-Flow and RAFT, the same for all so the rows compare (12 is RAFT's; "
    f"render runs each model's own: {own_iters()}).",
)
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="CPU threads for torch and OpenCV (default: torch's default).")
@click.option("--isolate/--in-process", default=True, show_default=True,
              help="Measure each case in a fresh process (exact peak memory) or all in this one (faster).")
@click.option("--full-on-cpu", is_flag=True, default=False,
              help="Run daflow-full on the CPU at every size (by default only up to 128x128 pixels).")
@click.option(
    "--dtypes",
    default=None,
    metavar="LIST",
    help="Compute dtypes of the DA-Flow rows, from float32,bfloat16,float16; each reduced one also "
    "reports how far it moves the flow from float32 (default: float32 on the CPU, and bfloat16 where "
    "the CPU has it in hardware, as render's --dtype auto; on CUDA float32 and bfloat16 for "
    "daflow-compact, bfloat16 for daflow-full).",
)
@click.option("--reuse-frames", default=5, show_default=True, type=click.IntRange(min=0),
              help="Sequence length for the windowed-reuse measurement of daflow-compact (0: off).")
@click.option("--render-frames", default=8, show_default=True, type=click.IntRange(min=0),
              help="Frames of the generated plate each end-to-end `render` measurement renders, I/O "
              "included (0: no render measurement).")
@click.option("--render-sizes", default="1920x1080", show_default=True,
              help="Comma-separated plate sizes WIDTHxHEIGHT of the end-to-end renders.")
@click.option("--batch-windows", default=1, show_default=True, type=click.IntRange(min=1),
              help="The renders' --batch-windows: windows per forward pass where memory allows.")
@_output_options("speed-cpu / speed-cuda")
@device_option
def speed(models: str, sizes: str, repeats: int, warmup: int, iters: int, threads: int | None, isolate: bool,
          full_on_cpu: bool, dtypes: str | None, reuse_frames: int, render_frames: int, render_sizes: str,
          batch_windows: int, output: str | None, update_docs: bool, device: str) -> None:
    """Frame pairs per second and peak memory of DA-Flow, DIS and torchvision RAFT, side by side, and
    end-to-end `render` frames per second on a generated plate."""
    from daflow_vfx.bench.speed import SpeedJob, bench_speed, check_dtypes, check_models, parse_sizes

    _bench("speed", bench_speed, SpeedJob, output, update_docs, models=check_models(_items(models)),
           sizes=parse_sizes(sizes), repeats=repeats, warmup=warmup, iters=iters, device=_device(device),
           threads=threads, isolate=isolate, full_on_cpu=full_on_cpu, reuse_frames=reuse_frames,
           dtypes=None if dtypes is None else check_dtypes(_items(dtypes)), render_frames=render_frames,
           render_sizes=parse_sizes(render_sizes, param="render_sizes"), batch_windows=batch_windows)


@command.command("budget")
@_pairs_options(levels="clean,severe")
@click.option("--model", default="daflow-compact", show_default=True,
              help=_variants("A DA-Flow variant with a backbone", network_names(backbone=True)))
@click.option("--weights", default=None, metavar="PATH", help="Local weights instead of the shipped ones.")
@click.option("--tokens", "budgets", default="2048,1024,512", show_default=True,
              help="Comma-separated backbone budgets, in tokens per frame.")
@click.option("--scale", default=2.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Upscale the pairs (and their ground truth) by this factor, so frames exceed the budgets.")
@_output_options("budget")
@device_option
def budget(data: str, model: str, weights: str | None, budgets: str, scale: float, levels: str, seed: int,
           limit: int | None, output: str | None, update_docs: bool, device: str) -> None:
    """Accuracy on upscaled pairs against the backbone's token budget (its attention cost)."""
    from daflow_vfx.bench.budget import BudgetJob, bench_budget, parse_budgets

    _bench("budget", bench_budget, BudgetJob, output, update_docs, data=data, model=model, weights=weights,
           budgets=parse_budgets(budgets), scale=scale, levels=_items(levels), seed=seed,
           device=_device(device), limit=limit)


@command.command("ablation")
@_pairs_options(levels="clean,mild,severe,extreme", multiple=True)
@click.option("--model", default="daflow-compact", show_default=True,
              help=_variants("The DA-Flow variant whose DiT taps are zeroed", network_names(backbone=True)))
@click.option("--weights", default=None, metavar="PATH", help="Local weights instead of the shipped ones.")
@click.option("--cnn", default="daflow-compact-cnn", show_default=True,
              help=_variants("The CNN-only model (the same network without the diffusion branch) to compare "
                             "with", network_names(backbone=False)))
@_output_options("ablation-taps")
@device_option
def ablation(data: tuple[str, ...], levels: str, seed: int, limit: int | None, model: str,
             weights: str | None, cnn: str, output: str | None, update_docs: bool, device: str) -> None:
    """EPE with the DiT taps zeroed against as shipped, and against the CNN-only model."""
    from daflow_vfx.bench.ablation import AblationJob, bench_ablation

    _bench("ablation", bench_ablation, AblationJob, output, update_docs, data=data, model=model,
           weights=weights, cnn=cnn, levels=_items(levels), seed=seed, device=_device(device), limit=limit)


@command.command("timestep")
@click.option("--model", default="daflow-compact", show_default=True,
              help=_variants("A DA-Flow variant with a backbone", network_names(backbone=True)))
@click.option("--weights", default=None, metavar="PATH", help="Local weights instead of the shipped ones.")
@click.option("--timesteps", default="0.1,0.25,0.5,0.75,0.9", show_default=True,
              help="Comma-separated t in (0, 1).")
@click.option("--samples", default=16, show_default=True, type=click.IntRange(min=1),
              help="Synthetic windows per measurement.")
@click.option("--data", default=None, type=click.Path(),
              help="Also measure on these pairs (pairs.csv + .flo).")
@click.option("--limit", default=8, show_default=True, type=int, help="Only the first N pairs of --data.")
@_output_options("timestep")
def timestep(model: str, weights: str | None, timesteps: str, samples: int, data: str | None, limit: int,
             output: str | None, update_docs: bool) -> None:
    """Which one-step feature timestep works best: backbone matching and flow EPE per t."""
    from daflow_vfx.bench.timestep import TimestepJob, bench_timestep, parse_timesteps

    _bench("timestep", bench_timestep, TimestepJob, output, update_docs, model=model, weights=weights,
           timesteps=parse_timesteps(timesteps), samples=samples, data=data, limit=limit)


@command.command("propagate")
@click.option("--model", default="daflow-compact", show_default=True,
              help="Flow estimator (see `daflow-vfx models`).")
@click.option("--size", default="320x192", show_default=True, metavar="WxH", help="Plate size.")
@click.option("--frames", default=49, show_default=True, type=click.IntRange(min=2),
              help="Plate length; drift is reported at +12, +24 and +48 where the plate reaches.")
@click.option("--preset", default="severe", show_default=True,
              help="`degrade` preset applied to the plate ('none': clean).")
@click.option("--seed", default=0, show_default=True, type=int, help="Plate and degradation seed.")
@click.option("--methods", default="anchored,chain", show_default=True,
              help="Comma-separated: anchored (direct matches + keyframes), chain (naive).")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="CPU threads for the flow.")
@device_option
@_output_options("propagate")
def propagate(model: str, size: str, frames: int, preset: str, seed: int, methods: str, threads: int | None,
              device: str, output: str | None, update_docs: bool) -> None:
    """Paint propagation on a synthetic plate of known geometry: drift at +12/+24/+48 and occlusion,
    anchored against naive chaining."""
    from daflow_vfx.bench.propagate import PropagateBenchJob, bench_propagate
    from daflow_vfx.errors import UsageError

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise UsageError(f"`size` {size!r} must be WxH, such as 320x192", param="size") from None
    if width < 32 or height < 32:
        raise UsageError(f"`size` {size} is too small; give at least 32x32", param="size")
    from daflow_vfx.degrade_params import PRESETS
    from daflow_vfx.errors import check_choice
    from daflow_vfx.vfx.correspondence import METHODS

    if preset != "none":
        check_choice(preset, PRESETS, "preset")
    for method in _items(methods):
        check_choice(method, METHODS, "methods")
    _bench("propagate", bench_propagate, PropagateBenchJob, output, update_docs, model=model,
           device=_device(device), frames=frames, width=width, height=height,
           preset=None if preset == "none" else preset, seed=seed, methods=_items(methods), threads=threads)


@command.command("train")
@click.option("--model", default="daflow-compact-noprior", show_default=True,
              help=_variants("A prior-free DA-Flow variant (its weights do not matter for speed)",
                             network_names(prior_free=True)))
@click.option("--size", default="512x384", show_default=True,
              help="Training crop, WIDTHxHEIGHT (as bench speed's --sizes), multiples of 16.")
@click.option("--batch", "batch_size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--frames", "num_frames", default=3, show_default=True, type=click.IntRange(min=2, max=8))
@click.option("--iters", default=10, show_default=True, type=click.IntRange(min=1),
              help="Refinement iterations per training step (the device run trains with 10).")
@click.option("--stage", default=2, show_default=True, type=click.IntRange(1, 2),
              help="1: restoration pretraining of the DiT; 2: flow.")
@click.option("--autocast", type=click.Choice(["bfloat16", "float16"]), default=None,
              help="Mixed precision for the forward pass (default float32).")
@click.option("--seconds", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Timed per measurement, after a warm-up.")
@click.option("--data-chunk", default=1, show_default=True, type=click.IntRange(min=1),
              help="Batches the generator makes per call (a training config's data_chunk).")
@_output_options("train-<device>")
@device_option
def train_speed(model: str, size: str, batch_size: int, num_frames: int, iters: int, stage: int,
                autocast: str | None, seconds: float, data_chunk: int, output: str | None,
                update_docs: bool, device: str) -> None:
    """Training throughput: windows/s of the on-device data alone and of full training steps."""
    from daflow_vfx.bench.speed import parse_size
    from daflow_vfx.bench.train_speed import TrainSpeedJob, bench_train_speed

    width, height = parse_size(size, param="size")
    job = TrainSpeedJob(model=model, device=_device(device), size=(height, width), batch_size=batch_size,
                        num_frames=num_frames, iters=iters, stage=stage, autocast=autocast, seconds=seconds,
                        data_chunk=data_chunk, output=_target(output, update_docs))
    click.echo(bench_train_speed(job))
