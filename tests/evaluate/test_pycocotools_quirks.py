"""Inputs pycocotools scores in its own way: detforge gives the same numbers on one process
and on the category shards, or refuses in one line what pycocotools cannot score."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from detforge.core import DatasetError
from detforge.evaluate import EvalResult, evaluate_coco, sharded
from detforge.evaluate.coco_input import EvaluationWarning

from .conftest import make_coco_pair, pycocotools_eval

Pair = tuple[dict[str, Any], list[dict[str, Any]]]


def _pair() -> Pair:
    return make_coco_pair(5, images=24)


def _ann_id_zero(gt: dict[str, Any], dts: list[Any]) -> Pair:
    gt["annotations"][3]["id"] = 0
    return gt, dts


def _duplicate_ann_ids(gt: dict[str, Any], dts: list[Any]) -> Pair:
    for a in gt["annotations"][::6]:  # across images and categories
        a["id"] = 2
    return gt, dts


def _duplicated_category(gt: dict[str, Any], dts: list[Any]) -> Pair:
    gt["categories"].append(dict(gt["categories"][1]))
    return gt, dts


def _string_ids_tied_scores(_gt: dict[str, Any], _dts: list[Any]) -> Pair:
    # Equal scores: the image order breaks the tie. pycocotools orders "10" < "100" < "9".
    ids = ("9", "10", "100")
    gt = {"images": [{"id": s} for s in ids], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": i + 1, "image_id": s, "category_id": 1, "bbox": [0, 0, 9, 9],
                           "area": 81, "iscrowd": 0} for i, s in enumerate(ids)]}
    dts = [{"image_id": s, "category_id": 1, "bbox": [0, 0, 9, 9] if s != "10" else
            [50, 50, 9, 9], "score": 0.5} for s in ids]
    return gt, dts


def _huge_image_ids(gt: dict[str, Any], dts: list[Any]) -> Pair:
    base = 2**53  # 2**53 and 2**53 + 1 are one float64
    for im in gt["images"]:
        im["id"] += base
    for a in [*gt["annotations"], *dts]:
        a["image_id"] += base
    return gt, dts


CASES: dict[str, Callable[[dict[str, Any], list[Any]], Pair]] = {
    "ann-id-0": _ann_id_zero, "duplicate-ann-ids": _duplicate_ann_ids,
    "duplicated-category": _duplicated_category, "string-ids-ties": _string_ids_tied_scores,
    "ids-beyond-2**53": _huge_image_ids,
}


def _ours(gt: dict[str, Any], dts: list[Any], workers: int | None) -> EvalResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        return evaluate_coco(gt, dts, workers=workers)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "shards"])
@pytest.mark.parametrize("case", list(CASES))
def test_same_stats_as_pycocotools(case: str, workers: int) -> None:
    gt, dts = CASES[case](*copy.deepcopy(_pair()))
    ref = pycocotools_eval(gt, dts)
    frozen = json.dumps([gt, dts], sort_keys=True)
    ours = _ours(gt, dts, workers)
    np.testing.assert_allclose(ours.stats, ref.stats, rtol=0, atol=1e-12)
    assert json.dumps([gt, dts], sort_keys=True) == frozen  # inputs left unchanged


def test_the_large_input_path_takes_the_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path taken from SHARD_MIN_DETECTIONS on, at a threshold this input passes."""
    gt, dts = _duplicate_ann_ids(*copy.deepcopy(_pair()))
    shards: list[list[list[int]]] = []
    original = sharded._shards
    monkeypatch.setattr(sharded, "SHARD_MIN_DETECTIONS", 10)
    monkeypatch.setattr(sharded, "_cores", lambda: 2)
    monkeypatch.setattr(sharded, "_shards", lambda *a: shards.append(original(*a)) or
                        shards[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        ours = evaluate_coco(gt, dts)
    assert len(shards) == 1 and len(shards[0]) == 2
    np.testing.assert_allclose(ours.stats, pycocotools_eval(gt, dts).stats, rtol=0, atol=1e-12)


def test_quirks_are_warned_and_noted() -> None:
    gt, dts = _ann_id_zero(*_duplicate_ann_ids(*copy.deepcopy(_pair())))
    with pytest.warns(EvaluationWarning) as record:
        res = evaluate_coco(gt, dts)
    text = " ".join(str(w.message) for w in record)
    assert "id 0" in text and "repeat the id" in text
    assert len(res.notes) == 2 and res.to_dict()["notes"] == list(res.notes)


def test_duplicate_category_names_keep_every_class() -> None:
    gt, dts = copy.deepcopy(_pair())
    gt["categories"][2]["name"] = gt["categories"][1]["name"]  # "class_1" twice, ids 3 and 5
    with pytest.warns(EvaluationWarning, match="share the names"):
        res = evaluate_coco(gt, dts)
    assert res.class_names == ("class_0", "class_1 (id 3)", "class_1 (id 5)", "class_3")
    assert len(res.per_class) == 4 and res.pr_curves.shape[0] == 4
    ref = pycocotools_eval(gt, dts).eval["precision"]
    p = ref[:, :, 2, 0, -1]
    assert res.per_class["class_1 (id 5)"].ap == pytest.approx(p[p > -1].mean(), abs=1e-12)


def test_detections_of_unlisted_categories_are_ignored_and_counted() -> None:
    """An 80-class results file against a person-only ground truth."""
    gt, _ = copy.deepcopy(make_coco_pair(2, images=12, classes=1))
    rng = np.random.default_rng(0)
    dts = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"],
            "score": float(rng.uniform(0.3, 1))} for a in gt["annotations"]]
    extra = [{"image_id": 1, "category_id": int(c), "bbox": [1, 2, 30, 40], "score": 0.9}
             for c in range(2, 81)]
    with pytest.warns(EvaluationWarning, match="79 detections .* ignored"):
        res = evaluate_coco(gt, dts + extra)
    assert res.ignored_detections == 79 and res.num_detections == len(dts) + 79
    np.testing.assert_allclose(res.stats, pycocotools_eval(gt, dts + extra).stats, atol=1e-12)


_GT = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
       "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                        "area": 25, "iscrowd": 0}]}
_DT = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}


def _with_ann(**change: Any) -> dict[str, Any]:
    return {**_GT, "annotations": [{**_GT["annotations"][0], **change}]}


@pytest.mark.parametrize(("gt", "dts", "match"), [
    ({**_GT, "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}, [_DT],
     r"share id 1 with different names \('a', 'b'\)"),
    (_with_ann(bbox=None), [_DT], r"bbox None; expected \[x, y, w, h\]"),
    (_with_ann(bbox=["0", "0", "5", "5"]), [_DT], "bbox.*four finite numbers"),
    (_GT, [{**_DT, "bbox": ["0", "0", "5", "5"]}], "bbox .* not strings"),
    (_GT, [{**_DT, "score": "0.5"}], "score '0.5' is not a number"),
    ({**_GT, "images": [{"id": 1}, {"id": "2"}]}, [_DT], "mixes integer and string ids"),
    ({**_GT, "images": [{"id": 2**64}]}, [_DT], "64-bit range"),
], ids=["category-id-with-two-names", "gt-bbox-null", "gt-bbox-strings", "dt-bbox-strings",
        "dt-score-string", "mixed-id-types", "id-beyond-64-bit"])
def test_unscorable_input_is_one_line_error(tmp_path: Path, gt: dict[str, Any],
                                            dts: list[Any], match: str) -> None:
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dts))
    with pytest.raises(DatasetError, match=match):
        evaluate_coco(copy.deepcopy(gt), copy.deepcopy(dts))
    from detforge.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--predictions", str(tmp_path / "dt.json"),
                                      "--gt", str(tmp_path / "gt.json")])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("DatasetError: ") and "Traceback" not in result.output


def test_cli_scores_foreign_categories_and_prints_the_note(tmp_path: Path) -> None:
    from detforge.cli import app

    gt, _ = make_coco_pair(2, images=6, classes=1)
    dts = [{"image_id": a["image_id"], "category_id": c, "bbox": a["bbox"], "score": 0.9}
           for a in gt["annotations"] for c in (1, 17)]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dts))
    out = CliRunner().invoke(app, ["evaluate", "--predictions", str(tmp_path / "dt.json"),
                                   "--gt", str(tmp_path / "gt.json"), "--json",
                                   str(tmp_path / "m.json")])
    assert out.exit_code == 0, out.output
    n = len(gt["annotations"])
    assert f"note (dt.json): {n} detections are in categories" in out.stderr
    assert json.loads((tmp_path / "m.json").read_text())["ignored_detections"] == n
