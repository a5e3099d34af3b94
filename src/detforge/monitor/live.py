"""Live monitoring of a server: the drift window plus running histograms of what it says.

:class:`LiveMonitor` is what ``detforge serve --reference`` feeds after every image. It
keeps the :class:`~detforge.monitor.window.DriftWindow` and, over the server's lifetime,
cumulative score and boxes-per-image histograms and per-class detection counts (the class
mix); :meth:`LiveMonitor.result` measures drift at most once per ``cache_s`` however often
it is scraped.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.monitor.reference import Reference
from detforge.monitor.signals import ImageStats, detection_stats
from detforge.monitor.window import DriftResult, DriftWindow, Thresholds

__all__ = ["BOXES_BUCKETS", "SCORE_BUCKETS", "LiveMonitor"]

SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
"""Upper bounds of the score histogram (``+Inf`` added by the exposition)."""
BOXES_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 300)
"""Upper bounds of the detections-per-image histogram."""


class LiveMonitor:
    """Drift window and running histograms of one served model.

    Args:
        reference: The model's reference statistics.
        window: Images in the sliding window.
        min_images: Images before drift is reported.
        thresholds: Drift thresholds.
        cache_s: Longest a measured result is reused.
    """

    def __init__(self, reference: Reference, *, window: int = 500, min_images: int = 50,
                 thresholds: Thresholds | None = None, cache_s: float = 1.0) -> None:
        self.reference = reference
        self.window = DriftWindow(reference, size=window, min_images=min_images,
                                  thresholds=thresholds)
        self.classes = reference.model.classes
        self.conf = reference.conf
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._score_edges = np.asarray(SCORE_BUCKETS, np.float64)
        self._boxes_edges = np.asarray(BOXES_BUCKETS, np.float64)
        self.score_counts = np.zeros(len(SCORE_BUCKETS) + 1, np.int64)
        self.score_sum = 0.0
        self.boxes_counts = np.zeros(len(BOXES_BUCKETS) + 1, np.int64)
        self.boxes_sum = 0
        self.class_counts = np.zeros(len(self.classes), np.int64)
        self.images = 0
        self.images_below_reference_conf = 0
        self._cached: tuple[float, DriftResult] | None = None

    def observe(self, image: ImageStats, det: Detections, width: int, height: int, *,
                conf: float | None = None) -> None:
        """Add one image and its detections.

        Detections are cut at the reference's threshold, so both sides are measured alike.
        A request that kept only scores above that threshold (``conf`` higher than the
        reference's) still feeds the image signals, but not the detection ones, which it
        would bias.
        """
        keep = det.scores > self.conf
        det = det[keep] if not bool(keep.all()) else det
        stats = detection_stats(det, width, height)
        if conf is not None and conf > self.conf + 1e-9:
            with self._lock:
                self.images_below_reference_conf += 1
            self.window.observe(image, None)
            return
        self.window.observe(image, stats)
        scores = stats.scores.astype(np.float64)
        s_idx: NDArray[np.intp] = np.searchsorted(self._score_edges, scores, side="left")
        b_idx = int(np.searchsorted(self._boxes_edges, float(stats.count), side="left"))
        ids = stats.class_ids[(stats.class_ids >= 0) & (stats.class_ids < len(self.classes))]
        with self._lock:
            self.images += 1
            np.add.at(self.score_counts, s_idx, 1)
            self.score_sum += float(scores.sum())
            self.boxes_counts[b_idx] += 1
            self.boxes_sum += stats.count
            self.class_counts += np.bincount(ids, minlength=len(self.classes))

    def result(self) -> DriftResult:
        """The window's drift, measured at most once per ``cache_s``."""
        now = time.monotonic()
        cached = self._cached
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        result = self.window.measure()
        self._cached = (now, result)
        return result
