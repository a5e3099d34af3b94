"""The pipelined engine: decode -> letterbox -> batch -> infer -> decode boxes -> sinks.

Threads and queues::

    producer thread ──submit──▶ decode pool (N threads: imread + letterbox + normalise)
          │ futures, in input order (bounded queue: back-pressure, flat memory)
          ▼
    main thread: batcher (fixed, or dynamic: what is ready, up to max, small wait)
          │ submit                                  │ futures, in batch order (bounded queue)
          ▼                                         ▼
    inference streams (1 or 2 threads)  ──▶  post thread: box decoding + NMS, tracking,
                                                  sinks, progress bar, statistics

OpenCV and ONNX Runtime release the GIL, so decoding overlaps inference. With two streams
(the CPU default) two batches run at once, each on half the cores. Output order is input
order. Sinks are closed (their outputs committed) only when the run finishes; after an error
they are aborted (outputs removed, or kept under their partial names). Ctrl-C
(``KeyboardInterrupt``) stops reading, finishes the batches already submitted, aborts the
sinks and returns stats with ``interrupted=True``. Unreadable, refused and oversized inputs
(:mod:`detforge.core.imageio`) are skipped and counted, never fatal.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.core.errors import ConfigError
from detforge.runtime.backend import Backend, RawOutput
from detforge.runtime.hardware import choose_batch, choose_streams, cpu_cores, detect_hardware
from detforge.runtime.model import Model
from detforge.runtime.preprocess import LetterboxInfo
from detforge.runtime.sinks import Prediction, Sink
from detforge.runtime.sources import Source, SourceItem, UnreadableError
from detforge.runtime.stats import RunStats

__all__ = ["Tracker", "finish_sinks", "resolve_batch", "resolve_streams", "run_pipeline"]

_END = object()
_POLL_S = 0.1


class Tracker(Protocol):
    """Assigns track ids across the frames of each source."""

    def update(self, source: str, detections: Detections) -> Detections:
        """Return ``detections`` with ``track_ids`` set."""
        ...


@dataclass(slots=True)
class _Ready:
    item: SourceItem
    tensor: NDArray[np.float32] | None
    info: LetterboxInfo | None
    image: NDArray[np.uint8] | None
    start: float
    error: str | None = None


def resolve_batch(model: Model, batch: int | str, *, streams: int = 1) -> int:
    """The batch size for ``batch`` (an int, or ``"auto"`` from the hardware profile and
    the number of ``streams``).

    Raises:
        ConfigError: ``batch`` is neither a positive int nor ``"auto"``.
    """
    if batch == "auto":
        spec = model.backend.input_spec
        return choose_batch(detect_hardware(), device=model.backend.device,
                            fixed_batch=spec.fixed_batch, max_batch=spec.max_batch,
                            input_hw=model.imgsz, streams=streams)
    if isinstance(batch, int) and batch >= 1:
        return batch
    raise ConfigError(f"batch must be a positive integer or 'auto', got {batch!r}")


def resolve_streams(model: Model, streams: int | str) -> tuple[int, Backend | None]:
    """How many batches to run at once, and the backend those streams call.

    Args:
        model: The detector.
        streams: A count, or ``"auto"`` (:func:`~detforge.runtime.hardware.choose_streams`).

    Returns:
        ``(n, backend)``: with ``n > 1``, ``backend`` is the model backend's
        :meth:`~detforge.runtime.backend.BackendBase.concurrent` session; ``(1, None)`` when
        one stream is asked for or the backend gains nothing from more.

    Raises:
        ConfigError: ``streams`` is neither a positive int nor ``"auto"``.
    """
    if streams == "auto":
        n = choose_streams(detect_hardware(), device=model.backend.device)
    elif isinstance(streams, int) and streams >= 1:
        n = streams
    else:
        raise ConfigError(f"streams must be a positive integer or 'auto', got {streams!r}")
    concurrent = getattr(model.backend, "concurrent", None)
    backend = concurrent(n) if n > 1 and concurrent is not None else None
    return (n, backend) if backend is not None else (1, None)


def run_pipeline(model: Model, source: Source | Iterable[SourceItem], sinks: Sequence[Sink], *,
                 batch: int | str = "auto", dynamic: bool = True, workers: int | None = None,
                 max_wait_s: float = 0.003, queue_size: int | None = None,
                 tracker: Tracker | None = None, progress: bool = True,
                 warmup: bool = True, fast_decode: bool = False,
                 streams: int | str = "auto") -> RunStats:
    """Run ``model`` over ``source``, writing every prediction to ``sinks`` in input order.

    Args:
        model: The detector.
        source: A :class:`~detforge.runtime.sources.Source` or any iterable of items.
        sinks: Receivers of the predictions; each is closed when the run finishes, aborted
            (``abort()``, when it has one) after an error or Ctrl-C.
        batch: Batch size, or ``"auto"`` (from the hardware and the model's batch limits).
        dynamic: Run whatever is decoded when the batcher is ready (up to ``batch``, after
            waiting at most ``max_wait_s``) instead of always waiting for a full batch.
        workers: Decode threads (default: usable cores, at least 2).
        max_wait_s: Longest the dynamic batcher waits for more images.
        queue_size: Most decoded images waiting for the batcher (default: ``2 * batch +
            workers``); this bounds memory however large the input is.
        tracker: Assigns track ids (video), or None.
        progress: Show a tqdm progress bar.
        warmup: Run one dummy batch before timing.
        fast_decode: Decode JPEGs at 1/2, 1/4 or 1/8 scale when the input size allows it
            (:mod:`~detforge.runtime.reduced_decode`); boxes still come in original pixels.
            Ignored when a sink needs the images (annotated output).
        streams: Batches inferred at once, or ``"auto"`` (two on a CPU with two or more
            cores, one on a GPU); see :func:`resolve_streams`.

    Returns:
        The run's :class:`~detforge.runtime.stats.RunStats`.

    Raises:
        ConfigError: A bad batch, streams, workers or queue size.
        BackendError: The backend failed on a batch.

    Example:
        >>> stats = run_pipeline(model, open_source("photos/"),  # doctest: +SKIP
        ...                      [JsonlSink("out.jsonl", model.classes)])
    """
    from tqdm import tqdm

    n_streams, stream_backend = resolve_streams(model, streams)
    bs = resolve_batch(model, batch, streams=n_streams)
    n_workers = workers if workers is not None else max(2, cpu_cores())
    if n_workers < 1:
        raise ConfigError(f"workers must be at least 1, got {n_workers}")
    qsize = queue_size if queue_size is not None else (n_streams + 1) * bs + n_workers
    if qsize < 1:
        raise ConfigError(f"queue_size must be at least 1, got {qsize}")
    keep_images = any(getattr(s, "needs_image", False) for s in sinks)
    reduce = fast_decode and not keep_images
    stats = RunStats(batch_size=bs, streams=n_streams)
    total = source.estimate_total() if isinstance(source, Source) else None
    bar = tqdm(total=total, unit="img", disable=not progress, dynamic_ncols=True)
    if warmup:
        model.warmup(1, bs, backend=stream_backend)

    stop = threading.Event()  # stop reading the source
    post_dead = threading.Event()  # the post thread failed: stop feeding it
    pending: queue.Queue[Any] = queue.Queue(maxsize=qsize)
    post_q: queue.Queue[Any] = queue.Queue(maxsize=n_streams + 1)
    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="detforge-decode")
    infer_pool = ThreadPoolExecutor(max_workers=n_streams, thread_name_prefix="detforge-infer")
    errors: list[BaseException] = []

    def prepare(item: SourceItem, start: float) -> _Ready:
        t0 = time.perf_counter()
        try:
            if reduce:
                image, (full_h, full_w) = item.load_reduced(model.imgsz)
            else:
                image = item.load()
                full_h, full_w = image.shape[:2]
        except UnreadableError as exc:
            return _Ready(item, None, None, None, start, error=exc.reason)
        t1 = time.perf_counter()
        tensor, info = model.preprocess(image)
        if (info.orig_h, info.orig_w) != (full_h, full_w):
            info = info.for_original(full_h, full_w)
        stats.record("decode", t1 - t0)
        stats.record("preprocess", time.perf_counter() - t1)
        return _Ready(item, tensor, info, image if keep_images else None, start)

    def infer(ready: list[_Ready]) -> RawOutput:
        t0 = time.perf_counter()
        outputs = model.infer(np.stack([r.tensor for r in ready if r.tensor is not None]),
                              backend=stream_backend)
        stats.record("infer", time.perf_counter() - t0)
        return outputs

    def put(q: queue.Queue[Any], obj: Any, cancel: threading.Event) -> bool:
        while not cancel.is_set():
            try:
                q.put(obj, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if stop.is_set() or not put(pending, pool.submit(
                        prepare, item, time.perf_counter()), stop):
                    return
                stats.max_queue = max(stats.max_queue, pending.qsize())
        except BaseException as exc:  # reported by the main thread
            if not stop.is_set():
                errors.append(exc)
        put(pending, _END, stop)

    def post() -> None:
        try:
            while True:
                job = post_q.get()
                if job is _END:
                    return
                ready, inferred = job
                outputs = inferred.result()
                t0 = time.perf_counter()
                dets = model.postprocess(outputs, [r.info for r in ready])
                t1 = time.perf_counter()
                stats.record("postprocess", t1 - t0)
                for r, d in zip(ready, dets, strict=True):
                    if tracker is not None:
                        d = tracker.update(r.item.source, d)
                    info = r.info
                    pred = Prediction(r.item.source, r.item.frame, info.orig_w if info else 0,
                                      info.orig_h if info else 0, d, r.image)
                    for sink in sinks:
                        sink.write(pred)
                    stats.images += 1
                    stats.detections += len(d)
                    stats.record("end_to_end", time.perf_counter() - r.start)
                stats.record("sink", time.perf_counter() - t1)
                bar.update(len(ready))
        except BaseException as exc:
            errors.append(exc)
            post_dead.set()
            stop.set()

    def skip(r: _Ready) -> None:
        stats.skipped += 1
        stats.skipped_sources.append((r.item.source, r.error or "unreadable"))
        bar.update(1)

    producer = threading.Thread(target=produce, name="detforge-source", daemon=True)
    poster = threading.Thread(target=post, name="detforge-post", daemon=True)
    t_start = time.perf_counter()
    producer.start()
    poster.start()
    carry: Future[_Ready] | None = None
    finished = False
    try:
        done = False
        while not done and not post_dead.is_set():
            ready: list[_Ready] = []
            deadline: float | None = None
            while len(ready) < bs:
                fut = carry if carry is not None else _get(pending, stop, deadline)
                carry = None
                if fut is None:  # the dynamic wait ran out, or stop was set
                    break
                if fut is _END:
                    done = True
                    break
                timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
                try:
                    r = fut.result(timeout=timeout) if timeout is None else _result(fut, timeout)
                except TimeoutError:
                    carry = fut
                    break
                if r.error is not None:
                    skip(r)
                    continue
                ready.append(r)
                if dynamic and deadline is None:
                    deadline = time.perf_counter() + max_wait_s
            if not ready:
                continue
            stats.batches += 1
            if not put(post_q, (ready, infer_pool.submit(infer, ready)), post_dead):
                break
        finished = True
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        stop.set()
        producer.join(timeout=5)
        pool.shutdown(wait=True, cancel_futures=True)
        put(post_q, _END, post_dead)
        poster.join()
        infer_pool.shutdown(wait=True)
        stats.wall_s = time.perf_counter() - t_start
        bar.close()
        if isinstance(source, Source):
            for s in source.skipped:
                stats.skipped += 1
                stats.skipped_sources.append((s.source, s.reason))
        _finish(sinks, commit=finished and not errors and not stats.interrupted)
    if errors:
        raise errors[0]
    return stats


def _finish(sinks: Sequence[Sink], *, commit: bool) -> None:
    """Close (commit) every sink, or abort them all; a failed close aborts the rest."""
    failure: BaseException | None = None
    for sink in sinks:
        try:
            if commit and failure is None:
                sink.close()
            else:
                getattr(sink, "abort", sink.close)()
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


def finish_sinks(sinks: Sequence[Sink], *, commit: bool) -> None:
    """End a run's sinks as :func:`run_pipeline` does: close (commit) every one, or abort
    them all; a failed close aborts the rest and its error is raised."""
    _finish(sinks, commit=commit)


def _get(q: queue.Queue[Any], stop: threading.Event, deadline: float | None) -> Any:
    """Next queue entry; None when ``deadline`` passes or ``stop`` is set."""
    while not stop.is_set():
        wait = _POLL_S if deadline is None else deadline - time.perf_counter()
        if wait <= 0:
            return None
        try:
            return q.get(timeout=min(wait, _POLL_S))
        except queue.Empty:
            continue
    return None


def _result(fut: Future[_Ready], timeout: float) -> _Ready:
    return fut.result(timeout=timeout)
