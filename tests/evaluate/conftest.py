"""Synthetic COCO ground truth / detection pairs and a pycocotools reference."""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
import pytest


def make_coco_pair(seed: int = 0, *, images: int = 60, classes: int = 4,
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """GT with crowd boxes, small/medium/large boxes, empty images; detections with
    jittered true positives, duplicates, false positives, misclassifications and
    detections on images without ground truth."""
    rng = np.random.default_rng(seed)
    imgs = [{"id": i + 1, "file_name": f"img_{i:04d}.jpg", "width": 640, "height": 480}
            for i in range(images)]
    cats = [{"id": c * 2 + 1, "name": f"class_{c}"} for c in range(classes)]  # ids 1,3,5..
    anns: list[dict[str, Any]] = []
    dts: list[dict[str, Any]] = []
    for im in imgs:
        n = 0 if im["id"] % 7 == 0 else int(rng.integers(1, 12))
        for _ in range(n):
            side = float(rng.choice([rng.uniform(8, 30), rng.uniform(35, 90),
                                     rng.uniform(100, 300)]))
            w, h = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            cat = cats[int(rng.integers(classes))]["id"]
            crowd = int(rng.random() < 0.08)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": cat,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd})
            if rng.random() < 0.85:
                for _dup in range(1 + int(rng.random() < 0.25)):
                    j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                    dcat = cat if rng.random() < 0.9 else cats[int(rng.integers(classes))]["id"]
                    dts.append({"image_id": im["id"], "category_id": dcat,
                                "bbox": [x + j[0], y + j[1], max(w + j[2], 1.0),
                                         max(h + j[3], 1.0)],
                                "score": float(rng.uniform(0.05, 1.0))})
        for _ in range(int(rng.integers(0, 4))):  # false positives, also on empty images
            w, h = rng.uniform(5, 200, 2)
            dts.append({"image_id": im["id"], "category_id": cats[int(rng.integers(classes))]["id"],
                        "bbox": [rng.uniform(0, 400), rng.uniform(0, 300), w, h],
                        "score": float(rng.uniform(0.0, 0.6))})
    gt = {"images": imgs, "annotations": anns, "categories": cats}
    return gt, dts


def pycocotools_eval(gt: dict[str, Any], dts: list[dict[str, Any]]) -> Any:
    """pycocotools COCOeval after evaluate/accumulate/summarize (quietly)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dts)) if dts else COCO()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.fixture(scope="module")
def coco_pair() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return make_coco_pair(0)
