"""ByteTrack through detforge's tracker: stable ids on moving objects, one tracker per source."""

from __future__ import annotations

import numpy as np
import pytest

from detforge.core.detections import Detections

pytest.importorskip("ultralytics")
pytest.importorskip("lap")

from detforge.runtime.track import ByteTracker  # noqa: E402


def _frame(i: int) -> Detections:
    # Two objects moving in opposite directions, 4 px a frame, and one that appears late.
    boxes = [[10 + 4 * i, 20, 60 + 4 * i, 80], [300 - 4 * i, 100, 350 - 4 * i, 170]]
    scores, classes = [0.9, 0.8], [0, 1]
    if i >= 5:
        boxes.append([150, 200, 190, 260])
        scores.append(0.85)
        classes.append(0)
    return Detections.from_arrays(boxes, scores, classes)


def test_ids_are_stable_across_frames() -> None:
    tracker = ByteTracker(frame_rate=10)
    seen: list[dict[int, int]] = []
    for i in range(12):
        out = tracker.update("video.mp4", _frame(i))
        assert out.track_ids is not None
        seen.append({int(c): int(t) for c, t in zip(out.class_ids, out.track_ids, strict=True)
                     if c == 1})
    ids_class1 = {d[1] for d in seen if 1 in d}
    assert len(ids_class1) == 1, seen
    final = tracker.update("video.mp4", _frame(12))
    assert final.track_ids is not None and len(set(final.track_ids.tolist())) == 3


def test_sources_have_independent_trackers() -> None:
    tracker = ByteTracker(frame_rate=10)
    for i in range(3):
        a = tracker.update("a.mp4", _frame(i))
        b = tracker.update("b.mp4", _frame(i))
    assert a.track_ids is not None and b.track_ids is not None
    np.testing.assert_array_equal(np.sort(a.track_ids), np.sort(b.track_ids))
    np.testing.assert_allclose(a.xyxy[np.argsort(a.track_ids)], b.xyxy[np.argsort(b.track_ids)],
                               atol=1e-3)
