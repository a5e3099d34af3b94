"""Dynamic batching across requests: one worker thread owns the model.

Request handlers decode and letterbox their images, then :meth:`Batcher.submit` them as one
job on a bounded queue. The worker thread loads the model, warms it up, and loops: it waits
for the first queued image, then for more until ``max_batch`` images are queued or the oldest
has waited ``max_wait_s``; it runs them as one batch and post-processes each job's slice with
that job's own thresholds. A job's images may span several batches; its future completes when
the last one is done. A full queue refuses the job at once (:class:`Overloaded`) instead of
letting latency grow without bound.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.core.errors import BackendError, DetforgeError
from detforge.runtime.model import Model
from detforge.runtime.preprocess import LetterboxInfo

__all__ = ["Batcher", "NotReady", "Overloaded"]

log = logging.getLogger("detforge.serve")
State = Literal["new", "loading", "ready", "failed", "closed"]
BatchHook = Callable[[int, float], None]
"""Called by the worker after each batch with its size and inference seconds."""


class Overloaded(DetforgeError):
    """The queue has no room for the request; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(DetforgeError):
    """The model is still loading, failed to load, or the server is shutting down."""


@dataclass(eq=False)
class _Job:
    size: int
    conf: float | None
    iou: float | None
    max_det: int | None
    future: Future[list[Detections]] = field(default_factory=Future)
    results: list[Detections | None] = field(default_factory=list)
    remaining: int = 0


@dataclass(eq=False, slots=True)
class _Item:
    job: _Job
    index: int
    tensor: NDArray[np.float32]
    info: LetterboxInfo
    queued_at: float


class Batcher:
    """Runs a model on a worker thread, batching images from concurrent requests.

    Args:
        load: Builds the model; called on the worker thread, which then owns it.
        max_batch: Most images per batch.
        max_wait_s: Longest the oldest queued image waits for the batch to fill.
        max_queue: Most images queued; :meth:`submit` raises :class:`Overloaded` past it.
        warmup: Run a batch of 1 and of ``max_batch`` before reporting ready.
        on_batch: Called after every batch with ``(size, inference_seconds)``.
        on_failure: Called on the worker thread if ``load`` or the warm-up raises.

    Example:
        >>> batcher = Batcher(lambda: load_model("m.onnx"), max_batch=8)  # doctest: +SKIP
        >>> batcher.start(); batcher.wait_ready(60)  # doctest: +SKIP
        >>> dets = batcher.submit([model.preprocess(img)]).result()  # doctest: +SKIP
    """

    def __init__(self, load: Callable[[], Model], *, max_batch: int = 8,
                 max_wait_s: float = 0.005, max_queue: int = 64, warmup: bool = True,
                 on_batch: BatchHook | None = None,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self._load = load
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._warmup = warmup
        self._on_batch = on_batch
        self._on_failure = on_failure
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._batch_seconds = 0.0  # moving average, for Retry-After
        self.state: State = "new"
        self.error: BaseException | None = None
        self.model: Model | None = None

    @property
    def ready(self) -> bool:
        """True once the model is loaded and warmed up, until shutdown."""
        return self.state == "ready"

    @property
    def queue_depth(self) -> int:
        """Images waiting for the worker."""
        return len(self._queue)

    def start(self) -> None:
        """Start the worker thread (it loads the model)."""
        if self._thread is not None:
            return
        self.state = "loading"
        self._thread = threading.Thread(target=self._run, name="detforge-serve-worker",
                                        daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the model is ready or failed; True when ready."""
        self._ready.wait(timeout)
        return self.ready

    def check_room(self, n: int) -> None:
        """Raise :class:`Overloaded` or :class:`NotReady` if ``n`` images cannot be queued now.

        A cheap early check, so an overloaded server does not decode images it will refuse.
        """
        with self._cond:
            self._check(n)

    def submit(self, items: Sequence[tuple[NDArray[np.float32], LetterboxInfo]], *,
               conf: float | None = None, iou: float | None = None,
               max_det: int | None = None) -> Future[list[Detections]]:
        """Queue one request's preprocessed images.

        Args:
            items: ``(tensor [3, H, W], letterbox info)`` per image, from ``Model.preprocess``.
            conf: Confidence threshold for this request (default: the model's).
            iou: NMS IoU threshold for this request.
            max_det: Most detections per image for this request.

        Returns:
            A future with one :class:`~detforge.core.Detections` per image, in order.

        Raises:
            Overloaded: The queue has no room for all of ``items``.
            NotReady: The model is not loaded, or the batcher is closing.
        """
        job = _Job(len(items), conf, iou, max_det)
        job.results = [None] * len(items)
        job.remaining = len(items)
        if not items:
            job.future.set_result([])
            return job.future
        now = time.monotonic()
        with self._cond:
            self._check(len(items))
            self._queue.extend(_Item(job, i, t, info, now) for i, (t, info) in enumerate(items))
            self._cond.notify()
        return job.future

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new work, finish the queued images, stop the worker, release the model."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self.state = "closed"

    def _check(self, n: int) -> None:
        if self._closing:
            raise NotReady("the server is shutting down; retry on another replica")
        if self.state != "ready":
            raise NotReady(self.not_ready_reason())
        if len(self._queue) + n > self.max_queue:
            raise Overloaded(
                f"the queue holds {len(self._queue)} of {self.max_queue} images and this "
                f"request adds {n}; retry later, or start the server with a larger "
                f"--max-queue or --max-batch", retry_after=self._retry_after())

    def not_ready_reason(self) -> str:
        """Why the batcher is not ready, for a 503 body."""
        if self.state == "failed":
            return f"the model failed to load: {type(self.error).__name__}: {self.error}"
        if self._closing or self.state == "closed":
            return "the server is shutting down; retry on another replica"
        return "the model is still loading; poll GET /ready"

    def _retry_after(self) -> int:
        batches = math.ceil((len(self._queue) + 1) / self.max_batch)
        return max(1, math.ceil(batches * self._batch_seconds))

    # -- worker thread -------------------------------------------------------------------
    def _run(self) -> None:
        start = time.perf_counter()
        try:
            model = self._load()
            if self._warmup:
                model.warmup(runs=1, batch=1)
                if self.max_batch > 1:
                    model.warmup(runs=1, batch=self.max_batch)
        except BaseException as exc:  # noqa: BLE001 - reported through /ready and on_failure
            self.error = exc
            self.state = "failed"
            self._ready.set()
            self._fail_queue(exc)
            if self._on_failure is not None:
                self._on_failure(exc)
            return
        self.model = model
        self.state = "ready"
        log.info("model ready in %.1f s: %r", time.perf_counter() - start, model)
        self._ready.set()
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    break
                self._process(model, batch)
        finally:
            self.state = "closed"
            model.close()

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = self._queue[0].queued_at + self.max_wait_s
            while len(self._queue) < self.max_batch and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch: list[_Item] = []
            while self._queue and len(batch) < self.max_batch:
                item = self._queue.popleft()
                if not item.job.future.cancelled():  # the client went away: skip its images
                    batch.append(item)
            return batch

    def _process(self, model: Model, batch: list[_Item]) -> None:
        if not batch:
            return
        start = time.perf_counter()
        try:
            outputs = model.infer(np.stack([it.tensor for it in batch]))
        except Exception as exc:  # noqa: BLE001 - each request gets the error
            err = exc if isinstance(exc, DetforgeError) else BackendError(
                f"inference failed on a batch of {len(batch)}: {type(exc).__name__}: {exc}")
            for job in {id(it.job): it.job for it in batch}.values():
                _settle(job.future, error=err)
            return
        seconds = time.perf_counter() - start
        self._batch_seconds = seconds if not self._batch_seconds else (
            0.8 * self._batch_seconds + 0.2 * seconds)
        lo = 0
        while lo < len(batch):  # one post-processing call per run of the same job
            job = batch[lo].job
            hi = lo
            while hi < len(batch) and batch[hi].job is job:
                hi += 1
            try:
                dets = model.postprocess([o[lo:hi] for o in outputs],
                                         [it.info for it in batch[lo:hi]],
                                         conf=job.conf, iou=job.iou, max_det=job.max_det)
            except Exception as exc:  # noqa: BLE001
                _settle(job.future, error=exc)
            else:
                for it, det in zip(batch[lo:hi], dets, strict=True):
                    job.results[it.index] = det
                job.remaining -= hi - lo
                if job.remaining == 0:
                    _settle(job.future, result=[d for d in job.results if d is not None])
            lo = hi
        if self._on_batch is not None:
            self._on_batch(len(batch), seconds)

    def _fail_queue(self, exc: BaseException) -> None:
        with self._cond:
            while self._queue:
                _settle(self._queue.popleft().job.future, error=exc)


def _settle(future: Future[list[Detections]], *, result: list[Detections] | None = None,
            error: BaseException | None = None) -> None:
    """Complete ``future`` unless it is already done (cancelled by a gone client)."""
    if future.done():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or [])
    except InvalidStateError:
        pass
