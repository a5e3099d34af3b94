"""The driver of a cluster run: chunks out, results back in input order, exactly once.

::

    items (driver) ─▶ chunks of N ─▶ decode task (CPU, near its actor) ─▶ inference actor
         ▲ back-pressure: at most W chunks alive                            │
         └──────── sinks, tracker, progress (driver, input order) ◀─────────┘

A chunk's result is accepted once, when its inference call returns, and written only when
every chunk before it has been: the output is in input order and holds every item once.
When a worker dies (a killed process, a lost node), the calls it held fail with a Ray system
error and the driver submits those chunks again (decode and inference, on the surviving or
restarted actors), up to :data:`MAX_ATTEMPTS` times; nothing is written twice because
nothing of a failed call was accepted. An error raised by detforge code in a task
(``MissingExtraError``, ``BackendError``) is not retried: it fails the run as it would
locally.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from detforge.core.detections import Detections
from detforge.core.errors import ConfigError
from detforge.runtime.pipeline import Tracker, finish_sinks
from detforge.runtime.sinks import Prediction, Sink
from detforge.runtime.sources import Source, SourceItem
from detforge.runtime.stats import RunStats
from detforge.scale.cluster import ClusterInfo, import_ray, reraise_cause
from detforge.scale.errors import ClusterError
from detforge.scale.stages import (
    InferenceWorker,
    InferredChunk,
    ItemDecode,
    ModelInfo,
    ModelSpec,
    Outcome,
    Prepare,
    RemoteDecode,
    Settle,
    decode_chunk,
)

__all__ = ["MAX_ATTEMPTS", "ClusterProgress", "ClusterStats", "InferencePool", "run_on_cluster"]

MAX_ATTEMPTS = 4
"""Tries of one chunk before the run fails (a file that crashes every worker it meets)."""

_WAIT_S = 0.2


@dataclass
class ClusterStats(RunStats):
    """:class:`~detforge.runtime.stats.RunStats` of a cluster run, plus where it ran.

    Attributes:
        cluster: The cluster.
        actors: Inference actors.
        chunk_size: Items per chunk.
        chunks: Chunks done.
        retried: Chunk submissions repeated after a worker failed.
        setup_s: Seconds to start the actors and load the model in them.
    """

    cluster: ClusterInfo | None = None
    actors: int = 0
    chunk_size: int = 0
    chunks: int = 0
    retried: int = 0
    setup_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The local summary with a ``cluster`` entry."""
        out = super().summary()
        info = self.cluster
        out["cluster"] = {
            "address": info.address if info else None,
            "started": info.started if info else None,
            "nodes": info.nodes if info else 0, "cpus": info.cpus if info else 0,
            "gpus": info.gpus if info else 0,
            "connect_s": round(info.connect_s, 3) if info else None,
            "setup_s": round(self.setup_s, 3), "actors": self.actors,
            "chunk_size": self.chunk_size, "chunks": self.chunks, "retried": self.retried}
        return out

    def format(self) -> str:
        """The local summary, then the cluster's line."""
        lines = [super().format()]
        if self.cluster is not None:
            lines.append(self.cluster.describe())
        lines.append(f"ray: {self.actors} inference actor(s) (set up in {self.setup_s:.1f} s), "
                     f"{self.chunks} chunk(s) of {self.chunk_size}, {self.retried} retried "
                     "after a worker failure")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ClusterProgress:
    """Handed to ``on_chunk`` after each chunk is written.

    Attributes:
        chunks: Chunks written so far.
        items: Items written or skipped so far.
        retried: Chunk submissions repeated so far.
        actor_names: Names of the inference actors (``ray.get_actor(name)``).
    """

    chunks: int
    items: int
    retried: int
    actor_names: tuple[str, ...]


@dataclass
class _Chunk:
    index: int
    items: list[SourceItem]
    works: list[RemoteDecode]
    settles: list[Settle | None]
    start: float
    actor: int = 0
    attempts: int = 0
    pixels: Any = None
    outcome: Any = None
    call: Any = None
    result: InferredChunk | None = None
    done: bool = False


def _to_work(item: SourceItem) -> tuple[RemoteDecode, Settle | None]:
    for_cluster = getattr(item, "for_cluster", None)
    if for_cluster is not None:
        work: tuple[RemoteDecode, Settle | None] = for_cluster()
        return work
    if item.path is not None and not item.path.is_absolute():
        item = replace(item, path=item.path.absolute())  # workers have their own cwd
    return ItemDecode(item), None


def _chunks(items: Iterable[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    batch: list[SourceItem] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class InferencePool:
    """The inference actors of a run, for the length of a ``with`` block.

    Args:
        cluster: The connected cluster.
        spec: What each actor loads.
        actors: How many (default: one per GPU; on CPUs, two per node, each on half of its
            node's cores, as the local pipeline's two streams).

    Raises:
        ConfigError: ``actors`` is below 1.
        ClusterError: The actors cannot load the model.
        DetforgeError: What loading the model raised (a bad option, a missing extra).

    Example:
        >>> with Cluster() as c, InferencePool(c.info, ModelSpec("m.onnx")) as pool:
        ...     print(pool.info.classes)  # doctest: +SKIP
    """

    def __init__(self, cluster: ClusterInfo, spec: ModelSpec, *,
                 actors: int | None = None) -> None:
        use_gpu = spec.device != "cpu" and cluster.gpus >= 1
        n = actors if actors is not None else (
            int(cluster.gpus) if use_gpu else 2 * max(1, cluster.nodes))
        if n < 1:
            raise ConfigError(f"inference actors must be at least 1, got {n}")
        device = "cuda" if use_gpu and spec.device.startswith("cuda") else spec.device
        self.spec = replace(spec, device=device, share=max(1, -(-n // max(1, cluster.nodes))))
        run = uuid.uuid4().hex[:8]
        self.names = tuple(f"detforge-infer-{run}-{i}" for i in range(n))
        self.options: dict[str, Any] = {"max_restarts": MAX_ATTEMPTS, "max_task_retries": 0,
                                        "scheduling_strategy": "SPREAD"}
        if use_gpu:
            self.options["num_gpus"] = 1
        self.handles: list[Any] = []
        self.busy = [0] * n
        self.nodes: list[str] = []
        self.setup_s = 0.0

    def __enter__(self) -> InferencePool:
        ray = import_ray()
        t0 = time.perf_counter()
        remote = ray.remote(InferenceWorker)
        self.handles = [remote.options(name=name, **self.options).remote(self.spec)
                        for name in self.names]
        try:
            infos: list[ModelInfo] = ray.get([h.info.remote() for h in self.handles])
        except Exception as exc:
            self.close()
            reraise_cause(exc)
            raise ClusterError(f"the inference actors could not load {self.spec.path} ({exc});"
                               " check that every node sees the file at that path and has "
                               "the backend's package") from exc
        self.info = infos[0]
        self.nodes = [i.node_id for i in infos]
        self.setup_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the actors."""
        ray = import_ray()
        for handle in self.handles:
            ray.kill(handle)
        self.handles = []

    def pick(self, avoid: int | None = None) -> int:
        """The actor with the least work (``avoid`` last: the one that just failed)."""
        order = sorted(range(len(self.handles)), key=lambda i: (i == avoid, self.busy[i], i))
        return order[0]


def run_on_cluster(cluster: ClusterInfo, pool: InferencePool | None,
                   items: Source | Iterable[SourceItem], sinks: Sequence[Sink], *,
                   tracker: Tracker | None = None, progress: bool = True,
                   fast_decode: bool = False, chunk_size: int = 32,
                   window: int | None = None,
                   on_chunk: Callable[[ClusterProgress], None] | None = None) -> ClusterStats:
    """Run the pool's model over ``items`` on the connected cluster, predictions to
    ``sinks`` here in input order (the counterpart of
    :func:`~detforge.runtime.pipeline.run_pipeline`).

    Args:
        cluster: The connected cluster (:class:`~detforge.scale.cluster.Cluster`'s ``info``).
        pool: The inference actors; None decodes only (items that analyse themselves, e.g.
            a library index without a detector), and every decoded item reaches the sinks
            with no detections.
        items: A :class:`~detforge.runtime.sources.Source` or any iterable of items; images
            are read on the workers (their paths must resolve there), video frames are read
            here and sent.
        sinks: Receivers of the predictions; closed when the run finishes, aborted after an
            error or Ctrl-C.
        tracker: Assigns track ids, on this machine, in input order.
        progress: Show a progress bar.
        fast_decode: Decode JPEGs at a reduced scale (see ``run_pipeline``).
        chunk_size: Items per task.
        window: Most chunks alive at once (default: three per actor): the bound on memory
            and on the object store.
        on_chunk: Called after each chunk is written.

    Returns:
        The run's :class:`ClusterStats`.

    Raises:
        ConfigError: A bad chunk size or window.
        ClusterError: A chunk failed on every retry.
        DetforgeError: What detforge code raised on a worker (as it would locally).
    """
    from tqdm import tqdm

    ray = import_ray()
    if chunk_size < 1 or (window is not None and window < 1):
        raise ConfigError(f"chunk size and window must be at least 1, got {chunk_size} and "
                          f"{window}")
    keep_images = any(getattr(s, "needs_image", False) for s in sinks)
    stats = ClusterStats(cluster=cluster, chunk_size=chunk_size)
    prepare = Prepare(imgsz=pool.info.imgsz if pool else None,
                      letterbox=pool.info.letterbox if pool else None,
                      reduce=fast_decode and not keep_images, keep_images=keep_images)
    if pool is not None:
        stats.setup_s = pool.setup_s
        stats.actors, stats.batch_size, stats.streams = (len(pool.handles), pool.info.batch,
                                                         len(pool.handles))
    alive = window or (3 * len(pool.handles) if pool else 2 * max(1, int(cluster.cpus)))
    decode = ray.remote(num_returns=2, num_cpus=1, max_retries=3)(decode_chunk)
    total = items.estimate_total() if isinstance(items, Source) else None
    bar = tqdm(total=total, unit="img", disable=not progress, dynamic_ncols=True)
    run = _Run(ray, pool, decode, prepare, stats, sinks, tracker, bar, on_chunk)
    t0 = time.perf_counter()
    finished = False
    try:
        run.drive(_chunks(items, chunk_size), alive)
        finished = True
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        run.cancel()
        stats.wall_s = time.perf_counter() - t0
        bar.close()
        if isinstance(items, Source):
            for s in items.skipped:
                stats.skipped += 1
                stats.skipped_sources.append((s.source, s.reason))
        finish_sinks(sinks, commit=finished and not stats.interrupted)
    return stats


class _Run:
    """The state of one run's driver loop."""

    def __init__(self, ray: Any, pool: InferencePool | None, decode: Any, prepare: Prepare,
                 stats: ClusterStats, sinks: Sequence[Sink], tracker: Tracker | None, bar: Any,
                 on_chunk: Callable[[ClusterProgress], None] | None) -> None:
        self.ray, self.pool, self.decode, self.prepare = ray, pool, decode, prepare
        self.stats, self.sinks, self.tracker, self.bar = stats, sinks, tracker, bar
        self.on_chunk = on_chunk
        self.chunks: deque[_Chunk] = deque()
        self.decoding: dict[Any, _Chunk] = {}
        self.calls: dict[Any, _Chunk] = {}
        self.items = 0
        from ray.exceptions import (
            NodeDiedError,
            ObjectLostError,
            RayActorError,
            WorkerCrashedError,
        )

        # RayActorError covers a dead actor and one restarting (ActorUnavailableError)
        self.system_errors: tuple[type[BaseException], ...] = (
            RayActorError, WorkerCrashedError, ObjectLostError, NodeDiedError)

    # -- submission ------------------------------------------------------------------------
    def submit(self, chunk: _Chunk, avoid: int | None = None) -> None:
        chunk.attempts += 1
        options: dict[str, Any] = {}
        if self.pool is not None:
            chunk.actor = self.pool.pick(avoid)
            self.pool.busy[chunk.actor] += 1
            options["scheduling_strategy"] = _near(self.pool.nodes[chunk.actor])
        chunk.pixels, chunk.outcome = self.decode.options(**options).remote(self.prepare,
                                                                           chunk.works)
        self.decoding[chunk.pixels if self.pool is not None else chunk.outcome] = chunk

    def retry(self, chunk: _Chunk, exc: BaseException) -> None:
        if chunk.attempts >= MAX_ATTEMPTS:
            first, last = chunk.items[0].source, chunk.items[-1].source
            raise ClusterError(f"chunk {chunk.index} ({first} ... {last}) failed "
                               f"{chunk.attempts} times on the cluster ({exc}); a file there "
                               "may crash the decoder or the model: run those files locally "
                               "to see the error") from exc
        self.stats.retried += 1
        if self.pool is not None:
            self.pool.busy[chunk.actor] -= 1
        self.submit(chunk, avoid=chunk.actor)

    # -- the loop --------------------------------------------------------------------------
    def drive(self, batches: Iterator[list[SourceItem]], alive: int) -> None:
        index = 0
        exhausted = False
        while True:
            while not exhausted and len(self.chunks) < alive:
                batch = next(batches, None)
                if batch is None:
                    exhausted = True
                    break
                works = [_to_work(item) for item in batch]
                chunk = _Chunk(index, batch, [w for w, _ in works], [s for _, s in works],
                               time.perf_counter())
                index += 1
                self.chunks.append(chunk)
                self.submit(chunk)
            if not self.chunks:
                return
            self.stats.max_queue = max(self.stats.max_queue, len(self.chunks))
            waiting = [*self.decoding, *self.calls]
            ready, _ = self.ray.wait(waiting, num_returns=1, timeout=_WAIT_S,
                                     fetch_local=False)
            for ref in ready:
                if ref in self.decoding:
                    self.decoded(self.decoding.pop(ref))
                elif ref in self.calls:
                    self.returned(self.calls.pop(ref))
            while self.chunks and self.chunks[0].done:
                self.emit(self.chunks.popleft())

    def decoded(self, chunk: _Chunk) -> None:
        if self.pool is None:  # nothing to infer: the outcome is the result
            self.returned(chunk)
            return
        chunk.call = self.pool.handles[chunk.actor].infer.remote(chunk.pixels)
        self.calls[chunk.call] = chunk

    def returned(self, chunk: _Chunk) -> None:
        try:
            if self.pool is not None:
                chunk.result = self.ray.get(chunk.call)
            self.ray.get(chunk.outcome)  # raises here if the decode task failed
        except self.system_errors as exc:
            self.retry(chunk, exc)
            return
        except Exception as exc:
            reraise_cause(exc)
            raise
        if self.pool is not None:
            self.pool.busy[chunk.actor] -= 1
        chunk.done = True

    def emit(self, chunk: _Chunk) -> None:
        outcome: Outcome = self.ray.get(chunk.outcome)
        result = chunk.result
        stats = self.stats
        t0 = time.perf_counter()
        now = time.perf_counter()
        if result is not None:
            stats.batches += result.batches
            for name, values in (("infer", result.infer_s), ("postprocess",
                                                             result.postprocess_s)):
                for v in values:
                    stats.record(name, v)
        per_image = (sum(result.preprocess_s) / max(1, len(outcome.ok))) if result else 0.0
        slot = {pos: k for k, pos in enumerate(outcome.ok)}
        for pos, item in enumerate(chunk.items):
            settle = chunk.settles[pos]
            k = slot.get(pos)
            if settle is not None:
                settle(outcome.extras[pos], outcome.errors.get(pos))
            if k is None:
                stats.skipped += 1
                stats.skipped_sources.append((item.source, outcome.errors.get(pos,
                                                                              "unreadable")))
                continue
            height, width = outcome.sizes[k]
            dets = result.detections[k] if result is not None else Detections.empty()
            if self.tracker is not None:
                dets = self.tracker.update(item.source, dets)
            image = outcome.images[k] if outcome.images is not None else None
            pred = Prediction(item.source, item.frame, width, height, dets, image)
            for sink in self.sinks:
                sink.write(pred)
            stats.images += 1
            stats.detections += len(dets)
            stats.record("decode", outcome.decode_s[k])
            stats.record("preprocess", (outcome.letterbox_s[k] if outcome.letterbox_s
                                        else 0.0) + per_image)
            stats.record("end_to_end", now - chunk.start)
        stats.record("sink", time.perf_counter() - t0)
        stats.chunks += 1
        self.items += len(chunk.items)
        self.bar.update(len(chunk.items))
        if self.on_chunk is not None:
            self.on_chunk(ClusterProgress(stats.chunks, self.items, stats.retried,
                                          self.pool.names if self.pool else ()))

    def cancel(self) -> None:
        for ref in self.decoding:
            self.ray.cancel(ref, force=True)
        self.decoding.clear()
        self.calls.clear()


def _near(node_id: str) -> Any:
    """Decode next to the actor that will infer (the pixels then stay on that node), or
    anywhere when that node is busy."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=True, _spill_on_unavailable=True)
