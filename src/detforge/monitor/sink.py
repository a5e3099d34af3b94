"""A pipeline sink that feeds a drift window: ``detforge predict --reference``."""

from __future__ import annotations

from detforge.monitor.live import LiveMonitor
from detforge.monitor.signals import image_stats
from detforge.runtime.sinks import Prediction

__all__ = ["DriftSink"]


class DriftSink:
    """Feeds every prediction (and its image: the pipeline keeps them for this sink) to a
    :class:`~detforge.monitor.live.LiveMonitor`; writes nothing."""

    needs_image = True

    def __init__(self, monitor: LiveMonitor) -> None:
        self.monitor = monitor

    def write(self, prediction: Prediction) -> None:
        """Observe one image."""
        if prediction.image is not None:
            self.monitor.observe(image_stats(prediction.image), prediction.detections,
                                 prediction.width, prediction.height)

    def close(self) -> None:
        """Nothing to commit."""

    def abort(self) -> None:
        """Nothing to remove."""
