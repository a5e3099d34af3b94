"""Prometheus metrics of one server, in a registry of its own (not the process-global one).

Exposed at ``GET /metrics``:

==================================  =========  ===========================================
name                                type       what
==================================  =========  ===========================================
detforge_requests_total             counter    requests by ``endpoint`` and ``status``
detforge_images_total               counter    images detected on
detforge_request_latency_seconds    histogram  ``/v1/detect`` wall time, by ``status``
detforge_batch_size                 histogram  images per inference batch
detforge_inference_seconds          histogram  backend time per batch
detforge_queue_depth                gauge      images waiting for the worker
detforge_queue_capacity             gauge      ``--max-queue``
detforge_model_ready                gauge      1 once the model is loaded and warmed up
detforge_uploads_in_progress        gauge      requests whose bodies are being received
detforge_upload_bytes               gauge      body bytes received and held by them
detforge_jobs                       gauge      video and stream jobs by ``kind`` and ``state``
==================================  =========  ===========================================

With ``--reference`` the drift gauges and detection histograms, and on a GPU the memory
and utilisation gauges, are added by :mod:`detforge.serve.collectors`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_INFER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServeMetrics:
    """The server's counters, histograms and gauges.

    Args:
        queue_depth: Returns the images waiting now.
        ready: Returns whether the model is ready.
        queue_capacity: ``--max-queue``.
        uploads: Returns the requests receiving their bodies now.
        upload_bytes: Returns the body bytes they hold.
        collectors: More collectors for the registry (drift, GPU).
    """

    def __init__(self, *, queue_depth: Callable[[], int], ready: Callable[[], bool],
                 queue_capacity: int, uploads: Callable[[], int] = lambda: 0,
                 upload_bytes: Callable[[], int] = lambda: 0,
                 collectors: Sequence[Any] = ()) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter("detforge_requests", "HTTP requests by endpoint and status.",
                                ["endpoint", "status"], registry=reg)
        self.images = Counter("detforge_images", "Images detected on.", registry=reg)
        self.latency = Histogram("detforge_request_latency_seconds",
                                 "Wall time of /v1/detect requests.", ["status"],
                                 buckets=_LATENCY_BUCKETS, registry=reg)
        self.batch_size = Histogram("detforge_batch_size", "Images per inference batch.",
                                    buckets=_BATCH_BUCKETS, registry=reg)
        self.inference = Histogram("detforge_inference_seconds", "Backend time per batch.",
                                   buckets=_INFER_BUCKETS, registry=reg)
        depth = Gauge("detforge_queue_depth", "Images waiting for the worker.", registry=reg)
        depth.set_function(lambda: float(queue_depth()))
        capacity = Gauge("detforge_queue_capacity", "Most images the queue holds.",
                         registry=reg)
        capacity.set(queue_capacity)
        ready_gauge = Gauge("detforge_model_ready", "1 once the model is loaded and warm.",
                            registry=reg)
        ready_gauge.set_function(lambda: 1.0 if ready() else 0.0)
        Gauge("detforge_uploads_in_progress", "Requests whose bodies are being received.",
              registry=reg).set_function(lambda: float(uploads()))
        Gauge("detforge_upload_bytes", "Request body bytes received and held.",
              registry=reg).set_function(lambda: float(upload_bytes()))
        self.jobs = Gauge("detforge_jobs", "Video and stream jobs by kind and state.",
                          ["kind", "state"], registry=reg)
        for collector in collectors:
            reg.register(collector)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one inference batch (called on the worker thread)."""
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Record one HTTP request; ``/v1/detect`` also feeds the latency histogram."""
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        if endpoint == "/v1/detect":
            self.latency.labels(status=str(status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
