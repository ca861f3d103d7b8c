"""`daflow-vfx models`: the flow estimators this install can run."""

from __future__ import annotations

import click


@click.command("models")
def command() -> None:
    """List the flow estimators (--model names) and whether their weights are present."""
    from daflow_vfx.registry import available_models, resolve_default_model

    default = resolve_default_model()
    models = available_models()
    width = max(len(m.name) for m in models) + 2
    click.echo(f"{'name':<{width}}{'params':>10}  {'weights':<9}description")
    for m in models:
        params = "-" if m.params is None else f"{m.params / 1e6:.1f}M"
        weights = "ok" if m.weights_present else "MISSING"
        mark = " (default)" if m.name == default else ""
        click.echo(f"{m.name:<{width}}{params:>10}  {weights:<9}{m.description}{mark}")
