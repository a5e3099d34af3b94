"""``detforge monitor reference|report|assets|watch``: drift monitoring and retraining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from detforge.core.imgsz import IMGSZ_HELP, parse_optional_imgsz

monitor_app = typer.Typer(help="Production monitoring: reference statistics, drift reports, "
                          "Prometheus/Grafana files, and the retrain trigger.",
                          no_args_is_help=True)


@monitor_app.command("reference")
def reference(
    model: Annotated[str, typer.Argument(help="Model: .onnx, .pt, .engine, a folder or a stem.")],
    data: Annotated[Path, typer.Option(help="Dataset the model is known to handle.")],
    out: Annotated[Path, typer.Option(help="Reference file to write (.json).")],
    split: Annotated[str, typer.Option(help="Split to read ('all': every image).")] = "val",
    conf: Annotated[float, typer.Option(help="Confidence threshold (the server's).")] = 0.25,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.7,
    imgsz: Annotated[str | None, typer.Option(help=IMGSZ_HELP + " Default: the model's.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    max_images: Annotated[int | None, typer.Option(help="Read at most this many.")] = None,
) -> None:
    """Reference statistics of a model on a dataset split, for drift monitoring.

    Example: detforge monitor reference model.onnx --data ds --out ref.json
    """
    from detforge.monitor import build_reference

    ref = build_reference(model, data, split=None if split == "all" else split, conf=conf,
                          iou=iou, imgsz=parse_optional_imgsz(imgsz), device=device,
                          max_images=max_images, progress=True)
    ref.write(out)
    sig = ref.signals
    typer.echo(f"wrote {out}: {ref.data['images']} images, {sig['score'].count} detections, "
               f"mean score {sig['score'].mean:.3f}, classes {list(ref.model.classes)}")


@monitor_app.command("report")
def report(
    reference_file: Annotated[Path, typer.Option("--reference", help="Reference file.")],
    jsonl: Annotated[Path, typer.Option(help="`detforge predict --format jsonl` output.")],
    window: Annotated[int | None, typer.Option(help="Use the last N records.")] = None,
    min_images: Annotated[int, typer.Option(help="Fewest records to judge.")] = 30,
    psi: Annotated[float, typer.Option(help="PSI threshold of every signal.")] = 0.2,
    config: Annotated[Path | None, typer.Option(
        help="monitor.yaml: its thresholds replace --psi.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Drift of predict output against a reference; exit 1 past the thresholds.

    Example: detforge monitor report --reference ref.json --jsonl dets.jsonl
    """
    from detforge.monitor import (
        Thresholds,
        drift_from_jsonl,
        format_result,
        load_monitor_config,
        load_reference,
        result_to_dict,
    )

    thresholds = (load_monitor_config(config).thresholds.to_thresholds() if config
                  else Thresholds(psi))
    result = drift_from_jsonl(load_reference(reference_file), jsonl, window=window,
                              min_images=min_images, thresholds=thresholds)
    typer.echo(json.dumps(result_to_dict(result), indent=2) if as_json
               else format_result(result))
    if result.drifted:
        raise typer.Exit(1)


@monitor_app.command("assets")
def assets(
    out: Annotated[Path, typer.Option(help="Folder to write.")],
    target: Annotated[list[str] | None, typer.Option(
        help="host:port of a server to scrape (repeat).")] = None,
    job: Annotated[str, typer.Option(help="Prometheus job name.")] = "detforge",
    scrape_interval: Annotated[str, typer.Option(help="Prometheus scrape interval.")] = "15s",
    drift_for: Annotated[str, typer.Option(
        help="How long drift must last before the alert fires.")] = "10m",
    latency_p99: Annotated[float, typer.Option(help="p99 latency alert (seconds).")] = 0.5,
    check: Annotated[bool, typer.Option(help="Check the files with promtool.")] = False,
) -> None:
    """Prometheus config, alert rules (+ promtool tests), Grafana dashboard, docker-compose.

    Example: detforge monitor assets --out monitoring --target 10.0.0.5:8000 --check
    """
    from detforge.monitor.assets import AssetOptions, write_assets

    opts = AssetOptions(job=job, targets=tuple(target or ("serve:8000",)),
                        scrape_interval=scrape_interval, evaluation_interval=scrape_interval,
                        drift_for=drift_for, latency_p99_s=latency_p99)
    for path in write_assets(out, opts):
        typer.echo(f"wrote {path}")
    if check:
        from detforge.monitor.promtool import check_assets

        for line in check_assets(out):
            typer.echo(f"promtool: {line}: ok")


@monitor_app.command("watch")
def watch(
    config: Annotated[Path, typer.Option(help="monitor.yaml.")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="key.sub=value override of monitor.yaml (repeat).")] = None,
    once: Annotated[bool, typer.Option(help="Check once, run at most one cycle.")] = False,
    now: Annotated[bool, typer.Option(help="Run one cycle now, whatever the triggers.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Record what would run; train nothing.")] = False,
    max_cycles: Annotated[int | None, typer.Option(help="Stop after N cycles.")] = None,
) -> None:
    """Retrain when the drift alert fires (or on schedule): train, evaluate against
    production on the held-out set, register, promote only if better.

    Example: detforge monitor watch --config monitor.yaml
    """
    from detforge.monitor import load_monitor_config
    from detforge.monitor.retrain import run_cycle
    from detforge.monitor.watch import watch as run_watch

    overrides = list(set_ or []) + (["dry_run=true"] if dry_run else [])
    cfg = load_monitor_config(config, overrides)
    if now:
        result = run_cycle(cfg, trigger="manual", echo=typer.echo)
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for result in run_watch(cfg, once=once, max_cycles=max_cycles, echo=typer.echo):
        typer.echo(json.dumps(result.to_dict(), indent=2))


def register(app: typer.Typer) -> None:
    """Add the ``monitor`` command group to ``app``."""
    app.add_typer(monitor_app, name="monitor")
