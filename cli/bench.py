"""`daflow-vfx bench`: measured benchmarks (not timed tests)."""

from __future__ import annotations

import shlex
import sys

import click

from daflow_vfx.cli._common import ProgressPrinter, device_option


@click.group("bench")
def command() -> None:
    """Accuracy and speed benchmarks; results go into docs/benchmarks.md."""


@command.command("accuracy")
@click.option("--data", required=True, type=click.Path(), help="Folder with pairs.csv and .flo ground truth.")
@click.option("--models", default="daflow-compact,daflow-compact-cnn,dis,farneback,deepflow",
              show_default=True, help="Comma-separated model names (models without weights are skipped).")
@click.option("--levels", default="clean,mild,severe,extreme", show_default=True,
              help="Comma-separated degradation levels.")
@click.option("--seed", default=0, show_default=True, type=int, help="Degradation seed.")
@click.option("--limit", default=None, type=int, help="Only the first N pairs.")
@click.option("--output", default="docs/benchmarks.md", show_default=True,
              help="Markdown file whose accuracy section is replaced; '-' prints only.")
@device_option
def accuracy(data: str, models: str, levels: str, seed: int, limit: int | None, output: str,
             device: str) -> None:
    """EPE and outlier rates of each model at each degradation level, side by side."""
    from daflow_vfx.bench.accuracy import AccuracyJob, bench_accuracy
    from daflow_vfx.engine import resolve_device

    job = AccuracyJob(
        data=data, models=tuple(m.strip() for m in models.split(",") if m.strip()),
        levels=tuple(lv.strip() for lv in levels.split(",") if lv.strip()), seed=seed,
        device=resolve_device(device), limit=limit, output=None if output == "-" else output,
        command="daflow-vfx " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    with ProgressPrinter("bench accuracy") as bar:
        body = bench_accuracy(job, progress=bar)
    click.echo(body)
