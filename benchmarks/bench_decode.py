"""Decode + letterbox per image: full JPEG decode vs ``--fast-decode`` (reduced-scale decode).

For each (photo size, model input) pair, writes seeded smooth JPEGs (quality 90, like a
camera's), then times, alternating the two methods image by image, one thread:

- ``full``: ``decode_image`` (OpenCV full decode) + ``letterbox`` (what ``detforge predict``
  and Ultralytics do);
- ``fast``: ``decode_reduced`` (1/2, 1/4 or 1/8 scale decode picked by ``reduction_for``) +
  ``letterbox``.

It also reports how far the two letterboxed inputs differ (mean and 99th percentile of the
absolute pixel difference, 0-255).

Usage::

    .venv/bin/python benchmarks/bench_decode.py --json benchmarks/results/decode.json

Prints a table and writes the JSON. Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

CASES = [((480, 640), (320, 320)), ((1080, 1920), (640, 640)), ((1080, 1920), (384, 640)),
         ((3000, 4000), (640, 640))]


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth, textured RGB picture (gradients, soft blobs, fine stripes, mild noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 200
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.03, 0.2)
        d = np.hypot(y - cy, x - cx) / (r * max(height, width))
        img[..., rng.integers(3)] += rng.uniform(60, 160) * np.exp(-d * d)
    img += 20 * np.sin(x / 3.0)[..., None] * (y > height / 2)[..., None]
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def measure(hw: tuple[int, int], size: tuple[int, int], images: int,
            folder: Path) -> dict[str, Any]:
    import cv2

    from detforge.runtime.preprocess import letterbox
    from detforge.runtime.reduced_decode import decode_reduced, reduction_for
    from detforge.runtime.sources import decode_image

    files = []
    for i in range(images):
        path = folder / f"{hw[0]}x{hw[1]}_{i}.jpg"
        cv2.imwrite(str(path), photo(*hw, seed=i)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        files.append(path)
    times: dict[str, list[float]] = {"full": [], "fast": []}
    diffs, p99s = [], []
    for _ in range(2):  # the first pass warms the page cache and OpenCV
        for path in files:
            t0 = time.perf_counter()
            full, _ = letterbox(decode_image(path), size)
            t1 = time.perf_counter()
            reduced, _ = decode_reduced(path, size)
            fast, _ = letterbox(reduced, size)
            t2 = time.perf_counter()
            times["full"].append(t1 - t0)
            times["fast"].append(t2 - t1)
            diff = np.abs(full.astype(np.int16) - fast.astype(np.int16))
            diffs.append(float(diff.mean()))
            p99s.append(float(np.percentile(diff, 99)))
    half = len(files)
    full_ms = 1000 * statistics.median(times["full"][half:])
    fast_ms = 1000 * statistics.median(times["fast"][half:])
    return {"image_hw": list(hw), "input_hw": list(size), "factor": reduction_for(hw, size),
            "full_ms": round(full_ms, 2), "fast_ms": round(fast_ms, 2),
            "speedup": round(full_ms / fast_ms, 2),
            "mean_abs_diff": round(statistics.mean(diffs), 2),
            "p99_abs_diff": round(statistics.mean(p99s), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="JPEGs per photo size")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/decode.json"))
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="detforge-bench-decode-") as tmp:
        for hw, size in CASES:
            rows.append(measure(hw, size, args.images, Path(tmp)))
            r = rows[-1]
            print(f"{hw[1]}x{hw[0]} -> {size[1]}x{size[0]}: 1/{r['factor']} "
                  f"full {r['full_ms']:.2f} ms, fast {r['fast_ms']:.2f} ms "
                  f"({r['speedup']:.2f}x), |diff| mean {r['mean_abs_diff']:.2f} "
                  f"p99 {r['p99_abs_diff']:.1f}", flush=True)
    print("\n| photo | input | scale | full decode + letterbox (ms) | --fast-decode (ms) "
          "| speed-up | mean abs diff | p99 abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['image_hw'][1]}x{r['image_hw'][0]} | {r['input_hw'][1]}x{r['input_hw'][0]}"
              f" | 1/{r['factor']} | {r['full_ms']:.2f} | {r['fast_ms']:.2f} | "
              f"{r['speedup']:.2f}x | {r['mean_abs_diff']:.2f} | {r['p99_abs_diff']:.1f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "date": date.today().isoformat(), "machine": {
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_avg": os.getloadavg(), "opencv": cv2.__version__},
        "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
