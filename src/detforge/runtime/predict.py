"""``predict``: a model over a source into an output file: the library side of the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detforge.core.errors import ConfigError
from detforge.core.imgsz import parse_optional_imgsz
from detforge.core.storage import storage_errors
from detforge.runtime.loader import load_model
from detforge.runtime.pipeline import Tracker, run_pipeline
from detforge.runtime.sinks import Sink, VisSink, make_sink, partial_path
from detforge.runtime.sources import open_source
from detforge.runtime.stats import RunStats

__all__ = ["parse_batch", "parse_imgsz", "parse_streams", "predict"]


def _drift_sink(m: Any, model: str | Path, reference: str | Path, conf: float,
                window: int | None) -> Any:
    """A sink measuring drift against ``reference`` (checked against the loaded model)."""
    from detforge.monitor.build import model_identity
    from detforge.monitor.live import LiveMonitor
    from detforge.monitor.reference import load_reference
    from detforge.monitor.sink import DriftSink
    from detforge.runtime.loader import resolve_model_path

    ref = load_reference(reference)
    ref.check_model(model_identity(m, resolve_model_path(model)), conf=conf,
                    where=str(reference))
    return DriftSink(LiveMonitor(ref, window=window or 1_000_000, min_images=1, cache_s=0))


def parse_imgsz(text: str | None) -> tuple[int, int] | None:
    """``"384,640"`` -> ``(384, 640)``; ``"640"`` -> ``(640, 640)``; None stays None.

    Raises:
        ConfigError: Not one or two positive integers.
    """
    return parse_optional_imgsz(text)


def parse_batch(text: str) -> int | str:
    """``"auto"`` or a positive integer, for ``--batch``.

    Raises:
        ConfigError: Anything else.
    """
    return _auto_or_count(text, "--batch", 8)


def parse_streams(text: str) -> int | str:
    """``"auto"`` or a positive integer, for ``--streams``.

    Raises:
        ConfigError: Anything else.
    """
    return _auto_or_count(text, "--streams", 2)


def _auto_or_count(text: str, flag: str, example: int) -> int | str:
    if text == "auto":
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ConfigError(f"{flag} {text!r}: expected 'auto' or a positive integer such as "
                      f"{example}")


def predict(model: str | Path, source: str | Path, *, out: str | Path, fmt: str = "jsonl",
            save_vis: str | Path | None = None, conf: float = 0.25, iou: float = 0.7,
            max_det: int = 300, batch: int | str = "auto", imgsz: tuple[int, int] | None = None,
            workers: int | None = None, every: int = 1, fps: float | None = None,
            keyframes: bool = False, device: str = "auto", track: bool = False,
            progress: bool = True, spin: bool = False, fast_decode: bool = False,
            gt: str | Path | None = None, streams: int | str = "auto",
            max_pixels: int | None = None, partial: bool = False, reconnect: int = 5,
            live: bool = True, realtime: float | None = None,
            reference: str | Path | None = None, drift_window: int | None = None) -> RunStats:
    """Detect objects in every image or sampled frame of ``source`` and write them to ``out``.

    ``out`` is written only when the run finishes. After an error, a full disk or Ctrl-C
    nothing is written there (the temporary file is removed; one left by a killed run is
    removed by the next run); with ``partial`` the records so far are kept in
    :func:`~detforge.runtime.sinks.partial_path` of ``out`` instead (``dets.partial.jsonl``),
    which a later finished run removes. Unreadable, refused and oversized inputs are skipped
    and counted in the stats, never fatal.

    Args:
        model: Model file, directory or stem (see :func:`~detforge.runtime.load_model`).
        source: Image, folder, glob, list file, video, camera index or stream URL.
        out: Output file.
        fmt: ``"jsonl"``, ``"coco"`` or ``"csv"``.
        save_vis: Folder for annotated images and videos, or None.
        conf: Confidence threshold.
        iou: NMS IoU threshold.
        max_det: Most detections per image.
        batch: Batch size or ``"auto"``.
        imgsz: Input ``(height, width)`` for dynamic-size models.
        workers: Decode threads.
        every: Keep every n-th video frame.
        fps: Keep video frames at about this rate.
        keyframes: Keep only scene-change frames.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        track: Assign track ids across video frames (ByteTrack).
        progress: Show a progress bar.
        spin: Idle ONNX Runtime threads spin (faster on a CPU the run has to itself).
        fast_decode: Decode JPEGs at a reduced scale when the input size allows it
            (faster; pixels differ slightly from a full decode; off with ``save_vis``).
        gt: COCO ground-truth JSON: ``coco`` results then use its image and category ids.
        streams: Batches inferred at once, or ``"auto"`` (two on a multi-core CPU, one on
            a GPU).
        max_pixels: Largest image or frame (width x height) decoded; larger ones are skipped
            before decoding (default 64,000,000, or ``$DETFORGE_MAX_PIXELS``).
        partial: Keep the records of an unfinished run in ``dets.partial.jsonl``.
        reconnect: Stream reconnection attempts in a row before giving up (-1: forever).
        live: Keep only the newest frame of a stream; what inference cannot keep up with
            is dropped and counted.
        realtime: Replay images and videos as a stream at this many frames per second.
        reference: Reference statistics of this model (``detforge monitor reference``):
            the run's drift against it is measured (every signal, image ones included) and
            left in ``stats.drift``. A reference of another model is refused.
        drift_window: Measure drift over the last N images (default: all of them).

    Returns:
        The run's statistics (``interrupted`` is True after Ctrl-C; ``out`` is then not
        written).

    Raises:
        ConfigError: A bad option, model path or source.
        BackendError: The model cannot be loaded or run.
        StorageError: The disk filled up, or ``out`` is not writable (nothing is left there).

    Example:
        >>> stats = predict("model.onnx", "photos/", out="dets.jsonl")  # doctest: +SKIP
    """
    from detforge.runtime.gpu import GpuMonitor

    src = open_source(source, every=every, fps=fps, keyframes=keyframes, max_pixels=max_pixels,
                      reconnect=reconnect, live=live, realtime=realtime)
    tracker: Tracker | None = None
    if track:
        from detforge.runtime.track import ByteTracker

        tracker = ByteTracker(frame_rate=fps or 30.0)
    with load_model(model, device=device, imgsz=imgsz, conf=conf, iou=iou,
                    max_det=max_det, spin=spin) as m, storage_errors(out):
        sinks: list[Sink] = [make_sink(fmt, out, m.classes, gt=gt, partial=partial)]
        try:
            if save_vis is not None:
                sinks.append(VisSink(save_vis, m.classes))
            drift = None if reference is None else _drift_sink(m, model, reference, conf,
                                                               drift_window)
            if drift is not None:
                sinks.append(drift)
        except BaseException:
            sinks[0].abort()
            raise
        with GpuMonitor(m.backend.device) as gpu:
            stats = run_pipeline(m, src, sinks, batch=batch, workers=workers, tracker=tracker,
                                 progress=progress, fast_decode=fast_decode, streams=streams)
        stats.gpu = gpu.summary()
        stats.add_source_counters(src)
        if drift is not None:
            stats.drift = drift.monitor.result()
    if not stats.interrupted:
        partial_path(out).unlink(missing_ok=True)  # superseded by the finished output
    return stats
