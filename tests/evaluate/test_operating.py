"""Operating-point numbers checked by hand on tiny cases."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from detforge.evaluate import evaluate_coco
from detforge.evaluate.coco_input import check_gt, check_results
from detforge.evaluate.operating import match_coco

from .conftest import pycocotools_eval


def _gt(anns: list[tuple[int, int, list[float], int]], images: int = 2) -> dict[str, Any]:
    return {"images": [{"id": i + 1, "file_name": f"{i + 1}.jpg", "width": 100, "height": 100}
                       for i in range(images)],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            "annotations": [{"id": n + 1, "image_id": img, "category_id": cat, "bbox": box,
                             "area": box[2] * box[3], "iscrowd": crowd}
                            for n, (img, cat, box, crowd) in enumerate(anns)]}


def _dt(img: int, cat: int, box: list[float], score: float) -> dict[str, Any]:
    return {"image_id": img, "category_id": cat, "bbox": box, "score": score}


def test_precision_recall_f1_by_hand() -> None:
    # Image 1: two "a" objects and one "b"; image 2: nothing.
    gt = _gt([(1, 1, [0, 0, 10, 10], 0), (1, 1, [50, 50, 10, 10], 0),
              (1, 2, [20, 20, 10, 10], 0)])
    dts = [_dt(1, 1, [0, 0, 10, 10], 0.9),     # TP a
           _dt(1, 1, [0, 0, 10, 10], 0.8),     # duplicate -> FP a
           _dt(1, 1, [50, 50, 10, 10], 0.3),   # TP a, below conf 0.5
           _dt(1, 2, [20, 20, 10, 10], 0.7),   # TP b
           _dt(2, 2, [5, 5, 10, 10], 0.6)]     # FP b on an empty image
    res = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(dts), conf=0.5)
    a, b = res.per_class["a"], res.per_class["b"]
    assert (a.precision, a.recall, a.f1, a.support, a.detections) == \
        pytest.approx((1 / 2, 1 / 2, 0.5, 2, 2))
    assert (b.precision, b.recall, b.f1, b.support, b.detections) == \
        pytest.approx((1 / 2, 1.0, 2 / 3, 1, 2))
    # Rows predicted, columns true, index 2 = background.
    np.testing.assert_array_equal(res.confusion_matrix, [[1, 0, 1], [0, 1, 1], [1, 0, 0]])
    worst = {w.image_id: (w.tp, w.fp, w.fn) for w in res.worst_images}
    assert worst == {1: (2, 1, 1), 2: (0, 1, 0)}
    assert res.worst_images[0].image_id == 2  # F1 0 before F1 0.667
    # Mean F1 over a, b: conf <= 0.3: (0.8 + 0.667) / 2 = 0.733; (0.3, 0.6]: (0.5 + 0.667)
    # / 2; (0.6, 0.7]: (0.5 + 1) / 2 = 0.75, the best; above 0.7 b has no detection.
    assert 0.6 < res.f1_optimal_conf <= 0.7
    best = int(np.argmax(res.conf_grid >= res.f1_optimal_conf))
    assert res.f1_curves[:, best].mean() == pytest.approx(0.75)
    ref = pycocotools_eval(gt, dts)
    np.testing.assert_allclose(res.stats, ref.stats, atol=1e-6)


def test_crowd_match_is_ignored_and_misclassification_in_matrix() -> None:
    gt = _gt([(1, 1, [0, 0, 10, 10], 0), (1, 1, [40, 40, 50, 50], 1)])
    dts = [_dt(1, 1, [45, 45, 10, 10], 0.9),   # inside the crowd box: ignored
           _dt(1, 2, [0, 0, 10, 10], 0.8)]     # right box, wrong class
    res = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(dts), conf=0.5)
    assert res.per_class["a"].detections == 0 and res.per_class["a"].recall == 0.0
    assert res.per_class["b"].support == 0 and res.per_class["b"].recall == -1.0
    np.testing.assert_array_equal(res.confusion_matrix, [[0, 0, 0], [1, 0, 0], [0, 0, 0]])


def test_only_100_detections_per_image_and_class_count() -> None:
    gt = _gt([(1, 1, [0, 0, 10, 10], 0)], images=1)
    dts = [_dt(1, 1, [60, 60, 5, 5], 0.99 - i * 0.001) for i in range(120)]
    dts.append(_dt(1, 1, [0, 0, 10, 10], 0.5))  # rank 121: beyond maxDets
    checked = check_gt(gt)
    m = match_coco(check_results(dts, checked).boxes, checked.boxes, 2)
    assert (m.status[:100] == 0).all() and (m.status[100:] == -1).all()
    res = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(dts))
    np.testing.assert_allclose(res.stats, pycocotools_eval(gt, dts).stats, atol=1e-6)
