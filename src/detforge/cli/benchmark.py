"""``detforge benchmark``: models side by side -> table, JSON, baseline check (CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detforge.core.imgsz import IMGSZS_HELP

__all__ = ["register"]


def benchmark_command(
    models: Annotated[list[str], typer.Argument(
        help="Models to compare: .onnx, .engine, .pt files, folders or stems.")],
    source: Annotated[str, typer.Option(
        help="Images to run: folder, list file (.txt), glob or video.")],
    json_out: Annotated[Path, typer.Option("--json", help="Write the rows to this JSON file.")],
    batch: Annotated[str, typer.Option(help="Batch sizes, e.g. 1,8.")] = "1",
    streams: Annotated[str, typer.Option(
        help="Batches inferred at once, model-only and end-to-end, or 'auto' (as predict: "
             "2 on a multi-core CPU, 1 on a GPU).")] = "auto",
    imgsz: Annotated[list[str] | None, typer.Option(
        help=IMGSZS_HELP + " Default: each model's own.")] = None,
    data: Annotated[Path | None, typer.Option(help="Labelled dataset: adds mAP50-95.")] = None,
    split: Annotated[str | None, typer.Option(
        help="Dataset split for mAP (default: val when present, else all).")] = None,
    baseline: Annotated[Path | None, typer.Option(
        help="Earlier --json file; exit 1 if throughput fell past --tolerance.")] = None,
    tolerance: Annotated[str, typer.Option(help="Allowed drop: 5% or 0.05.")] = "5%",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    conf: Annotated[float, typer.Option(help="Confidence threshold (end-to-end).")] = 0.25,
    repeats: Annotated[int, typer.Option(help="Interleaved repetitions.")] = 3,
    seconds: Annotated[float, typer.Option(help="Model-only seconds per repetition.")] = 1.0,
    workers: Annotated[int | None, typer.Option(help="Decode threads.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    spin: Annotated[bool, typer.Option(
        help="ONNX Runtime threads spin while idle: faster on a CPU this run has to itself, "
             "slower on a shared one.")] = False,
    fast_decode: Annotated[bool, typer.Option(
        help="End-to-end runs decode JPEGs at a reduced scale, as `predict --fast-decode`.")
    ] = False,
) -> None:
    """Measure throughput, latency, memory and mAP of models side by side.

    Example: detforge benchmark a.onnx a_int8.onnx --source photos/ --batch 1,8 --json b.json
    """
    from detforge.bench import benchmark, format_table, parse_batches, parse_imgszs
    from detforge.bench.options import parse_tolerance
    from detforge.runtime.predict import parse_streams

    report = benchmark(models, source=source, json_out=json_out, batches=parse_batches(batch),
                       imgszs=parse_imgszs(imgsz), data=data, split=split, baseline=baseline,
                       tolerance=parse_tolerance(tolerance), device=device, conf=conf,
                       repeats=repeats, seconds=seconds, workers=workers, progress=progress,
                       spin=spin, fast_decode=fast_decode, streams=parse_streams(streams))
    typer.echo(format_table(report.result.rows))
    for line in report.result.skipped:
        typer.echo(f"skipped {line}")
    typer.echo(f"wrote {json_out}")
    if report.comparison is not None:
        typer.echo(report.comparison.format())
    if report.regressed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``benchmark`` to the root app."""
    app.command("benchmark")(benchmark_command)
