"""How unsure a detector is about an image: box-level uncertainty aggregated per image, and the
disagreement between two predictions of the same image.

Box level. A candidate box comes with the score of every class, ``s_1 .. s_K`` in [0, 1]
(YOLO heads score each class with its own sigmoid, so they need not sum to one). The box is
read as a choice between K + 1 hypotheses, each class or background, whose weights are

    q = normalise([s_1, ..., s_K, 1 - max_k s_k])

so a faint candidate (every score near 0) is confidently *background*, not uncertain. With
``q_(1) >= q_(2)`` the two largest weights:

===================  ==================================  ===========================
method               per box                             1 when
===================  ==================================  ===========================
``entropy``          ``H(q) / log(K + 1)``               every hypothesis equally likely
``margin``           ``1 - (q_(1) - q_(2))``             the best two are tied
``least-confidence`` ``(1 - q_(1)) * (K + 1) / K``       the best is no better than the rest
===================  ==================================  ===========================

All three lie in [0, 1] and are 0 for a box scored 1 for one class and 0 for the others (or
0 for every class). With a single class they reduce to the binary entropy, ``1 - |2s - 1|``
and ``2 min(s, 1 - s)``. A layout that reports only the best score (``deepstream``,
``end2end``) gives one column, ``K = 1``.

Image level. Boxes whose best score is at most ``floor`` are left out (they are background
by any reading), then the per-box values are aggregated: ``max`` (default: the image holds
at least one object the model cannot decide on), ``mean`` or ``sum`` (favours crowded
images). An image without candidates scores 0.

Disagreement. Two predictions of one image ``A`` and ``B`` (two models, or the model on the
image and on its mirror image) agree on a box ``a`` of ``A`` as much as its best partner of
the same class in ``B`` allows:

    agree(a, B) = max_{b in B, class b = class a} IoU(a, b) * (1 - |s_a - s_b|)

and the image's disagreement is the score-weighted shortfall over the boxes of both:

    D = 1 - (sum_a s_a agree(a, B) + sum_b s_b agree(b, A)) / (sum_a s_a + sum_b s_b)

in [0, 1], 0 when the predictions are identical (or both empty), 1 when no box has a
partner. Only boxes scoring above ``floor`` take part.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from detforge.core.boxes import box_iou
from detforge.core.detections import Detections
from detforge.core.errors import ConfigError

__all__ = ["AGGREGATES", "DEFAULT_FLOOR", "UNCERTAINTY_METHODS", "box_uncertainty",
           "disagreement", "hypotheses", "image_uncertainty"]

UNCERTAINTY_METHODS = ("entropy", "margin", "least-confidence")
"""Box-level uncertainty measures, in the order reports list them."""

AGGREGATES = ("max", "mean", "sum")
"""Ways of turning the boxes' values into one value per image."""

DEFAULT_FLOOR = 0.05
"""Candidates whose best class score is at most this are background and take no part."""

Method = Literal["entropy", "margin", "least-confidence"]
F64 = NDArray[np.float64]


def hypotheses(class_scores: NDArray[np.floating]) -> F64:
    """The ``[N, K + 1]`` weights of each box's hypotheses: K classes, then background.

    Args:
        class_scores: ``[N, K]`` scores in [0, 1] (values outside are clipped).

    Returns:
        Rows summing to 1.
    """
    s = np.clip(np.asarray(class_scores, np.float64), 0.0, 1.0)
    if s.ndim != 2:
        raise ConfigError(f"class scores must be an [N, K] array, got shape {s.shape}")
    background = 1.0 - (s.max(axis=1, keepdims=True) if s.shape[1] else np.zeros((len(s), 1)))
    q = np.concatenate([s, background], axis=1)
    total = q.sum(axis=1, keepdims=True)
    return np.asarray(q / np.where(total > 0, total, 1.0))


def box_uncertainty(class_scores: NDArray[np.floating], method: str = "entropy") -> F64:
    """Uncertainty of each box, in [0, 1] (see the module docstring for the formulas).

    Args:
        class_scores: ``[N, K]`` class scores of N boxes.
        method: ``entropy``, ``margin`` or ``least-confidence``.

    Returns:
        ``[N]`` values.

    Raises:
        ConfigError: Unknown method.

    Example:
        >>> box_uncertainty(np.array([[0.5], [1.0], [0.0]]), "entropy").round(3).tolist()
        [1.0, 0.0, 0.0]
    """
    check_method(method)
    q = hypotheses(class_scores)
    n, k1 = q.shape
    if n == 0:
        return np.zeros(0, np.float64)
    if method == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            h = 0.0 - np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)
        return np.asarray(np.clip(h / np.log(k1), 0.0, 1.0) + 0.0)
    top = -np.sort(-q, axis=1)
    if method == "margin":
        return np.asarray(np.clip(1.0 - (top[:, 0] - top[:, 1]), 0.0, 1.0))
    return np.asarray(np.clip((1.0 - top[:, 0]) * k1 / (k1 - 1), 0.0, 1.0))


def image_uncertainty(class_scores: NDArray[np.floating], method: str = "entropy", *,
                      aggregate: str = "max", floor: float = DEFAULT_FLOOR) -> float:
    """One image's uncertainty from its candidate boxes.

    Args:
        class_scores: ``[N, K]`` class scores of the image's candidates (after NMS).
        method: Box-level measure (:data:`UNCERTAINTY_METHODS`).
        aggregate: ``max``, ``mean`` or ``sum`` over the boxes above ``floor``.
        floor: Boxes whose best score is at most this are left out.

    Returns:
        The value (0 without candidates).

    Raises:
        ConfigError: Unknown method or aggregate.

    Example:
        >>> s = np.array([[0.9, 0.0], [0.7, 0.2], [0.01, 0.0]])
        >>> round(image_uncertainty(s, "margin"), 3)  # q = (0.7, 0.2, 0.3) / 1.2 wins
        0.667
    """
    if aggregate not in AGGREGATES:
        raise ConfigError(f"unknown aggregate {aggregate!r}; choose one of {list(AGGREGATES)}")
    s = np.asarray(class_scores, np.float64)
    if s.size == 0:
        return 0.0
    keep = s.max(axis=1) > floor
    values = box_uncertainty(s[keep], method)
    if not len(values):
        return 0.0
    if aggregate == "max":
        return round(float(values.max()), 12)
    if aggregate == "mean":
        return round(float(values.mean()), 12)
    return round(float(values.sum()), 12)


def disagreement(a: Detections, b: Detections, *, floor: float = DEFAULT_FLOOR) -> float:
    """How much two predictions of the same image disagree, in [0, 1] (module docstring).

    Args:
        a: One prediction (original-image pixels).
        b: The other, in the same pixels and class indices.
        floor: Boxes scoring at most this take no part.

    Returns:
        0 for identical predictions (or both empty), 1 when no box has a partner.

    Example:
        >>> d = Detections.from_arrays([[0, 0, 10, 10]], [0.8], [0])
        >>> disagreement(d, d), disagreement(d, Detections.empty())
        (0.0, 1.0)
    """
    a = a[a.scores > floor]
    b = b[b.scores > floor]
    weight = float(a.scores.sum()) + float(b.scores.sum())
    if weight <= 0.0:
        return 0.0
    agreed = float((a.scores * _agreement(a, b)).sum() + (b.scores * _agreement(b, a)).sum())
    return float(np.clip(1.0 - agreed / weight, 0.0, 1.0))


def _agreement(a: Detections, b: Detections) -> F64:
    """For each box of ``a``: best ``IoU * (1 - |score difference|)`` over same-class ``b``."""
    if not len(a) or not len(b):
        return np.zeros(len(a), np.float64)
    iou = box_iou(a.xyxy, b.xyxy)
    same = a.class_ids[:, None] == b.class_ids[None, :]
    closeness = 1.0 - np.abs(a.scores[:, None].astype(np.float64) - b.scores[None, :])
    return np.asarray((np.where(same, iou, 0.0) * closeness).max(axis=1))


def check_method(method: str) -> None:
    """Raise :class:`ConfigError` unless ``method`` is one of :data:`UNCERTAINTY_METHODS`."""
    if method not in UNCERTAINTY_METHODS:
        raise ConfigError(f"unknown uncertainty {method!r}; choose one of "
                          f"{list(UNCERTAINTY_METHODS)}")
