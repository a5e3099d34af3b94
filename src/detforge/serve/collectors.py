"""Prometheus collectors computed at scrape time: drift and GPU figures.

Drift (with ``--reference``; :mod:`detforge.monitor`)::

    detforge_drift_psi{signal}                   gauge      PSI of the live window (NaN until
                                                            it holds --drift-min-images)
    detforge_drift_ks{signal}                    gauge      KS statistic (continuous signals)
    detforge_drift_threshold{signal}             gauge      the PSI threshold of the signal
    detforge_drift_class_psi{class}              gauge      the class's term of the class PSI
    detforge_class_share{class,source}           gauge      share of detections, live | reference
    detforge_drift_window_images                 gauge      images in the window
    detforge_drift_min_images                    gauge      images needed before drift is judged
    detforge_detection_score                     histogram  detection scores (server lifetime)
    detforge_detections_per_image                histogram  detections per image
    detforge_detections_by_class_total{class}    counter    detections per class (the class mix)

GPU (a CUDA device and NVML; :mod:`detforge.runtime.gpu`)::

    detforge_gpu_memory_used_bytes{gpu}          gauge      memory in use on the device
    detforge_gpu_memory_total_bytes{gpu}         gauge      memory of the device
    detforge_gpu_memory_peak_bytes{gpu}          gauge      highest use seen since start
    detforge_gpu_utilization_ratio{gpu}          gauge      share of time a kernel ran, 0..1
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from detforge.monitor.live import BOXES_BUCKETS, SCORE_BUCKETS, LiveMonitor
from detforge.runtime.gpu import GpuSample, gpu_sample

__all__ = ["DriftCollector", "GpuCollector"]


class DriftCollector:
    """Drift gauges and detection histograms of a :class:`LiveMonitor`."""

    def __init__(self, monitor: LiveMonitor) -> None:
        self.monitor = monitor

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        mon = self.monitor
        result = mon.result()
        psi = GaugeMetricFamily("detforge_drift_psi", "Population Stability Index of the live "
                                "window against the reference, per signal.", labels=["signal"])
        ks = GaugeMetricFamily("detforge_drift_ks", "Kolmogorov-Smirnov statistic of the live "
                               "window against the reference, per signal.", labels=["signal"])
        limit = GaugeMetricFamily("detforge_drift_threshold", "PSI past which a signal counts "
                                  "as drifted.", labels=["signal"])
        for s in result.signals:
            psi.add_metric([s.signal], s.psi if result.ready else math.nan)
            if s.signal != "class":
                ks.add_metric([s.signal], s.ks if result.ready else math.nan)
            limit.add_metric([s.signal], s.threshold)
        yield from (psi, ks, limit)
        cpsi = GaugeMetricFamily("detforge_drift_class_psi", "Each class's term of the class "
                                 "PSI (how far its share moved).", labels=["class"])
        share = GaugeMetricFamily("detforge_class_share", "Share of detections per class, in "
                                  "the live window and in the reference.",
                                  labels=["class", "source"])
        for name, (live, ref) in result.class_share.items():
            cpsi.add_metric([name], result.class_psi[name])
            share.add_metric([name, "live"], live)
            share.add_metric([name, "reference"], ref)
        yield from (cpsi, share)
        yield GaugeMetricFamily("detforge_drift_window_images", "Images in the drift window.",
                                value=result.images)
        yield GaugeMetricFamily("detforge_drift_min_images", "Images the window needs before "
                                "drift is judged.", value=result.min_images)
        with mon._lock:
            scores = mon.score_counts.copy()
            score_sum = mon.score_sum
            boxes = mon.boxes_counts.copy()
            boxes_sum = mon.boxes_sum
            classes = mon.class_counts.copy()
        yield _histogram(HistogramMetricFamily, "detforge_detection_score",
                         "Scores of the detections kept (at the reference's threshold).",
                         SCORE_BUCKETS, scores, score_sum)
        yield _histogram(HistogramMetricFamily, "detforge_detections_per_image",
                         "Detections kept per image.", BOXES_BUCKETS, boxes, float(boxes_sum))
        by_class = CounterMetricFamily("detforge_detections_by_class", "Detections kept per "
                                       "class.", labels=["class"])
        for name, count in zip(mon.classes, classes.tolist(), strict=True):
            by_class.add_metric([name], count)
        yield by_class


def _histogram(family: Any, name: str, doc: str, bounds: tuple[float, ...], counts: Any,
               total: float) -> Any:
    cumulative = counts.cumsum().tolist()
    buckets = [(_fmt(b), c) for b, c in zip(bounds, cumulative, strict=False)]
    buckets.append(("+Inf", cumulative[-1]))
    return family(name, doc, buckets=buckets, sum_value=total)


def _fmt(bound: float) -> str:
    return str(float(bound))


class GpuCollector:
    """Memory and utilisation of the GPU the model runs on (nothing on a CPU).

    Args:
        device: Returns the model's device (``cuda:N``) once it is loaded, else None.
    """

    def __init__(self, device: Callable[[], str | None]) -> None:
        self._device = device
        self._peak = 0
        self._lock = threading.Lock()
        self._last_sample = 0.0

    def describe(self) -> list[Any]:
        return []

    def _index(self) -> int | None:
        from detforge.runtime.gpu import gpu_index

        device = self._device()
        return None if device is None else gpu_index(device)

    def sample(self, *, every_s: float = 0.0) -> GpuSample | None:
        """Read the GPU (at most once per ``every_s``) and update the peak."""
        index = self._index()
        now = time.monotonic()
        if index is None or (every_s and now - self._last_sample < every_s):
            return None
        self._last_sample = now
        s = gpu_sample(index)
        if s is not None:
            with self._lock:
                self._peak = max(self._peak, s.used_bytes)
        return s

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        s = self.sample()
        if s is None:
            return
        label = [str(s.index)]
        for name, doc, value in (
                ("detforge_gpu_memory_used_bytes", "GPU memory in use.", s.used_bytes),
                ("detforge_gpu_memory_total_bytes", "GPU memory of the device.", s.total_bytes),
                ("detforge_gpu_memory_peak_bytes", "Highest GPU memory use seen since start.",
                 self._peak),
                ("detforge_gpu_utilization_ratio", "Share of time a GPU kernel ran (0..1).",
                 math.nan if s.utilization is None else s.utilization)):
            g = GaugeMetricFamily(name, doc, labels=["gpu"])
            g.add_metric(label, float(value))
            yield g
