"""`daflow-vfx train`: two-stage training from a YAML config, and export of shipped weights."""

from __future__ import annotations

import click


@click.group("train", invoke_without_command=True)
@click.option("--config", type=click.Path(), default=None,
              help="Training YAML: a recipe stage of configs/compact/ (shipped in the package) or your own.")
@click.option("--out-dir", default=None, help="Override the config's out_dir.")
@click.option("--max-minutes", type=float, default=None, help="Stop (with a checkpoint) after this long.")
@click.option("--init-weights", default=None, help="Start from these safetensors (e.g. the shipped weights).")
@click.pass_context
def command(ctx: click.Context, config: str | None, out_dir: str | None, max_minutes: float | None,
            init_weights: str | None) -> None:
    """Train a DA-Flow variant (resumes from OUT_DIR/checkpoint.pt when present)."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise click.UsageError(
            "give --config configs/compact/stage1-restoration128x160.yaml (or use `train export`)"
        )
    from daflow_vfx.train.config import find_config
    from daflow_vfx.train.loop import TrainConfig, train

    cfg = TrainConfig.from_yaml(find_config(config))
    if out_dir is not None:
        cfg.out_dir = out_dir
    if max_minutes is not None:
        cfg.max_minutes = max_minutes
    if init_weights is not None:
        cfg.init_weights = init_weights
    report = train(cfg, progress=True)
    val = "n/a" if report.val_epe is None else f"{report.val_epe:.3f}"
    click.echo(f"Stopped at stage {report.stage} step {report.step}: loss {report.last_loss:.4f}, "
               f"validation EPE {val}; weights {report.weights}")


@command.command("export")
@click.argument("run_dir")
@click.option("-o", "--output", required=True, help="e.g. daflow_vfx/weights/daflow_compact.safetensors")
@click.option("--model", default="daflow-compact", show_default=True)
def export(run_dir: str, output: str, model: str) -> None:
    """Write RUN_DIR's weights as float16 safetensors and print the sha256 for the registry."""
    from daflow_vfx.train.export import export_run

    click.echo(export_run(run_dir, output, model=model))


@command.command("average")
@click.argument("weights", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="The averaged float16 safetensors to write.")
@click.option("--model", default="daflow-compact", show_default=True)
def average(weights: tuple[str, ...], output: str, model: str) -> None:
    """Average WEIGHTS files fine-tuned from one start (a model soup); print the sha256."""
    from daflow_vfx.train.export import average_weights

    click.echo(average_weights(list(weights), output, model=model))


@command.command("import")
@click.argument("folder", type=click.Path())
@click.option("--model", "models", multiple=True,
              default=("daflow-compact-noprior", "daflow-compact-cnn-noprior"), show_default=True,
              help="Registry variants whose shard sets to merge (repeatable).")
@click.option("-o", "--output-dir", default=None,
              help="Where the merged files go (default: the package's weights folder, under each "
                   "variant's registry file name).")
def import_run(folder: str, models: tuple[str, ...], output_dir: str | None) -> None:
    """Merge a device run's weight shards (FOLDER = the files it returned) into float16 weights files.

    Prints each file's sha256 for the registry. The variant's next device run continues from them.
    """
    from pathlib import Path

    from daflow_vfx.model.weights import WEIGHTS_DIR, get_entry, read_metadata
    from daflow_vfx.train.shards import merge_shards

    for name in models:
        entry = get_entry(name)
        if entry.file is None:
            raise click.UsageError(f"model {name!r} has no weights file in the registry")
        stem = Path(entry.file).name.removesuffix(".safetensors")
        out = Path(output_dir or WEIGHTS_DIR) / entry.file
        out.parent.mkdir(parents=True, exist_ok=True)
        digest = merge_shards(folder, stem, out, model=name)
        meta = read_metadata(out)
        click.echo(f"{name}: {out} sha256 {digest} (device runs {meta.get('device_runs', '?')}, "
                   f"windows {meta.get('device_windows', '?')})")
