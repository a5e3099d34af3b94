"""``detforge predict``: run a detector over images, folders, videos or streams."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detforge.cli.ray_option import RAY_HELP, RayCommand

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
    max_pixels: Annotated[int | None, typer.Option(
        help="Largest image or video frame (width x height) decoded; larger ones are "
             "skipped and counted before any decoding. Default 64000000, or "
             "$DETFORGE_MAX_PIXELS.")] = None,
    partial: Annotated[bool, typer.Option(
        help="If the run stops early (error, full disk, Ctrl-C), keep the records so far in "
             "OUT's .partial file (dets.partial.jsonl); without it nothing is written.")] = False,
    reconnect: Annotated[int, typer.Option(
        help="Stream reconnection attempts in a row (with backoff 0.5 s doubling to 10 s) "
             "before a stream is given up; -1: forever.")] = 5,
    live: Annotated[bool, typer.Option(
        help="Streams: keep only the newest frame, dropping (and counting) what inference "
             "cannot keep up with, so latency stays flat.")] = True,
    realtime: Annotated[float | None, typer.Option(
        help="Replay images or videos as a live stream at this many frames per second "
             "(e.g. a KITTI image_2 folder at 10); late frames are dropped and counted.")] = None,
    reference: Annotated[Path | None, typer.Option(
        help="Reference statistics of this model (`detforge monitor reference`): print the "
             "run's drift against it, image signals included.")] = None,
    fail_on_drift: Annotated[bool, typer.Option(
        help="With --reference: exit 5 (after writing OUT) when a signal is past its PSI "
             "threshold.")] = False,
    fail_on_skip: Annotated[bool, typer.Option(
        help="Exit 3 (after writing every other record) when an input was skipped as "
             "unreadable, refused or too large.")] = False,
    ray: Annotated[str | None, typer.Option("--ray", metavar="[ADDRESS]", help=RAY_HELP)]
    = None,
) -> None:
    """Detect objects and write one record per image or frame.

    Example: detforge predict model.onnx photos/ --out dets.jsonl --save-vis vis/

    Example: detforge predict model.onnx /library/2024/ --out dets.jsonl --fast-decode

    Example: detforge predict model.onnx ds/images --format coco --gt gt.json --out dt.json

    Example: detforge predict model.onnx rtsp://cam1/stream --out dets.jsonl --fps 5

    Example: detforge predict model.onnx kitti/image_2 --realtime 10 --out dets.jsonl

    OUT is written only when the run finishes. Unreadable or oversized inputs are skipped,
    listed and counted ("skipped: N"); the exit code stays 0 unless --fail-on-skip. A stream
    that never delivered a frame exits 4.
    """
    from detforge.runtime.predict import parse_batch, parse_imgsz, parse_streams, predict
    from detforge.runtime.sinks import partial_path

    if ray is not None:  # the same predict, with the work on a Ray cluster
        from detforge.scale.predict import on_cluster

        predict = on_cluster(predict, address=ray)
    stats = predict(model, source, out=out, fmt=fmt, save_vis=save_vis, conf=conf, iou=iou,
                    max_det=max_det, batch=parse_batch(batch), imgsz=parse_imgsz(imgsz),
                    workers=workers, every=every, fps=fps, keyframes=keyframes, device=device,
                    track=track, progress=progress, spin=spin, fast_decode=fast_decode, gt=gt,
                    streams=parse_streams(streams), max_pixels=max_pixels, partial=partial,
                    reconnect=reconnect, live=live, realtime=realtime, reference=reference)
    typer.echo(stats.format())
    if stats.interrupted:
        typer.echo(f"interrupted: {out} not written; " + (
            f"the records so far are in {partial_path(out)}" if partial
            else "pass --partial to keep the records so far"))
        raise typer.Exit(130)
    typer.echo(f"wrote {out}" + (f" and {save_vis}/" if save_vis else ""))
    if stats.drift is not None:
        from detforge.monitor.report import format_result

        typer.echo(format_result(stats.drift))
    if stats.never_read:
        typer.echo(f"no frame was ever read from {', '.join(stats.never_read)}", err=True)
        raise typer.Exit(4)
    if fail_on_skip and stats.skipped:
        typer.echo(f"{stats.skipped} input(s) skipped (--fail-on-skip)", err=True)
        raise typer.Exit(3)
    if fail_on_drift and stats.drift is not None and stats.drift.drifted:
        typer.echo(f"drift in {', '.join(stats.drift.drifted)} (--fail-on-drift)", err=True)
        raise typer.Exit(5)


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the root app."""
    app.command("predict", cls=RayCommand)(predict_command)
