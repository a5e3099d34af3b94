"""COCO metrics against pycocotools (run in the same test), per class, PR curves."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest

from detforge.evaluate import STAT_NAMES, evaluate_coco, evaluate_files
from detforge.evaluate.operating import match_coco

from .conftest import make_coco_pair, pycocotools_eval

TOL = 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_stats_match_pycocotools(seed: int) -> None:
    gt, dts = make_coco_pair(seed)
    ours = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(dts))
    ref = pycocotools_eval(gt, dts)
    assert len(ours.stats) == len(STAT_NAMES) == 12
    np.testing.assert_allclose(ours.stats, ref.stats, rtol=0, atol=TOL)
    precision = ref.eval["precision"]  # [T, R, K, A, M]
    for k, name in enumerate(ours.class_names):
        for attr, sl in (("ap", slice(None)), ("ap50", slice(0, 1)), ("ap75", slice(5, 6))):
            p = precision[sl, :, k, 0, -1]
            expected = p[p > -1].mean() if (p > -1).any() else -1.0
            assert getattr(ours.per_class[name], attr) == pytest.approx(expected, abs=TOL)
        np.testing.assert_allclose(ours.pr_curves[k], np.clip(precision[0, :, k, 0, -1], 0, None),
                                   atol=TOL)


def test_fixture_covers_the_hard_cases(coco_pair: tuple[dict[str, Any], list[Any]]) -> None:
    gt, dts = coco_pair
    anns = gt["annotations"]
    areas = np.array([a["area"] for a in anns])
    assert any(a["iscrowd"] for a in anns)
    assert (areas < 32**2).any() and ((areas > 32**2) & (areas < 96**2)).any() \
        and (areas > 96**2).any()
    empty = {im["id"] for im in gt["images"]} - {a["image_id"] for a in anns}
    assert empty and any(d["image_id"] in empty for d in dts)


@pytest.mark.parametrize("seed", [0, 3], ids=["seed0", "seed3"])
def test_matching_equals_pycocotools_eval_imgs(seed: int) -> None:
    """Our IoU-0.5 greedy matching equals pycocotools evaluateImg (area all, 100 dets)."""
    gt, dts = make_coco_pair(seed)
    ours = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(dts))
    ref = pycocotools_eval(gt, dts)
    status: dict[int, int] = {}  # pycocotools det id (1-based file order) -> status
    n_area, n_img = len(ref.params.areaRng), len(ref.params.imgIds)
    for k in range(len(ref.params.catIds)):  # evalImgs order: category, area, image
        block = ref.evalImgs[k * n_area * n_img:(k * n_area + 1) * n_img]  # area "all"
        for e in block:
            if e is None:
                continue
            for did, m, ign in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0],
                                   strict=True):
                status[did] = -1 if ign else int(m > 0)
    from detforge.evaluate.coco_input import check_gt, check_results

    checked = check_gt(gt)
    got = match_coco(check_results(dts, checked).boxes, checked.boxes, len(checked.cat_ids))
    expected = np.array([status.get(i + 1, -1) for i in range(len(dts))])
    np.testing.assert_array_equal(got.status, expected)
    assert ours.num_detections == len(dts)


def test_bccd_matches_pycocotools(bccd_path: Any) -> None:
    """Real VOC labels; predictions derived from GT by jitter, drops and extra boxes."""
    from detforge.data.formats import read_dataset
    from detforge.evaluate import evaluate_predictions
    from detforge.evaluate.coco import dataset_to_coco

    ds = read_dataset(bccd_path)
    gt = dataset_to_coco(ds).coco
    rng = np.random.default_rng(7)
    dts: list[dict[str, Any]] = []
    for ann in gt["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = ann["bbox"]
        j = rng.normal(0, 0.07, 4) * [w, h, w, h]
        cat = ann["category_id"] if rng.random() < 0.93 else int(rng.integers(1, 4))
        dts.append({"image_id": ann["image_id"], "category_id": cat,
                    "bbox": [x + j[0], y + j[1], max(w + j[2], 1), max(h + j[3], 1)],
                    "score": float(rng.uniform(0.1, 1))})
    for im in gt["images"]:
        for _ in range(int(rng.integers(0, 3))):
            dts.append({"image_id": im["id"], "category_id": int(rng.integers(1, 4)),
                        "bbox": [*rng.uniform(0, 400, 2).tolist(), *rng.uniform(10, 150, 2)
                                 .tolist()], "score": float(rng.uniform(0, 0.7))})
    ours = evaluate_predictions(ds, copy.deepcopy(dts))
    ref = pycocotools_eval(gt, dts)
    np.testing.assert_allclose(ours.stats, ref.stats, rtol=0, atol=TOL)
    assert ours.class_names == ("Platelets", "RBC", "WBC")
    assert sum(m.support for m in ours.per_class.values()) == ds.num_boxes


def test_no_detections_gives_zero_ap(coco_pair: tuple[dict[str, Any], list[Any]]) -> None:
    gt, _ = coco_pair
    res = evaluate_coco(copy.deepcopy(gt), [])
    assert res.stats[0] == 0.0 and res.stats[8] == 0.0
    assert all(m.recall == 0.0 and m.detections == 0 for m in res.per_class.values())


def test_evaluate_files_and_to_dict(tmp_path: Any,
                                    coco_pair: tuple[dict[str, Any], list[Any]]) -> None:
    import json

    gt, dts = coco_pair
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dts))
    res = evaluate_files(tmp_path / "dt.json", tmp_path / "gt.json")
    ref = pycocotools_eval(gt, dts)
    np.testing.assert_allclose(res.stats, ref.stats, rtol=0, atol=TOL)
    d = json.loads(json.dumps(res.to_dict()))
    assert len(d["stats"]) == 12 and set(d["per_class"]) == set(res.class_names)
    assert set(d["per_class"]["class_0"]) >= {"ap", "ap50", "ap75", "precision", "recall",
                                              "f1", "support"}
    assert len(d["confusion_matrix"]["matrix"]) == len(res.class_names) + 1


@pytest.mark.parametrize("workers", [2, 3], ids=["2workers", "3workers"])
def test_category_shards_equal_one_process(workers: int) -> None:
    gt, dts = make_coco_pair(1)
    one = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(dts), workers=1)
    many = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(dts), workers=workers)
    assert many.stats == one.stats
    np.testing.assert_array_equal(many.pr_curves, one.pr_curves)
    for name, metrics in one.per_class.items():  # sums over another memory layout: 1 ulp
        assert dataclasses.astuple(many.per_class[name]) == pytest.approx(
            dataclasses.astuple(metrics), rel=0, abs=1e-12)
    np.testing.assert_allclose(many.stats, pycocotools_eval(gt, dts).stats, rtol=0, atol=TOL)
