"""Video and stream jobs: frames of an uploaded video or a live stream, through the batcher.

``POST /v1/videos`` stores the body in a temporary file and starts a job; ``POST
/v1/streams`` starts one on a URL (with ``--allow-streams``). A job thread reads and samples
frames as ``detforge predict`` does (:func:`~detforge.runtime.sources.open_source`: every
n-th frame, a target fps, scene-change keyframes; streams reconnect with backoff and drop
the frames inference cannot keep up with), letterboxes them, and submits them to the same
:class:`~detforge.serve.batcher.Batcher` as ``/v1/detect`` requests; when the queue is
full it waits (back-pressure) instead of failing. Results are kept per frame (a stream
keeps the newest ``--stream-keep``) until the job is fetched and more than ``--max-jobs``
jobs exist. A video with more sampled frames than ``--max-video-frames`` fails with a
message saying how to sample it; nothing is cut silently.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detforge.core.detections import Detections
from detforge.runtime.sinks import Prediction
from detforge.runtime.sources import Source, SourceItem, open_source
from detforge.serve.batcher import Batcher, NotReady, Overloaded

__all__ = ["Job", "JobLimitError", "JobRunner", "Sampling"]

log = logging.getLogger("detforge.serve")
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
Observer = Callable[[np.ndarray, Detections, int, int], None]


class JobLimitError(Exception):
    """No room for another job (``--max-jobs`` are running)."""


@dataclass(frozen=True)
class Sampling:
    """Frame sampling of a job, as ``predict``'s options."""

    every: int = 1
    fps: float | None = None
    keyframes: bool = False


@dataclass(eq=False)
class Job:
    """One video or stream job and its results so far."""

    id: str
    kind: Literal["video", "stream"]
    source: str
    sampling: Sampling
    keep: int | None
    state: JobState = "queued"
    created: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None
    frames_done: int = 0
    fps: float = 0.0
    frames: deque[dict[str, Any]] = field(default_factory=deque)
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    source_obj: Source | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def to_dict(self, *, results: bool = True) -> dict[str, Any]:
        """The JSON answer of ``GET /v1/jobs/{id}``."""
        src = self.source_obj
        lat = np.asarray(self.latency_ms, np.float64)
        out: dict[str, Any] = {
            "job": self.id, "kind": self.kind, "source": self.source, "state": self.state,
            "error": self.error, "frames_done": self.frames_done,
            "sampling": {"every": self.sampling.every, "fps": self.sampling.fps,
                         "keyframes": self.sampling.keyframes},
            "frames_dropped": src.dropped if src else 0,
            "reconnects": src.reconnects if src else 0,
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 2),
                           "p95": round(float(np.percentile(lat, 95)), 2)} if len(lat) else None,
            "created": self.created, "finished": self.finished}
        if results:
            out["frames"] = list(self.frames)
        return out


class JobRunner:
    """Starts, tracks and forgets video and stream jobs.

    Args:
        batcher: The server's batcher (jobs share it with ``/v1/detect``).
        max_jobs: Jobs kept; a new one evicts the oldest finished one, or is refused.
        max_frames: Most sampled frames per job.
        max_pixels: Largest frame accepted.
        stream_keep: Newest frames whose results a stream job keeps.
        observe: Called with each frame (RGB), its detections and size (drift monitoring).
    """

    def __init__(self, batcher: Batcher, *, max_jobs: int, max_frames: int, max_pixels: int,
                 stream_keep: int, observe: Observer | None = None) -> None:
        self.batcher = batcher
        self.max_jobs = max_jobs
        self.max_frames = max_frames
        self.max_pixels = max_pixels
        self.stream_keep = stream_keep
        self.observe = observe
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="detforge-serve-jobs-"))
        self._closed = False

    def counts(self) -> dict[tuple[str, str], int]:
        """Jobs by ``(kind, state)``."""
        out: dict[tuple[str, str], int] = {}
        with self._lock:
            for job in self._jobs.values():
                key = (job.kind, job.state)
                out[key] = out.get(key, 0) + 1
        return out

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop (its frames so far are kept); None if unknown."""
        job = self.get(job_id)
        if job is not None:
            job.cancel.set()
            if job.source_obj is not None:
                job.source_obj.stop.set()
        return job

    def start_video(self, data: bytes, suffix: str, sampling: Sampling) -> Job:
        """Store a video body and start its job.

        Raises:
            JobLimitError: ``max_jobs`` jobs are running.
        """
        job = self._new("video", f"upload{suffix}", sampling, keep=None)
        path = self._tmp / f"{job.id}{suffix}"
        path.write_bytes(data)
        self._spawn(job, lambda: open_source(path, every=sampling.every, fps=sampling.fps,
                                             keyframes=sampling.keyframes,
                                             max_pixels=self.max_pixels), path)
        return job

    def start_stream(self, url: str, sampling: Sampling, *, reconnect: int = 5) -> Job:
        """Start a job on a stream URL.

        Raises:
            JobLimitError: ``max_jobs`` jobs are running.
        """
        job = self._new("stream", url, sampling, keep=self.stream_keep)
        self._spawn(job, lambda: open_source(url, every=sampling.every, fps=sampling.fps,
                                             keyframes=sampling.keyframes,
                                             max_pixels=self.max_pixels, reconnect=reconnect),
                    None)
        return job

    def close(self) -> None:
        """Stop every job and remove the temporary files."""
        self._closed = True
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            self.cancel(job.id)
        for job in jobs:
            job.done.wait(10)
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------
    def _new(self, kind: Literal["video", "stream"], source: str, sampling: Sampling,
             keep: int | None) -> Job:
        with self._lock:
            if len(self._jobs) >= self.max_jobs:
                for old in list(self._jobs.values()):
                    if old.done.is_set():
                        del self._jobs[old.id]
                        break
                else:
                    raise JobLimitError(f"{len(self._jobs)} jobs are running (--max-jobs "
                                        f"{self.max_jobs}); wait for one to finish or cancel "
                                        f"one with DELETE /v1/jobs/ID")
            job = Job(uuid.uuid4().hex[:16], kind, source, sampling, keep)
            job.frames = deque(maxlen=keep)
            self._jobs[job.id] = job
            return job

    def _spawn(self, job: Job, open_fn: Callable[[], Source], path: Path | None) -> None:
        thread = threading.Thread(target=self._run, args=(job, open_fn, path),
                                  name=f"detforge-job-{job.id}", daemon=True)
        thread.start()

    def _run(self, job: Job, open_fn: Callable[[], Source], path: Path | None) -> None:
        job.state = "running"
        try:
            source = open_fn()
            job.source_obj = source
            if job.cancel.is_set():
                source.stop.set()
            self._frames(job, source)
            if source.skipped and not job.frames_done:
                raise ValueError(source.skipped[0].reason)
            job.state = "cancelled" if job.cancel.is_set() else "done"
            if source.skipped and job.kind == "stream":
                job.error = source.skipped[0].reason
        except Exception as exc:  # noqa: BLE001 - reported through GET /v1/jobs/ID
            job.state = "failed"
            job.error = str(exc) or type(exc).__name__
            log.warning("job %s (%s) failed: %s", job.id, job.source, job.error)
        finally:
            job.finished = time.time()
            job.done.set()
            if path is not None:
                path.unlink(missing_ok=True)

    def _frames(self, job: Job, source: Source) -> None:
        batch: list[tuple[SourceItem, float]] = []
        for item in source:
            if job.cancel.is_set():
                source.stop.set()
                break
            if job.frames_done + len(batch) >= self.max_frames:
                if job.kind == "stream":
                    source.stop.set()
                    break
                raise ValueError(f"the video has more than {self.max_frames} sampled frames "
                                 f"(--max-video-frames); sample it with every=N or fps=F, "
                                 f"or raise the limit")
            batch.append((item, time.monotonic()))
            if len(batch) >= self.batcher.max_batch or job.kind == "stream":
                self._run_batch(job, batch)
                batch = []
        if batch:
            self._run_batch(job, batch)

    def _run_batch(self, job: Job, batch: list[tuple[SourceItem, float]]) -> None:
        model = self.batcher.model
        if model is None:
            raise NotReady(self.batcher.not_ready_reason())
        images = [item.load() for item, _ in batch]
        prepared = [model.preprocess(img) for img in images]
        future = None
        while future is None:
            try:
                future = self.batcher.submit(prepared)
            except Overloaded as exc:  # back-pressure: wait for room, as a client would
                if job.cancel.wait(min(1.0, max(0.05, exc.retry_after / 10))):
                    return
        dets: list[Detections] = future.result()
        classes = model.classes
        now = time.monotonic()
        for (item, started), img, det in zip(batch, images, dets, strict=True):
            h, w = img.shape[:2]
            rec = Prediction(job.source, item.frame, w, h, det).to_record(classes)
            latency = (now - started) * 1000
            job.frames.append({"frame": item.frame, "width": w, "height": h,
                               "latency_ms": round(latency, 2),
                               "detections": rec["detections"]})
            job.latency_ms.append(latency)
            job.frames_done += 1
            if self.observe is not None:
                self.observe(img, det, w, h)
