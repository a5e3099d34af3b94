"""``detforge serve``: online inference over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["register"]


def serve_command(
    model: Annotated[str, typer.Argument(
        help="Model: .engine, .onnx, .pt, a bundle target folder, a models folder or a stem.")],
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0: all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", envvar="DETFORGE_PORT")] = 8000,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    conf: Annotated[float, typer.Option(help="Default confidence threshold.")] = 0.25,
    iou: Annotated[float, typer.Option(help="Default NMS IoU threshold.")] = 0.7,
    max_det: Annotated[int, typer.Option(help="Default and largest detections per image.")] = 300,
    imgsz: Annotated[str | None, typer.Option(help="Input size H,W (dynamic models).")] = None,
    max_batch: Annotated[int, typer.Option(help="Most images per inference batch.")] = 8,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for a batch to fill.")] = 5.0,
    max_queue: Annotated[int, typer.Option(help="Most queued images; then 503.")] = 64,
    max_image_mb: Annotated[float, typer.Option(help="Largest image file (MiB); then 413.")] = 20.0,
    max_images: Annotated[int, typer.Option(help="Most images per request; then 413.")] = 16,
    max_pixels: Annotated[int, typer.Option(
        help="Largest image (width x height), checked on its header before decoding; "
             "then 413.")] = 64_000_000,
    body_timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the next piece of a request body; then 408 and the "
             "connection is closed.")] = 30.0,
    min_upload_rate: Annotated[float, typer.Option(
        help="Slowest average upload (KiB/s) accepted once a body has taken --body-timeout; "
             "then 408 (0: none).")] = 8.0,
    api_key_env: Annotated[str, typer.Option(
        help="Environment variable holding the API key (auth off when unset).")] = (
        "DETFORGE_API_KEY"),
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime CPU threads.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    reference: Annotated[str | None, typer.Option(
        help="Reference statistics (`detforge monitor reference`): drift gauges per signal "
             "and class on /metrics. A reference of another model is refused.")] = None,
    monitor_config: Annotated[str | None, typer.Option(
        help="monitor.yaml: drift window and thresholds (and the reference, if it names "
             "one).")] = None,
    drift_window: Annotated[int | None, typer.Option(help="Images in the drift window.")] = None,
    drift_min_images: Annotated[int | None, typer.Option(
        help="Images the window needs before drift is reported.")] = None,
    drift_psi: Annotated[float | None, typer.Option(help="PSI threshold of every signal.")] = None,
    max_video_mb: Annotated[float, typer.Option(help="Largest video upload (MiB).")] = 200.0,
    max_video_frames: Annotated[int, typer.Option(
        help="Most sampled frames per video or stream job.")] = 10_000,
    max_jobs: Annotated[int, typer.Option(help="Video and stream jobs kept at once.")] = 8,
    allow_streams: Annotated[bool, typer.Option(
        help="Accept POST /v1/streams (the server connects to the URLs clients send).")] = False,
) -> None:
    """Serve a detector over HTTP: POST /v1/detect, /v1/videos, /v1/streams; GET /health,
    /ready, /metrics, /v1/model, /v1/jobs/ID.

    Example: detforge serve model.onnx --port 8000
    (then: curl -F images=@a.jpg localhost:8000/v1/detect)

    Example: detforge serve model.onnx --reference ref.json
    (then: curl --data-binary @clip.mp4 -H 'Content-Type: video/mp4'
    'localhost:8000/v1/videos?fps=2&wait=true')
    """
    from detforge.runtime.predict import parse_imgsz
    from detforge.serve import ServeConfig, serve

    drift: dict[str, object] = {}
    if monitor_config is not None:
        from detforge.monitor import load_monitor_config

        mcfg = load_monitor_config(monitor_config)
        drift = {"reference": str(mcfg.reference) if mcfg.reference else None,
                 "drift_window": mcfg.window.images, "drift_min_images": mcfg.window.min_images,
                 "drift_psi": mcfg.thresholds.psi, "drift_thresholds": mcfg.thresholds.signals}
    drift.update({k: v for k, v in {"reference": reference, "drift_window": drift_window,
                                    "drift_min_images": drift_min_images,
                                    "drift_psi": drift_psi}.items() if v is not None})
    config = ServeConfig.from_options(
        model=model, host=host, port=port, device=device, conf=conf, iou=iou, max_det=max_det,
        imgsz=parse_imgsz(imgsz), max_batch=max_batch, max_wait_ms=max_wait_ms,
        max_queue=max_queue, max_image_mb=max_image_mb, max_images=max_images,
        max_pixels=max_pixels, body_timeout=body_timeout, min_upload_rate=min_upload_rate,
        api_key_env=api_key_env or None, threads=threads, log_level=log_level,
        max_video_mb=max_video_mb, max_video_frames=max_video_frames, max_jobs=max_jobs,
        allow_streams=allow_streams, **drift)
    serve(config)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the root app."""
    app.command("serve")(serve_command)
