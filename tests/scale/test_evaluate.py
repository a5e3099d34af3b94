"""``evaluate --ray``: category shards as Ray tasks give the numbers of one process."""

from __future__ import annotations

import json
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.evaluate import evaluate_files
from detforge.scale.evaluate import evaluation_on_cluster


def _coco(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480}
              for i in range(1, 201)]
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 5, 8, 13)]
    gt, dt = [], []
    for im in images:
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 500), rng.uniform(0, 350)
            w, h = rng.uniform(4, 160, 2)
            cat = int(rng.choice([1, 2, 3, 5, 8, 13]))
            gt.append({"id": len(gt) + 1, "image_id": im["id"], "category_id": cat,
                       "bbox": [x, y, w, h], "area": w * h,
                       "iscrowd": int(rng.random() < 0.05)})
            for _ in range(int(rng.integers(0, 3))):
                dt.append({"image_id": im["id"], "score": float(rng.random()),
                           "category_id": cat if rng.random() < 0.8 else 5,
                           "bbox": [x + rng.normal(0, 8), y + rng.normal(0, 8),
                                    w * rng.uniform(0.7, 1.3), h * rng.uniform(0.7, 1.3)]})
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "categories": cats,
                                                  "annotations": gt}))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    return tmp_path / "dt.json", tmp_path / "gt.json"


def test_evaluation_on_ray_equals_one_process(ray_cluster: object, tmp_path: Path) -> None:
    dt, gt = _coco(tmp_path)
    local = evaluate_files(dt, gt)
    with evaluation_on_cluster("local", workers=4):
        sharded = evaluate_files(dt, gt)
    assert sharded.stats == local.stats
    assert np.array_equal(sharded.pr_curves, local.pr_curves)
    # per-class means of the joined arrays may differ in the last bit (summation order),
    # as with the forked shards
    for name, metrics in local.per_class.items():
        assert astuple(sharded.per_class[name]) == pytest.approx(astuple(metrics), rel=1e-12)


def test_cli_evaluate_ray(ray_cluster: object, tmp_path: Path) -> None:
    dt, gt = _coco(tmp_path)
    runner = CliRunner()
    plain = runner.invoke(app, ["evaluate", "--predictions", str(dt), "--gt", str(gt)])
    on_ray = runner.invoke(app, ["evaluate", "--ray", "--predictions", str(dt), "--gt",
                                 str(gt)])
    assert plain.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    assert on_ray.output == plain.output
