"""``detforge train``: train one model, or a size sweep, offline and tracked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from detforge.core.imgsz import IMGSZ_HELP

__all__ = ["register", "train_command"]


def train_command(
    data: Annotated[Path | None, typer.Option(help="Dataset (COCO, YOLO, VOC or KITTI).")] = None,
    model: Annotated[str | None, typer.Option(help="yolo11n.yaml, yolov8s.yaml, rtdetr-l.yaml "
                                                   "or a local .pt")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    imgsz: Annotated[str | None, typer.Option(help=IMGSZ_HELP)] = None,
    preset: Annotated[str | None, typer.Option(help="traffic, ppe, wildlife or industrial.")]
    = None,
    sizes: Annotated[str | None, typer.Option(help="Train these sizes, e.g. n,s,m.")] = None,
    out: Annotated[Path | None, typer.Option(help="Runs root (default: runs).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue run NAME from last.pt.")]
    = False,
    overfit: Annotated[int | None, typer.Option(
        help="Sanity check: memorise N images (train = val, no augmentation).")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, 0 or 0,1 (DDP).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    deterministic: Annotated[bool, typer.Option("--deterministic",
                                                help="Deterministic algorithms.")] = False,
    name: Annotated[str | None, typer.Option(help="Run name (default: train).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key.sub=value override.")]
    = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file.")] = None,
) -> None:
    """Train a detector (Ultralytics, offline) into runs/NAME/vN with lineage and MLflow.

    Example: detforge train --data ds --model yolo11n.yaml --epochs 10 --imgsz 320
    """
    from detforge.train import RunResult, load_train_config, run_training
    from detforge.train.config import parse_imgsz, parse_sizes

    flags: dict[str, Any] = {
        "data": data, "model": model, "epochs": epochs, "batch": batch, "device": device,
        "seed": seed, "name": name, "out": out, "overfit": overfit,
        "imgsz": parse_imgsz(imgsz) if imgsz else None,
        "sizes": parse_sizes(sizes) if sizes else None,
        "resume": resume or None, "deterministic": deterministic or None,
        "tracking": {"uri": tracking_uri} if tracking_uri else None,
    }
    cfg = load_train_config(config, preset=preset, flags=flags, overrides=set_ or ())
    result = run_training(cfg)
    if isinstance(result, RunResult):
        m = result.final_metrics
        typer.echo(f"run      {result.run_dir}\nbest     {result.best}\nlast     {result.last}\n"
                   f"metrics  {result.metrics_csv}\nepochs   {result.epochs_done}\n"
                   f"mAP50-95 {m.get('mAP50-95', float('nan')):.4f}  "
                   f"mAP50 {m.get('mAP50', float('nan')):.4f}")
    else:
        typer.echo(result.table())


def register(app: typer.Typer) -> None:
    """Add ``train`` to the root app."""
    app.command("train")(train_command)
