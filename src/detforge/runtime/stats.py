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
        dropped: Frames of live streams (or realtime replay) dropped because inference was
            behind; not predicted, and counted here.
        reconnects: Stream reconnections.
        stream_frames: Frames read from live streams.
        never_read: Streams that never delivered a frame.
        gpu: GPU figures of the run (:meth:`detforge.runtime.gpu.GpuMonitor.summary`), or {}.
        drift: Drift against a reference (``predict --reference``), or None.
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
    dropped: int = 0
    reconnects: int = 0
    stream_frames: int = 0
    never_read: list[str] = field(default_factory=list)
    gpu: dict[str, Any] = field(default_factory=dict)
    drift: Any = None
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

    def add_source_counters(self, source: Any) -> None:
        """Copy a :class:`~detforge.runtime.sources.Source`'s stream counters."""
        self.dropped = int(getattr(source, "dropped", 0))
        self.reconnects = int(getattr(source, "reconnects", 0))
        self.stream_frames = int(getattr(source, "frames_read", 0))
        self.never_read = list(getattr(source, "never_read", []))

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
                "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1), "stages": stages,
                "dropped": self.dropped, "reconnects": self.reconnects,
                "stream_frames": self.stream_frames, "never_read": list(self.never_read),
                "gpu": dict(self.gpu)}

    def format(self) -> str:
        """A human-readable multi-line summary."""
        s = self.summary()
        lines = [f"images: {s['images']}  skipped: {s['skipped']}  detections: "
                 f"{s['detections']}  {s['images_per_s']} img/s  wall {s['wall_s']} s  "
                 f"peak RSS {s['peak_rss_mb']} MB  batch {s['batch_size']} x "
                 f"{s['streams']} stream(s)" + ("  (interrupted)" if self.interrupted
                                                else "")]
        if self.stream_frames or self.dropped or self.reconnects or self.never_read:
            e2e = s["stages"].get("end_to_end", {})
            lines.append(f"stream: {self.stream_frames} frames read, {self.dropped} dropped "
                         f"(inference behind), {self.reconnects} reconnection(s); latency per "
                         f"frame p50 {e2e.get('p50_ms', 0):.1f} ms, p95 "
                         f"{e2e.get('p95_ms', 0):.1f} ms")
        if self.gpu:
            g = self.gpu
            util = "" if g.get("util_mean") is None else (
                f", utilisation mean {g['util_mean']:.0%} peak {g['util_peak']:.0%}")
            lines.append(f"gpu {g['gpu']} ({g['name']}): VRAM {g['vram_used_mb']:.0f} MiB now, "
                         f"peak {g['vram_peak_mb']:.0f} of {g['vram_total_mb']:.0f} MiB{util}")
        lines.append(f"{'stage':<12}{'count':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
        for name, st in s["stages"].items():
            lines.append(f"{name:<12}{st['count']:>7}{st['p50_ms']:>10.2f}{st['p95_ms']:>10.2f}"
                         f"{st['p99_ms']:>10.2f}")
        for source, reason in self.skipped_sources[:20]:
            lines.append(f"skipped {source}: {reason}")
        if len(self.skipped_sources) > 20:
            lines.append(f"... and {len(self.skipped_sources) - 20} more skipped")
        return "\n".join(lines)
