"""``detforge demo``: the whole chain on a generated dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(out: Annotated[Path, typer.Option(help="Output folder (re-runs reuse steps).")]
         = Path("demo_out"),
         images: Annotated[int, typer.Option(help="Synthetic images.")] = 240,
         epochs: Annotated[int, typer.Option(help="Training epochs.")] = 12) -> None:
    """Run synth -> validate -> split -> train -> evaluate -> export -> INT8 -> engine plan.

    Example: detforge demo --out demo_out
    """
    from detforge.demo import DemoConfig, run_demo

    summary = run_demo(DemoConfig(out=out, images=images, epochs=epochs), echo=typer.echo)
    typer.echo("\nsummary")
    for key, value in summary["figures"].items():
        typer.echo(f"  {key:22s} {value}")
    for key in ("dataset", "run", "pt", "onnx", "int8_onnx", "engine_script"):
        typer.echo(f"  {key:22s} {summary[key]}")
    typer.echo(f"\nreport: {summary['report']}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
