"""Duplicate-box detection: the grid/sort algorithm against the previous x-sorted sweep.

Cases (same image and class unless said):

* ``coco``: 900,000 boxes over 120,000 images and 80 classes, random (ordinary data);
* ``identical``: 8,000 identical boxes (the fuzzed COCO file of issue 18: 51 s, 2 GB);
* ``jittered``: 8,000 near-identical boxes (corners jittered by < 0.05 px);
* ``column``: 8,000 boxes stacked in one column (same x, no duplicates).

Each (case, algorithm) runs in a fresh process (peak RSS is its own) with a CPU limit;
the previous algorithm is kept here, as it was, for the comparison.

Run:  .venv/bin/python benchmarks/bench_duplicates.py [--cpu-limit 120]
Writes benchmarks/results/duplicates.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

RESULTS = Path(__file__).resolve().parent / "results" / "duplicates.json"
CASES = ("coco", "identical", "jittered", "column")


def make_case(name: str) -> tuple[NDArray[Any], NDArray[Any], NDArray[np.float64]]:
    rng = np.random.default_rng(0)
    if name == "coco":
        n = 900_000
        corner = rng.uniform(0, 1000, (n, 2))
        xyxy = np.concatenate([corner, corner + rng.uniform(2, 150, (n, 2))], 1)
        return rng.integers(0, 120_000, n), rng.integers(0, 80, n), xyxy
    n = 8000
    if name == "identical":
        xyxy = np.tile([10.0, 10, 50, 50], (n, 1))
    elif name == "jittered":
        xyxy = np.tile([10.0, 10, 50, 50], (n, 1)) + rng.uniform(0, 0.05, (n, 4))
    else:
        y = np.arange(n) * 10.0
        xyxy = np.column_stack([np.full(n, 5.0), y, np.full(n, 50.0), y + 8])
    return np.zeros(n, int), np.zeros(n, int), xyxy


def _pair_iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
             + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def sweep_pairs(image_index: NDArray[Any], class_id: NDArray[Any],
                xyxy: NDArray[np.float64], iou: float = 0.95) -> int:
    """The previous algorithm: sort by (image, class, x1), compare each box with the next
    ones whose x1 is within reach; every hit pair is kept. Returns the duplicate count."""
    m = len(image_index)
    order = np.lexsort((xyxy[:, 0], class_id, image_index))
    img, cls, boxes = image_index[order], class_id[order], xyxy[order]
    reach = (1.0 - iou) * (boxes[:, 2] - boxes[:, 0])
    seconds = []
    active = np.arange(m - 1)
    step = 1
    while active.size:
        other = active + step
        keep = other < m
        active, other = active[keep], other[keep]
        keep = ((img[other] == img[active]) & (cls[other] == cls[active])
                & (boxes[other, 0] - boxes[active, 0] < reach[active]))
        active, other = active[keep], other[keep]
        if active.size:
            hit = _pair_iou(boxes[active], boxes[other]) > iou
            seconds.append(np.maximum(order[active[hit]], order[other[hit]]))
        step += 1
    return len(np.unique(np.concatenate(seconds))) if seconds else 0


def run_one(case: str, algorithm: str) -> dict[str, Any]:
    """Time one algorithm on one case in this process."""
    from detforge.data.validate.box_duplicates import duplicate_pairs

    image, cls, xyxy = make_case(case)
    start = time.process_time()
    found = len(duplicate_pairs(image, cls, xyxy)[1]) if algorithm == "grid" else \
        sweep_pairs(image, cls, xyxy)
    return {"cpu_s": time.process_time() - start, "duplicates": found,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-limit", type=int, default=120,
                        help="CPU seconds before a run is stopped")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "ALGORITHM"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (args.cpu_limit, args.cpu_limit))

    rows = []
    for case in CASES:
        row: dict[str, Any] = {"case": case}
        for algorithm in ("sweep", "grid"):
            proc = subprocess.run([sys.executable, __file__, "--one", case, algorithm],
                                  capture_output=True, text=True, preexec_fn=limit,
                                  check=False)
            row[algorithm] = json.loads(proc.stdout) if proc.returncode == 0 else \
                {"cpu_s": None, "duplicates": None, "peak_mb": None,
                 "stopped": f"exit {proc.returncode} (CPU limit {args.cpu_limit} s)"}
        rows.append(row)

    print("| case | sweep CPU s | sweep peak MiB | grid CPU s | grid peak MiB | duplicates |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        s, g = r["sweep"], r["grid"]
        sweep = f"{s['cpu_s']:.3f}" if s["cpu_s"] is not None else f"> {args.cpu_limit}"
        speak = f"{s['peak_mb']:.0f}" if s["peak_mb"] is not None else "-"
        print(f"| {r['case']} | {sweep} | {speak} | {g['cpu_s']:.3f} | {g['peak_mb']:.0f} | "
              f"{g['duplicates']} |")
    out = {"date": date.today().isoformat(), "machine": platform.platform(),
           "cpus": os.cpu_count(), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
