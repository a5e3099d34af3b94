from __future__ import annotations

import contextlib

import numpy as np
import pytest

from detforge.core import Detections, InvalidDetectionsError


def _dets(n: int) -> Detections:
    xyxy = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    return Detections(xyxy, np.linspace(0, 1, n, dtype=np.float32), np.arange(n, dtype=np.int32))


@pytest.mark.parametrize(
    ("xyxy", "scores", "classes", "expect"),
    [
        (np.zeros((2, 4), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int32),
         contextlib.nullcontext()),
        (np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int32),
         pytest.raises(InvalidDetectionsError, match="xyxy")),
        (np.zeros((2, 4), np.float32), np.zeros(3, np.float32), np.zeros(2, np.int32),
         pytest.raises(InvalidDetectionsError, match="scores")),
        (np.zeros((2, 4), np.float64), np.zeros(2, np.float32), np.zeros(2, np.int32),
         pytest.raises(InvalidDetectionsError, match="float32")),
    ],
    ids=["ok", "bad-box-shape", "bad-scores-len", "bad-dtype"],
)
def test_validation(xyxy, scores, classes, expect) -> None:
    with expect:
        Detections(xyxy, scores, classes)


def test_indexing_and_concat() -> None:
    d = _dets(5)
    assert len(d[d.scores > 0.5]) == 2
    assert len(d[1:3]) == 2
    assert d[0].equals(Detections.from_arrays([[0, 1, 2, 3]], [0.0], [0]))
    both = Detections.concat([d, _dets(2)])
    assert len(both) == 7 and both.track_ids is None
    assert Detections.concat([]).equals(Detections.empty())
