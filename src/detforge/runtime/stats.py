"""Run statistics: throughput, per-stage latency percentiles and peak memory."""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RunStats", "StageStats", "peak_rss_bytes"]

STAGES = ("decode", "preprocess", "infer", "postprocess", "sink", "end_to_end")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far, in bytes (0 when unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass(frozen=True, slots=True)
class StageStats:
    """Latency of one stage, in milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> StageStats:
        """Summarise a list of durations in seconds."""
        if not seconds:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        ms = np.asarray(seconds) * 1000.0
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(len(ms), float(ms.mean()), float(p50), float(p95), float(p99))


@dataclass
class RunStats:
    """Counters and timings of one pipeline run (thread-safe recording).

    Attributes:
        images: Images and frames predicted.
        skipped: Inputs skipped (unreadable), see ``skipped_sources``.
        detections: Detections written.
        wall_s: Wall time of the run.
        batches: Batches run through the model.
        interrupted: The run stopped on Ctrl-C; the results so far were written.
        max_queue: Deepest the decode queue got (it is bounded).
        skipped_sources: ``(source, reason)`` per skipped input.
        batch_size: Largest batch the run was set to (``--batch`` as resolved).
        streams: Batches inferred at once (``--streams`` as resolved).
    """

    images: int = 0
    skipped: int = 0
    detections: int = 0
    wall_s: float = 0.0
    batches: int = 0
    interrupted: bool = False
    max_queue: int = 0
    skipped_sources: list[tuple[str, str]] = field(default_factory=list)
    batch_size: int = 0
    streams: int = 0
    _times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, stage: str, seconds: float) -> None:
        """Add one duration to ``stage``."""
        with self._lock:
            self._times[stage].append(seconds)

    def stage(self, name: str) -> StageStats:
        """Latency summary of stage ``name``."""
        with self._lock:
            return StageStats.of(list(self._times.get(name, [])))

    @property
    def throughput(self) -> float:
        """Images per second over the wall time."""
        return self.images / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        stages = {}
        for name in STAGES:
            st = self.stage(name)
            if st.count:
                stages[name] = {"count": st.count, "mean_ms": round(st.mean_ms, 3),
                                "p50_ms": round(st.p50_ms, 3), "p95_ms": round(st.p95_ms, 3),
                                "p99_ms": round(st.p99_ms, 3)}
        return {"images": self.images, "skipped": self.skipped, "detections": self.detections,
                "batches": self.batches, "batch_size": self.batch_size,
                "streams": self.streams, "wall_s": round(self.wall_s, 3),
                "images_per_s": round(self.throughput, 2), "interrupted": self.interrupted,
                "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1), "stages": stages}

    def format(self) -> str:
        """A human-readable multi-line summary."""
        s = self.summary()
        lines = [f"images: {s['images']}  skipped: {s['skipped']}  detections: "
                 f"{s['detections']}  {s['images_per_s']} img/s  wall {s['wall_s']} s  "
                 f"peak RSS {s['peak_rss_mb']} MB  batch {s['batch_size']} x "
                 f"{s['streams']} stream(s)" + ("  (interrupted)" if self.interrupted
                                                else "")]
        lines.append(f"{'stage':<12}{'count':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
        for name, st in s["stages"].items():
            lines.append(f"{name:<12}{st['count']:>7}{st['p50_ms']:>10.2f}{st['p95_ms']:>10.2f}"
                         f"{st['p99_ms']:>10.2f}")
        for source, reason in self.skipped_sources[:20]:
            lines.append(f"skipped {source}: {reason}")
        if len(self.skipped_sources) > 20:
            lines.append(f"... and {len(self.skipped_sources) - 20} more skipped")
        return "\n".join(lines)
