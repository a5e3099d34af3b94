"""Dataset <-> COCO conversion and validation of results / ground-truth files."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detforge.core import ClassMap, DatasetError, Detections
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.evaluate import evaluate_files, evaluate_predictions
from detforge.evaluate.coco import dataset_to_coco

from .conftest import pycocotools_eval


def _dataset() -> Dataset:
    images = ImageTable.build(["a.jpg", "b.jpg", "c.jpg"], [100, 100, 100], [80, 80, 80],
                              split=["val", "val", "train"])
    boxes = BoxTable.build([0, 0, 0, 1, 2], [[0, 0, 10, 10], [20, 20, 60, 60],
                                            [70, 0, 100, 30], [5, 5, 50, 50], [0, 0, 5, 5]],
                           [0, 1, -1, 1, 0], ignore=[False, False, True, False, False])
    return Dataset(ClassMap.from_names(["cat", "dog"]), images, boxes)


def test_dataset_to_coco_ids_areas_and_ignore_regions() -> None:
    gt = dataset_to_coco(_dataset(), split="val")
    coco = gt.coco
    assert [c["id"] for c in coco["categories"]] == [1, 2]  # 0-based source ids -> 1..K
    assert [im["id"] for im in coco["images"]] == [0, 1]
    anns = coco["annotations"]
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    crowd = [a for a in anns if a["iscrowd"]]
    assert sorted(a["category_id"] for a in crowd) == [1, 2]  # ignore region: every class
    assert anns[1]["bbox"] == [20, 20, 40, 40] and anns[1]["area"] == 1600


def test_detection_in_ignore_region_is_not_a_false_positive() -> None:
    ds = _dataset()
    hit = Detections.from_arrays([[0, 0, 10, 10]], [0.9], [0])
    in_ignore = Detections.from_arrays([[0, 0, 10, 10], [72, 2, 98, 28]], [0.9, 0.8], [0, 0])
    base = evaluate_predictions(ds, {0: hit}, split="val")
    with_ignored = evaluate_predictions(ds, {0: in_ignore}, split="val")
    assert base.stats == with_ignored.stats
    assert with_ignored.per_class["cat"].precision == 1.0


def test_detections_and_coco_list_give_the_same_result() -> None:
    ds = _dataset()
    preds = {0: Detections.from_arrays([[1, 1, 11, 11], [20, 20, 58, 61]], [0.9, 0.7], [0, 1]),
             1: Detections.from_arrays([[5, 5, 40, 50]], [0.4], [1])}
    listed = [{"image_id": 0, "category_id": 1, "bbox": [1, 1, 10, 10], "score": 0.9},
              {"image_id": 0, "category_id": 2, "bbox": [20, 20, 38, 41], "score": 0.7},
              {"image_id": 1, "category_id": 2, "bbox": [5, 5, 35, 45], "score": 0.4}]
    a = evaluate_predictions(ds, preds, split="val")
    b = evaluate_predictions(ds, listed, split="val")
    np.testing.assert_allclose(a.stats, b.stats, atol=1e-6)
    gt = dataset_to_coco(ds, split="val").coco
    np.testing.assert_allclose(a.stats, pycocotools_eval(gt, listed).stats, atol=1e-6)


@pytest.mark.parametrize(("preds", "split", "match"), [
    ({2: Detections.empty()}, "val", "image row 2"),
    ({0: Detections.from_arrays([[0, 0, 1, 1]], [0.5], [5])}, "val", "class id 5"),
    ({}, "test", "split 'test' has no images"),
], ids=["row-outside-split", "class-out-of-range", "empty-split"])
def test_evaluate_predictions_errors(preds: dict[int, Detections], split: str,
                                     match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        evaluate_predictions(_dataset(), preds, split=split)


_GT = {"images": [{"id": 1, "width": 10, "height": 10}],
       "categories": [{"id": 1, "name": "a"}],
       "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                        "area": 25, "iscrowd": 0}]}
_OK = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}


@pytest.mark.parametrize(("results", "expect", "match"), [
    ([_OK], contextlib.nullcontext(), ""),
    ([{**_OK, "image_id": "1"}], pytest.raises(DatasetError), r"same type: 1 and \"1\""),
    ([{**_OK, "bbox": ["0", "0", "5", "5"]}], pytest.raises(DatasetError),
     "not strings"),
    ([{**_OK, "score": "0.5"}], pytest.raises(DatasetError), "score '0.5'.*not a string"),
    ([{**_OK, "image_id": 7}], pytest.raises(DatasetError), r"entry 0: image_id 7"),
    ([_OK, {k: v for k, v in _OK.items() if k != "score"}], pytest.raises(DatasetError),
     r"entry 1 lacks \['score'\]"),
    ([{**_OK, "bbox": [0, 0, 5]}], pytest.raises(DatasetError), "not four numbers"),
    ([{**_OK, "bbox": [0, 0, -5, 5]}], pytest.raises(DatasetError), "w, h >= 0"),
    ([{**_OK, "score": "high"}], pytest.raises(DatasetError), "score 'high'"),
    ([3], pytest.raises(DatasetError), "entry 0 is int"),
    (_GT, pytest.raises(DatasetError), "looks like a ground-truth file"),
], ids=["ok", "string-image-id", "string-bbox", "string-score", "unknown-image",
        "missing-key", "short-bbox", "negative-size", "bad-score", "not-an-object",
        "gt-as-results"])
def test_bad_results_file_names_the_file(tmp_path: Path, results: Any, expect: Any,
                                         match: str) -> None:
    (tmp_path / "gt.json").write_text(json.dumps(_GT))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    with expect as exc:
        evaluate_files(tmp_path / "dt.json", tmp_path / "gt.json")
    if exc is not None:
        assert "dt.json" in str(exc.value)
        assert exc.match(match)


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "not valid JSON"),
    (json.dumps([1, 2]), "not a COCO ground-truth file"),
    (json.dumps({**_GT, "annotations": [{"id": 1, "image_id": 1}]}), "lacks"),
    (json.dumps({**_GT, "annotations": [{**_GT["annotations"][0], "image_id": 9}]}),
     "image_id 9"),
], ids=["syntax", "list", "missing-keys", "unknown-image"])
def test_bad_gt_file(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "gt.json").write_text(content)
    (tmp_path / "dt.json").write_text(json.dumps([_OK]))
    with pytest.raises(DatasetError, match=match) as exc:
        evaluate_files(tmp_path / "dt.json", tmp_path / "gt.json")
    assert "gt.json" in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        evaluate_files(tmp_path / "nope.json", tmp_path / "gt.json")


def test_gt_without_area_uses_the_box_area_with_a_warning() -> None:
    from detforge.evaluate.coco_input import EvaluationWarning, check_gt

    gt = {**_GT, "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                  "bbox": [0, 0, 5, 4]}]}
    with pytest.warns(EvaluationWarning, match="lack 'area'"):
        checked = check_gt(gt)
    assert checked.coco["annotations"][0]["area"] == 20.0
    assert "area" not in gt["annotations"][0]  # the input is left unchanged
