"""``predict --ray``: :func:`detforge.runtime.predict.predict` with the work on a Ray cluster.

Same sources, model options, sinks and output files; the records come out in the same
order with the same values as a local run. Images are decoded on the cluster's workers, so
their paths (and the model's) must resolve on every node: a shared file system, or the
local cluster.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec

from detforge.core.errors import ConfigError
from detforge.core.storage import storage_errors
from detforge.runtime.loader import resolve_model_path
from detforge.runtime.pipeline import Tracker
from detforge.runtime.sinks import Sink, VisSink, make_sink, partial_path
from detforge.runtime.sources import open_source
from detforge.runtime.stats import RunStats
from detforge.scale.cluster import Cluster
from detforge.scale.schedule import ClusterProgress, ClusterStats, InferencePool, run_on_cluster
from detforge.scale.stages import ModelSpec

__all__ = ["on_cluster", "predict_on_cluster"]

P = ParamSpec("P")


def predict_on_cluster(model: str | Path, source: str | Path, *, out: str | Path,
                       address: str = "local", fmt: str = "jsonl",
                       save_vis: str | Path | None = None, conf: float = 0.25,
                       iou: float = 0.7, max_det: int = 300, batch: int | str = "auto",
                       imgsz: tuple[int, int] | None = None, workers: int | None = None,
                       every: int = 1, fps: float | None = None, keyframes: bool = False,
                       device: str = "auto", track: bool = False, progress: bool = True,
                       spin: bool = False, fast_decode: bool = False,
                       gt: str | Path | None = None, streams: int | str = "auto",
                       max_pixels: int | None = None, partial: bool = False,
                       chunk_size: int = 32, num_cpus: int | None = None,
                       on_chunk: Callable[[ClusterProgress], None] | None = None,
                       ) -> ClusterStats:
    """Detect objects in ``source`` on a Ray cluster and write them to ``out`` here.

    The arguments shared with :func:`~detforge.runtime.predict.predict` mean the same;
    ``out`` is committed only when the run finishes (``partial`` as there).

    Args:
        model: Model file, directory or stem; resolved here, loaded by every actor.
        source: Image, folder, glob, list file or video.
        out: Output file.
        address: ``local`` (a cluster started for this run, on loopback), ``auto``,
            ``HOST:PORT`` or ``ray://HOST:PORT``.
        fmt: ``"jsonl"``, ``"coco"`` or ``"csv"``.
        save_vis: Folder for annotated images (drawn here: every image comes back).
        conf: Confidence threshold.
        iou: NMS IoU threshold.
        max_det: Most detections per image.
        batch: Batch size per actor, or ``"auto"`` (from each actor's hardware).
        imgsz: Input ``(height, width)`` for dynamic-size models.
        workers: Not used: decoding runs as tasks on the cluster's CPUs (one per logical
            CPU at a time).
        every: Keep every n-th video frame.
        fps: Keep video frames at about this rate.
        keyframes: Keep only scene-change frames.
        device: ``auto``, ``cpu`` or ``cuda``; with GPUs in the cluster and any value but
            ``cpu``, one actor per GPU.
        track: Track objects across video frames (here, in order).
        progress: Show a progress bar.
        spin: Idle ONNX Runtime threads spin.
        fast_decode: Decode JPEGs at a reduced scale when the input size allows it.
        gt: COCO ground truth whose image and category ids ``coco`` results use.
        streams: Inference actors in all, or ``"auto"`` (one per GPU; on CPUs two per node,
            each on half of its node's cores).
        max_pixels: Largest image or frame decoded.
        partial: Keep the records of an unfinished run in ``dets.partial.jsonl``.
        chunk_size: Images per task.
        num_cpus: Logical CPUs of a local cluster (default: this machine's cores).
        on_chunk: Called after each chunk is written.

    Returns:
        The run's :class:`~detforge.scale.schedule.ClusterStats`.

    Raises:
        ConfigError: A bad option, model path or source.
        MissingExtraError: Ray is not installed.
        ClusterError: The cluster cannot be reached, the actors cannot load the model, or a
            chunk failed on every retry.
        StorageError: ``out`` cannot be written.

    Example:
        >>> predict_on_cluster("m.onnx", "photos/", out="d.jsonl")  # doctest: +SKIP
    """
    del workers  # decoding is the cluster's: see the docstring
    src = open_source(source, every=every, fps=fps, keyframes=keyframes, max_pixels=max_pixels)
    if streams != "auto" and not (isinstance(streams, int) and streams >= 1):
        raise ConfigError(f"streams must be a positive integer or 'auto', got {streams!r}")
    tracker: Tracker | None = None
    if track:
        from detforge.runtime.track import ByteTracker

        tracker = ByteTracker(frame_rate=fps or 30.0)
    spec = ModelSpec(str(resolve_model_path(model, device=device).absolute()), device=device,
                     imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, batch=batch, spin=spin)
    actors = streams if isinstance(streams, int) else None
    with Cluster(address, num_cpus=num_cpus) as cluster, \
            InferencePool(cluster.require(), spec, actors=actors) as pool, storage_errors(out):
        sinks: list[Sink] = [make_sink(fmt, out, pool.info.classes, gt=gt, partial=partial)]
        try:
            if save_vis is not None:
                sinks.append(VisSink(save_vis, pool.info.classes))
        except BaseException:
            sinks[0].abort()
            raise
        stats = run_on_cluster(cluster.require(), pool, src, sinks, tracker=tracker,
                               progress=progress, fast_decode=fast_decode,
                               chunk_size=chunk_size, on_chunk=on_chunk)
    if not stats.interrupted:
        partial_path(out).unlink(missing_ok=True)  # superseded by the finished output
    return stats


def on_cluster(local: Callable[P, RunStats], *, address: str) -> Callable[P, RunStats]:
    """:func:`predict_on_cluster` called like ``local`` (:func:`detforge.runtime.predict.
    predict`), on the cluster at ``address``.

    An option of ``local`` that the cluster run does not know is dropped when it has its
    default value (it changes nothing) and refused otherwise.

    Example:
        >>> from detforge.runtime.predict import predict
        >>> run = on_cluster(predict, address="local")
        >>> stats = run("m.onnx", "photos/", out="d.jsonl")  # doctest: +SKIP
    """
    known = set(inspect.signature(predict_on_cluster).parameters)
    defaults = {name: p.default for name, p in inspect.signature(local).parameters.items()}

    def run(*args: P.args, **kwargs: P.kwargs) -> RunStats:
        options: dict[str, Any] = dict(kwargs)
        for name in [n for n in options if n not in known]:
            value = options.pop(name)
            if name not in defaults or value != defaults[name]:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {value!r} is not supported with --ray; drop it or "
                                  "run without --ray")
        return predict_on_cluster(*args, address=address, **options)  # type: ignore[arg-type]

    return run
