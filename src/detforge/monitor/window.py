"""The live window: the last N images' signals, and their drift against a reference.

:class:`DriftWindow` is fed one image at a time (``observe``: a few array appends under a
lock, so a server pays microseconds per image) and measured on demand (``measure``: PSI
and KS per signal, the per-class PSI terms, over what the window holds). A server measures
when Prometheus scrapes; ``detforge monitor report`` fills a window from a JSON Lines file.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ConfigError
from detforge.monitor.drift import bin_counts, ks_statistic, psi, psi_terms
from detforge.monitor.reference import Reference
from detforge.monitor.signals import (
    CONTINUOUS,
    IMAGE_SIGNALS,
    SIGNALS,
    DetectionStats,
    ImageStats,
)

__all__ = ["DEFAULT_PSI_THRESHOLD", "DriftResult", "DriftWindow", "SignalDrift",
           "Thresholds"]

DEFAULT_PSI_THRESHOLD = 0.2
"""PSI past which a signal counts as drifted (see :mod:`detforge.monitor.drift`)."""


@dataclass(frozen=True)
class Thresholds:
    """Drift thresholds: a PSI per signal (default for the others) and optional KS ones.

    Example:
        >>> Thresholds(psi_by_signal={"score": 0.1}).psi_for("score")
        0.1
    """

    psi: float = DEFAULT_PSI_THRESHOLD
    psi_by_signal: Mapping[str, float] = field(default_factory=dict)
    ks_by_signal: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted((set(self.psi_by_signal) | set(self.ks_by_signal)) - set(SIGNALS))
        if unknown:
            raise ConfigError(f"unknown drift signals {unknown}; signals: {list(SIGNALS)}")

    def psi_for(self, signal: str) -> float:
        """The PSI threshold of ``signal``."""
        return float(self.psi_by_signal.get(signal, self.psi))


@dataclass(frozen=True)
class SignalDrift:
    """One signal's drift over the window.

    Attributes:
        signal: Its name.
        psi: Population Stability Index (NaN: too few values).
        ks: Kolmogorov-Smirnov statistic (NaN for ``class`` or too few values).
        values: Values in the window.
        live_mean: Mean live value (None for ``class``).
        reference_mean: Mean reference value (None for ``class``).
        threshold: The PSI threshold.
        ks_threshold: The KS threshold, if one is set.
    """

    signal: str
    psi: float
    ks: float
    values: int
    live_mean: float | None
    reference_mean: float | None
    threshold: float
    ks_threshold: float | None = None

    @property
    def drifted(self) -> bool:
        """Past its PSI threshold (or its KS threshold, where set)."""
        over_ks = self.ks_threshold is not None and self.ks > self.ks_threshold
        return bool(self.psi > self.threshold or over_ks)


@dataclass(frozen=True)
class DriftResult:
    """Drift of every signal and class over one window.

    Attributes:
        images: Images in the window.
        min_images: Images needed before drift is judged.
        signals: Per signal, in :data:`~detforge.monitor.signals.SIGNALS` order.
        class_psi: Per class name, its PSI term of the ``class`` signal.
        class_share: Per class name, ``(live share, reference share)`` of detections.
    """

    images: int
    min_images: int
    signals: tuple[SignalDrift, ...]
    class_psi: dict[str, float]
    class_share: dict[str, tuple[float, float]]

    @property
    def ready(self) -> bool:
        """The window holds enough images to judge."""
        return self.images >= self.min_images

    @property
    def drifted(self) -> list[str]:
        """Signals past their thresholds (empty until :attr:`ready`)."""
        return [s.signal for s in self.signals if self.ready and s.drifted]


@dataclass(slots=True)
class _Entry:
    image: ImageStats | None
    det: DetectionStats | None


class DriftWindow:
    """The last ``size`` images' signals, measured against ``reference``.

    Args:
        reference: The reference statistics.
        size: Images kept (oldest dropped first).
        min_images: Images needed before drift is reported (NaN before).
        thresholds: Drift thresholds.

    Example:
        >>> window = DriftWindow(load_reference("ref.json"), size=500)  # doctest: +SKIP
        >>> window.observe(image_stats(img), detection_stats(det, w, h))  # doctest: +SKIP
        >>> window.measure().drifted  # doctest: +SKIP
        []
    """

    def __init__(self, reference: Reference, *, size: int = 500, min_images: int = 50,
                 thresholds: Thresholds | None = None) -> None:
        if size < 1 or min_images < 1:
            raise ConfigError(f"the drift window needs size >= 1 and min_images >= 1, got "
                              f"{size} and {min_images}")
        self.reference = reference
        self.size = size
        self.min_images = min(min_images, size)
        self.thresholds = thresholds or Thresholds()
        self._entries: deque[_Entry] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.observed = 0

    def __len__(self) -> int:
        return len(self._entries)

    def observe(self, image: ImageStats | None, det: DetectionStats | None) -> None:
        """Add one image (``image`` None: its image signals are unknown; ``det`` None: its
        detections are not comparable with the reference's and are left out)."""
        with self._lock:
            self._entries.append(_Entry(image, det))
            self.observed += 1

    def measure(self) -> DriftResult:
        """PSI and KS of every signal, and the per-class terms, over the window."""
        with self._lock:
            entries = list(self._entries)
        ref = self.reference
        values = _gather(entries)
        out = []
        for name in CONTINUOUS:
            sref = ref.signals[name]
            vals = values[name]
            live = bin_counts(vals, np.asarray(sref.edges, np.float64))
            enough = len(entries) >= self.min_images and len(vals) > 0
            out.append(SignalDrift(
                name, psi(np.asarray(sref.counts), live) if enough else math.nan,
                ks_statistic(np.asarray(sref.quantiles), vals) if enough else math.nan,
                len(vals), float(vals.mean()) if len(vals) else None, sref.mean,
                self.thresholds.psi_for(name), self.thresholds.ks_by_signal.get(name)))
        classes = ref.model.classes
        ids = values["class"].astype(np.int64)
        ids = ids[(ids >= 0) & (ids < len(classes))]
        live_counts = np.bincount(ids, minlength=len(classes))
        ref_counts = np.asarray(ref.signals["class"].counts, np.int64)
        enough = len(entries) >= self.min_images and live_counts.sum() > 0
        terms = psi_terms(ref_counts, live_counts) if enough and ref_counts.sum() else None
        out.append(SignalDrift("class", psi(ref_counts, live_counts) if enough else math.nan,
                               math.nan, int(live_counts.sum()), None, None,
                               self.thresholds.psi_for("class")))
        live_total = max(1, int(live_counts.sum()))
        ref_total = max(1, int(ref_counts.sum()))
        return DriftResult(
            images=len(entries), min_images=self.min_images, signals=tuple(out),
            class_psi={c: float(terms[i]) if terms is not None else math.nan
                       for i, c in enumerate(classes)},
            class_share={c: (float(live_counts[i]) / live_total,
                             float(ref_counts[i]) / ref_total) for i, c in enumerate(classes)})


def _gather(entries: list[_Entry]) -> dict[str, NDArray[np.float64]]:
    """Every signal's values over ``entries`` (image signals only where known)."""
    out: dict[str, NDArray[np.float64]] = {}
    for name in IMAGE_SIGNALS:
        vals = np.array([getattr(e.image, name) for e in entries if e.image is not None],
                        np.float64)
        out[name] = vals[np.isfinite(vals)]
    dets = [e.det for e in entries if e.det is not None]
    out["boxes_per_image"] = np.array([d.count for d in dets], np.float64)

    def cat(attr: str) -> NDArray[np.float64]:
        parts = [getattr(d, attr) for d in dets]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)

    out["score"] = cat("scores")
    out["box_area"] = cat("box_area")
    out["box_aspect"] = cat("box_aspect")
    out["class"] = cat("class_ids")
    return out
