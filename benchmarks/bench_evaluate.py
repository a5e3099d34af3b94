"""Benchmark: ``detforge evaluate --predictions --gt`` vs a pycocotools script.

Both run as whole processes (interpreter start, JSON load, evaluation, output) on the same
synthetic COCO pair, side by side in one run; the stats of both are checked to agree to
1e-6. detforge's run also computes per-class AP, P/R/F1, F1 curves, the confusion matrix
and the worst images, and writes its JSON.

Usage::

    .venv/bin/python benchmarks/bench_evaluate.py                 # 5,000 images, 500,000 dets
    .venv/bin/python benchmarks/bench_evaluate.py --images 500    # quick check

Writes ``benchmarks/results/evaluate.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

PYCOCOTOOLS_SCRIPT = """
import json, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
ev = COCOeval(gt, dt, "bbox")
ev.evaluate()
ev.accumulate()
ev.summarize()
json.dump({"stats": [float(s) for s in ev.stats]}, open(sys.argv[3], "w"))
"""


def make_pair(images: int, dets_per_image: int, classes: int, seed: int,
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO GT (about 7 objects per image, all sizes, 3% crowd) and exactly
    ``images * dets_per_image`` detections (jittered GT copies plus false positives)."""
    rng = np.random.default_rng(seed)
    imgs = [{"id": i + 1, "file_name": f"{i:06d}.jpg", "width": 640, "height": 480}
            for i in range(images)]
    cats = [{"id": c + 1, "name": f"c{c}"} for c in range(classes)]
    anns: list[dict[str, Any]] = []
    dts: list[dict[str, Any]] = []
    for im in imgs:
        n = int(rng.poisson(7))
        side = np.exp(rng.uniform(np.log(8), np.log(300), n))
        wh = side[:, None] * rng.uniform(0.6, 1.4, (n, 2))
        wh = np.minimum(wh, [639, 479])
        xy = rng.uniform(0, 1, (n, 2)) * ([640, 480] - wh)
        cls = rng.integers(1, classes + 1, n)
        crowd = rng.random(n) < 0.03
        for j in range(n):
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": int(cls[j]),
                         "bbox": [*xy[j].tolist(), *wh[j].tolist()],
                         "area": float(wh[j, 0] * wh[j, 1]), "iscrowd": int(crowd[j])})
        copies = min(n * 3, dets_per_image)
        src = rng.integers(0, max(n, 1), copies)
        m = dets_per_image
        box = np.empty((m, 4))
        cat = rng.integers(1, classes + 1, m)
        box[:, :2] = rng.uniform(0, 500, (m, 2))
        box[:, 2:] = rng.uniform(4, 200, (m, 2))
        score = rng.uniform(0, 0.6, m)
        if n:
            jitter = rng.normal(0, 0.1, (copies, 4)) * np.tile(wh[src], 2)
            box[:copies, :2] = xy[src] + jitter[:, :2]
            box[:copies, 2:] = np.maximum(wh[src] + jitter[:, 2:], 1)
            cat[:copies] = np.where(rng.random(copies) < 0.9, cls[src], cat[:copies])
            score[:copies] = rng.uniform(0.2, 1.0, copies)
        dts.extend({"image_id": im["id"], "category_id": int(c), "bbox": b, "score": s}
                   for b, c, s in zip(box.tolist(), cat.tolist(), score.tolist(),
                                      strict=True))
    return {"images": imgs, "annotations": anns, "categories": cats}, dts


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "MPLBACKEND": "Agg"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets-per-image", type=int, default=100)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "evaluate.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        gt, dts = make_pair(args.images, args.dets_per_image, args.classes, args.seed)
        (d / "gt.json").write_text(json.dumps(gt))
        (d / "dt.json").write_text(json.dumps(dts))
        (d / "ref.py").write_text(PYCOCOTOOLS_SCRIPT)
        detforge = [sys.executable, "-c", "from detforge.cli import main; main()",
                    "evaluate", "--predictions", str(d / "dt.json"), "--gt", str(d / "gt.json"),
                    "--json", str(d / "ours.json")]
        reference = [sys.executable, str(d / "ref.py"), str(d / "gt.json"), str(d / "dt.json"),
                     str(d / "ref.json")]
        t_ours, c_ours = _timed(detforge)
        t_ref, c_ref = _timed(reference)
        ours = json.loads((d / "ours.json").read_text())["stats"]
        ref = json.loads((d / "ref.json").read_text())["stats"]
    diff = float(np.max(np.abs(np.array(ours) - np.array(ref))))
    result = {
        "benchmark": "detforge evaluate --predictions --gt vs pycocotools (whole processes)",
        "command": "python benchmarks/bench_evaluate.py " + " ".join(sys.argv[1:]),
        "images": args.images, "detections": len(dts), "gt_boxes": len(gt["annotations"]),
        "classes": args.classes, "detforge_wall_s": round(t_ours, 2),
        "pycocotools_wall_s": round(t_ref, 2), "speedup_wall": round(t_ref / t_ours, 2),
        "detforge_cpu_s": round(c_ours, 2), "pycocotools_cpu_s": round(c_ref, 2),
        "speedup_cpu": round(c_ref / c_ours, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "max_abs_stat_diff": diff, "stats": ours,
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, Python "
                   f"{platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"{'tool':<34}{'wall s':>10}{'CPU s':>10}")
    print(f"{'detforge evaluate':<34}{t_ours:>10.2f}{c_ours:>10.2f}")
    print(f"{'pycocotools (loadRes..summarize)':<34}{t_ref:>10.2f}{c_ref:>10.2f}")
    print(f"speed-up {t_ref / t_ours:.1f}x wall, {c_ref / c_ours:.1f}x CPU on {args.images} "
          f"images, {len(dts)} detections, "
          f"{len(gt['annotations'])} GT boxes; max |stat diff| {diff:.1e}")
    if diff > 1e-6:
        raise SystemExit(f"stats differ from pycocotools by {diff}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
