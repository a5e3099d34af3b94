"""``detforge registry list|register|promote|rollback|show``: the MLflow model registry."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

registry_app = typer.Typer(help="Model registry on MLflow: register, promote, roll back.",
                           no_args_is_help=True)

TrackingUri = Annotated[str | None, typer.Option(
    help="MLflow store URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<out>/mlflow.db).")]
Out = Annotated[Path, typer.Option(help="Runs folder of the local store, as `train --out`.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@registry_app.command("register")
def register_model(
    model: Annotated[Path, typer.Argument(help="Model file: .onnx or .pt (training weights).")],
    name: Annotated[str, typer.Option(help="Registered model name.")],
    bundle: Annotated[Path | None, typer.Option(
        help="Bundle from `detforge deploy bundle` (its folder or one target folder).")] = None,
    tracking_uri: TrackingUri = None,
    out: Out = Path("runs"),
) -> None:
    """Log a model (and its bundle) to MLflow and register it as a new version with a card.

    Example: detforge registry register model.onnx --name ppe --bundle bundles/
    """
    from detforge.deploy.registry import open_registry

    card = open_registry(tracking_uri, out=out).register(model, name=name, bundle=bundle)
    targets = ", ".join(card.targets) or "none"
    typer.echo(f"registered {name} v{card.version} ({card.format}, sha256 {card.sha256[:12]}, "
               f"dataset {card.dataset_version or 'unknown'}, targets {targets})")
    typer.echo(f"promote it: detforge registry promote {name} {card.version} --to staging")


def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version number or alias (e.g. staging).")],
    to: Annotated[str, typer.Option(help="Alias to set: production or staging.")],
    tracking_uri: TrackingUri = None,
    out: Out = Path("runs"),
) -> None:
    """Point an alias at a version; the replaced production version becomes previous-production.

    Example: detforge registry promote ppe 3 --to production
    """
    from detforge.deploy.registry import open_registry

    done = open_registry(tracking_uri, out=out).promote(name, version, to=to)
    was = f" (was v{done.replaced})" if done.replaced is not None else ""
    typer.echo(f"{name}: {done.alias} -> v{done.version}{was}")
    if done.alias == "production" and done.previous is not None:
        typer.echo(f"{name}: previous-production -> v{done.previous}")


def rollback(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    tracking_uri: TrackingUri = None,
    out: Out = Path("runs"),
) -> None:
    """Move production back to the previous production version.

    Example: detforge registry rollback ppe
    """
    from detforge.deploy.registry import open_registry

    done = open_registry(tracking_uri, out=out).rollback(name)
    typer.echo(f"{name}: production -> v{done.version} (was v{done.replaced})")
    prev = f"v{done.previous}" if done.previous is not None else "none (no earlier version)"
    typer.echo(f"{name}: previous-production -> {prev}")


def list_models(as_json: AsJson = False, tracking_uri: TrackingUri = None,
                out: Out = Path("runs")) -> None:
    """Registered models with their versions, aliases and key metrics.

    Example: detforge registry list --json
    """
    from detforge.deploy.registry import open_registry

    models = open_registry(tracking_uri, out=out).list_models()
    if as_json:
        typer.echo(json.dumps([asdict(m) for m in models], indent=2))
        return
    if not models:
        typer.echo("no registered models; add one with "
                   "`detforge registry register MODEL --name NAME`")
        return
    typer.echo(f"{'model':20s} {'ver':>4s} {'aliases':28s} {'dataset':14s} {'targets':18s} "
               "metrics")
    for m in models:
        for v in m.versions:
            metrics = "  ".join(f"{k}={val:.4g}" for k, val in v.metrics.items()) or "-"
            typer.echo(f"{m.name:20s} {v.version:>4d} {','.join(v.aliases) or '-':28s} "
                       f"{(v.dataset_version or '-')[:14]:14s} "
                       f"{','.join(v.targets) or '-':18s} {metrics}")


def show(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str | None, typer.Argument(
        help="Version number or alias (default: production, else the newest).")] = None,
    as_json: AsJson = False,
    tracking_uri: TrackingUri = None,
    out: Out = Path("runs"),
) -> None:
    """Print the model card of a version.

    Example: detforge registry show ppe production
    """
    from detforge.deploy.registry import open_registry

    card = open_registry(tracking_uri, out=out).show(name, version)
    if as_json:
        typer.echo(json.dumps(card, indent=2))
        return
    typer.echo(card["description"].rstrip("\n"))
    typer.echo(f"aliases: {', '.join(card['aliases']) or 'none'}")
    typer.echo(f"source: {card['source']}")


registry_app.command("promote")(promote)
registry_app.command("rollback")(rollback)
registry_app.command("list")(list_models)
registry_app.command("show")(show)


def register(app: typer.Typer) -> None:
    """Add the ``registry`` command group to ``app``."""
    app.add_typer(registry_app, name="registry")
