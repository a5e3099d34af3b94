"""``detforge demo``: the whole chain on a generated dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(out: Annotated[Path, typer.Option(help="Output folder (re-runs reuse steps).")]
         = Path("demo_out"),
         images: Annotated[int, typer.Option(help="Synthetic images.")] = 200,
         epochs: Annotated[int, typer.Option(help="Training epochs.")] = 25) -> None:
    """Run the whole chain: synth, validate, split, train, evaluate, export, INT8, benchmark,
    deployment bundle, predict with tracking on a video; then a summary and an index page.

    Example: detforge demo --out demo_out
    """
    from detforge.data.report import text_table
    from detforge.demo import DemoConfig, run_demo
    from detforge.demo.report import figure_rows

    summary = run_demo(DemoConfig(out=out, images=images, epochs=epochs), echo=typer.echo)
    typer.echo("\nsummary\n" + text_table(["", "value"], figure_rows(summary["figures"])))
    for row in summary.get("benchmark_rows") or []:
        typer.echo(f"  benchmark  {row['model']:18s} batch {row['batch']:<3} "
                   f"{row['model_only_ips']:7.1f} img/s model-only  "
                   f"{row['end_to_end_ips']:7.1f} img/s end-to-end")
    for key in ("dataset", "run", "pt", "onnx", "int8_onnx", "bundle", "engine_script", "tracks"):
        typer.echo(f"  {key:22s} {summary[key]}")
    typer.echo(f"\nreport: {summary['report']}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
