"""``detforge predict``: run a detector over images, folders, videos or streams."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def predict_command(
    model: Annotated[str, typer.Argument(help="Model: .engine, .onnx, .pt, a folder or a stem.")],
    source: Annotated[str, typer.Argument(
        help="Image, folder, glob, list file (.txt), video, camera index or rtsp:// URL.")],
    out: Annotated[Path, typer.Option("--out", help="Output file (.jsonl, .json, .csv).")],
    save_vis: Annotated[Path | None, typer.Option(help="Folder for annotated output.")] = None,
    conf: Annotated[float, typer.Option(help="Confidence threshold.")] = 0.25,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.7,
    max_det: Annotated[int, typer.Option(help="Most detections per image.")] = 300,
    batch: Annotated[str, typer.Option(help="Batch size, or 'auto'.")] = "auto",
    streams: Annotated[str, typer.Option(
        help="Batches inferred at once, or 'auto' (2 on a multi-core CPU, each on half the "
             "cores; 1 on a GPU).")] = "auto",
    imgsz: Annotated[str | None, typer.Option(help="Input size H,W (dynamic models).")] = None,
    workers: Annotated[int | None, typer.Option(help="Decode threads.")] = None,
    every: Annotated[int, typer.Option(help="Keep every n-th video frame.")] = 1,
    fps: Annotated[float | None, typer.Option(help="Keep video frames at this rate.")] = None,
    keyframes: Annotated[bool, typer.Option(help="Keep scene-change frames only.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="jsonl, coco or csv.")] = "jsonl",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    track: Annotated[bool, typer.Option(help="Track objects across frames (ByteTrack).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    spin: Annotated[bool, typer.Option(
        help="ONNX Runtime threads spin while idle: faster on a CPU this run has to itself, "
             "slower on a shared one.")] = False,
    fast_decode: Annotated[bool, typer.Option(
        help="Decode JPEGs at 1/2, 1/4 or 1/8 scale when the input is that much smaller "
             "(e.g. 4000x3000 photos at 640: about 4x less decode work). Pixels differ "
             "slightly from a full decode; not used with --save-vis.")] = False,
    gt: Annotated[Path | None, typer.Option(
        help="COCO ground truth: --format coco results use its image and category ids, "
             "ready for `detforge evaluate --predictions OUT --gt GT`.")] = None,
) -> None:
    """Detect objects and write one record per image or frame.

    Example: detforge predict model.onnx photos/ --out dets.jsonl --save-vis vis/

    Example: detforge predict model.onnx /library/2024/ --out dets.jsonl --fast-decode

    Example: detforge predict model.onnx ds/images --format coco --gt gt.json --out dt.json
    """
    from detforge.runtime.predict import parse_batch, parse_imgsz, parse_streams, predict

    stats = predict(model, source, out=out, fmt=fmt, save_vis=save_vis, conf=conf, iou=iou,
                    max_det=max_det, batch=parse_batch(batch), imgsz=parse_imgsz(imgsz),
                    workers=workers, every=every, fps=fps, keyframes=keyframes, device=device,
                    track=track, progress=progress, spin=spin, fast_decode=fast_decode, gt=gt,
                    streams=parse_streams(streams))
    typer.echo(stats.format())
    typer.echo(f"wrote {out}" + (f" and {save_vis}/" if save_vis else ""))
    if stats.interrupted:
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the root app."""
    app.command("predict")(predict_command)
