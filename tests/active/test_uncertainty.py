"""The documented scoring formulas: box uncertainty, image aggregation, disagreement."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pytest

from detforge.active.uncertainty import (
    box_uncertainty,
    disagreement,
    hypotheses,
    image_uncertainty,
)
from detforge.core.detections import Detections
from detforge.core.errors import ConfigError


def _binary_entropy(p: float) -> float:
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


@pytest.mark.parametrize(("scores", "method", "expected"), [
    ([[0.5]], "entropy", 1.0),
    ([[0.5]], "margin", 1.0),
    ([[0.5]], "least-confidence", 1.0),
    ([[1.0]], "entropy", 0.0),
    ([[0.0]], "entropy", 0.0),           # a faint candidate is confident background
    ([[0.2]], "entropy", _binary_entropy(0.2)),
    ([[0.2]], "margin", 1 - abs(2 * 0.2 - 1)),
    ([[0.2]], "least-confidence", 2 * 0.2),
    ([[1.0, 0.0]], "margin", 0.0),
    ([[0.5, 0.5]], "margin", 1.0),       # tie between two classes (and background)
    ([[0.5, 0.5]], "entropy", 1.0),      # q = (1/3, 1/3, 1/3)
    ([[0.5, 0.5]], "least-confidence", 1.0),
], ids=["half-ent", "half-margin", "half-lc", "one", "zero", "p02-ent", "p02-margin",
        "p02-lc", "sure-2cls", "tie-margin", "tie-ent", "tie-lc"])
def test_box_uncertainty_matches_the_documented_formula(scores: list[list[float]], method: str,
                                                        expected: float) -> None:
    assert box_uncertainty(np.array(scores), method)[0] == pytest.approx(expected, abs=1e-9)


def test_hypotheses_add_background_and_sum_to_one() -> None:
    q = hypotheses(np.array([[0.9, 0.3], [0.0, 0.0]]))
    np.testing.assert_allclose(q.sum(1), 1.0)
    np.testing.assert_allclose(q[0], np.array([0.9, 0.3, 0.1]) / 1.3)
    np.testing.assert_allclose(q[1], [0.0, 0.0, 1.0])


@pytest.mark.parametrize("method", ["entropy", "margin", "least-confidence"])
def test_uncertainty_grows_towards_the_decision_boundary(method: str) -> None:
    s = np.array([[0.99], [0.9], [0.7], [0.55]])
    u = box_uncertainty(s, method)
    assert np.all(np.diff(u) > 0)
    assert np.all((u >= 0) & (u <= 1))


@pytest.mark.parametrize(("aggregate", "expected"), [
    ("max", 1.0), ("mean", (1.0 + 0.0) / 2), ("sum", 1.0 + 0.0)])
def test_image_aggregation_over_boxes_above_the_floor(aggregate: str, expected: float) -> None:
    scores = np.array([[0.5], [1.0], [0.04]])  # the last is below the floor: left out
    assert image_uncertainty(scores, "margin", aggregate=aggregate) == pytest.approx(expected)


def test_image_without_candidates_scores_zero() -> None:
    assert image_uncertainty(np.zeros((0, 3)), "entropy") == 0.0
    assert image_uncertainty(np.array([[0.01, 0.02]]), "entropy") == 0.0


@pytest.mark.parametrize(("kwargs", "ctx"), [
    ({"method": "entropy"}, contextlib.nullcontext()),
    ({"method": "variance"}, pytest.raises(ConfigError, match="choose one of")),
    ({"method": "entropy", "aggregate": "median"}, pytest.raises(ConfigError,
                                                                 match="unknown aggregate")),
], ids=["ok", "bad-method", "bad-aggregate"])
def test_bad_names_are_refused(kwargs: dict[str, Any], ctx: Any) -> None:
    with ctx:
        image_uncertainty(np.array([[0.5]]), **kwargs)


def _dets(boxes: list[list[float]], scores: list[float], cls: list[int]) -> Detections:
    return Detections.from_arrays(boxes, scores, cls)


def test_disagreement_is_zero_for_identical_and_one_for_disjoint_predictions() -> None:
    a = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.6], [0, 1])
    assert disagreement(a, a) == 0.0
    assert disagreement(a, Detections.empty()) == 1.0
    assert disagreement(Detections.empty(), Detections.empty()) == 0.0
    other_class = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.6], [1, 0])
    assert disagreement(a, other_class) == 1.0


def test_disagreement_weighs_overlap_and_score_gap() -> None:
    a = _dets([[0, 0, 10, 10]], [0.8], [0])
    shifted = _dets([[5, 0, 15, 10]], [0.8], [0])  # IoU 1/3
    weaker = _dets([[0, 0, 10, 10]], [0.4], [0])   # same box, score gap 0.4
    assert disagreement(a, shifted) == pytest.approx(1 - 1 / 3)
    # 1 - (0.8 * 0.6 + 0.4 * 0.6) / 1.2
    assert disagreement(a, weaker) == pytest.approx(0.4)
