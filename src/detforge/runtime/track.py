"""Tracking across video frames: ByteTrack, one tracker per source.

Uses Ultralytics' maintained ByteTrack implementation (``ultralytics.trackers``), so
``--track`` needs the ``train`` extra. Detections that the tracker does not confirm in a
frame are dropped, as Ultralytics' own ``track`` mode does.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.boxes import xyxy_to_cxcywh
from detforge.core.detections import Detections
from detforge.core.errors import MissingExtraError

__all__ = ["ByteTracker"]


class _Boxes:
    """The slice of Ultralytics' ``Boxes`` API that its BYTETracker reads."""

    def __init__(self, xyxy: NDArray[np.float32], conf: NDArray[np.float32],
                 cls: NDArray[np.float32]) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls
        self.xywh = xyxy_to_cxcywh(xyxy)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> _Boxes:
        return _Boxes(self.xyxy[index], self.conf[index], self.cls[index])


class ByteTracker:
    """ByteTrack over the frames of each source (independent ids per source).

    Args:
        frame_rate: Frames per second of the sampled stream (scales how long lost tracks live).
        high_thresh: First-association score threshold.
        low_thresh: Second-association score threshold.
        new_track_thresh: Score needed to start a track.
        track_buffer: Frames (at 30 fps) a lost track is kept.
        match_thresh: Association cost threshold.

    Raises:
        MissingExtraError: Ultralytics is not installed.
    """

    def __init__(self, *, frame_rate: float = 30.0, high_thresh: float = 0.25,
                 low_thresh: float = 0.1, new_track_thresh: float = 0.25,
                 track_buffer: int = 30, match_thresh: float = 0.8) -> None:
        try:
            import importlib

            from detforge.integrations.ultralytics import import_ultralytics

            import_ultralytics()
            byte_tracker = importlib.import_module("ultralytics.trackers.byte_tracker")
        except ImportError as exc:
            raise MissingExtraError("--track needs Ultralytics' ByteTrack: pip install "
                                    "'detforge[train]'") from exc
        self._cls: Any = byte_tracker.BYTETracker
        self._args = SimpleNamespace(
            tracker_type="bytetrack", track_high_thresh=high_thresh, track_low_thresh=low_thresh,
            new_track_thresh=new_track_thresh,
            track_buffer=max(1, round(track_buffer * frame_rate / 30.0)),
            match_thresh=match_thresh, fuse_score=True)
        self._trackers: dict[str, Any] = {}

    def update(self, source: str, detections: Detections) -> Detections:
        """Track ``detections`` of the next frame of ``source``; returns them with track ids."""
        tracker = self._trackers.get(source)
        if tracker is None:
            tracker = self._trackers[source] = self._cls(self._args)
        boxes = _Boxes(detections.xyxy, detections.scores,
                       detections.class_ids.astype(np.float32))
        out = np.asarray(tracker.update(boxes), np.float64).reshape(-1, 8)
        return Detections.from_arrays(out[:, :4], out[:, 5], out[:, 6], out[:, 4].astype(np.int64))
