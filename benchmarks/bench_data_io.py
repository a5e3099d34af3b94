"""Dataset I/O at COCO scale: read COCO, validate annotations, write YOLO labels.

Generates a COCO-size annotation JSON (default 120k images, ~900k boxes, 80 categories
with COCO's non-contiguous ids, no image files) and times, each stage group in a fresh
process so peak RSS (``ru_maxrss``) belongs to that group alone:

* detforge: ``coco.read`` -> ``validate(check_images=False)`` (when
  ``detforge.data.validate`` exists) -> ``yolo.write(copy_images=False)``;
* the floor of writing labels on this file system: creating one small file per image
  with bare ``os.open``/``os.write`` (not counted in the total);
* supervision: ``sv.DetectionDataset.from_coco`` on the same file. It does not open the
  images (it only resolves their paths), so an empty images folder is enough.

Run:  .venv/bin/python benchmarks/bench_data_io.py [--images 120000 --boxes 900000]
Writes benchmarks/results/data_io.json and prints a table.
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

RESULTS = Path(__file__).resolve().parent / "results" / "data_io.json"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def generate(path: Path, n_images: int, n_boxes: int, seed: int = 0) -> None:
    """Write a synthetic COCO detection JSON with ``n_images`` and ``n_boxes``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cat_ids = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
    w = rng.integers(200, 1280, n_images)
    h = rng.integers(200, 1280, n_images)
    images = [{"id": int(i) + 1, "file_name": f"{i:012d}.jpg", "width": int(a),
               "height": int(b)} for i, a, b in zip(range(n_images), w, h, strict=True)]
    img = rng.integers(0, n_images, n_boxes)
    x = rng.uniform(0, 1, (n_boxes, 2)) * np.stack([w[img], h[img]], 1) * 0.8
    s = rng.uniform(2, 150, (n_boxes, 2))
    cats = rng.choice(cat_ids, n_boxes)
    crowd = rng.random(n_boxes) < 0.01
    anns = [{"id": k + 1, "image_id": int(i) + 1, "category_id": int(c),
             "bbox": [round(a, 2), round(b, 2), round(c2, 2), round(d, 2)],
             "area": round(c2 * d, 2), "iscrowd": int(cr), "segmentation": []}
            for k, (i, c, (a, b), (c2, d), cr) in enumerate(zip(
                img.tolist(), cats.tolist(), x.tolist(), s.tolist(), crowd.tolist(),
                strict=True))]
    categories = [{"id": c, "name": f"class_{c}", "supercategory": "thing"} for c in cat_ids]
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": categories}))


class _Timer:
    """Wall and CPU seconds of a block (CPU time is less distorted by a busy machine)."""

    def __enter__(self) -> _Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def run_detforge(json_path: Path, work: Path) -> dict[str, Any]:
    """Read COCO, validate annotations, write YOLO labels; seconds per stage and peak RSS."""
    import json as json_mod

    from detforge.data.formats import WriteOptions, coco, yolo

    out: dict[str, Any] = {}
    with _Timer() as t, open(json_path, "rb") as fh:  # the floor: parsing the JSON alone
        json_mod.load(fh)
    out["json_load_s"], out["json_load_cpu_s"] = t.wall, t.cpu
    with _Timer() as t:
        ds = coco.read(json_path)
    out["read_coco_s"], out["read_coco_cpu_s"] = t.wall, t.cpu
    out["images"], out["boxes"] = ds.num_images, ds.num_boxes
    try:
        from detforge.data.validate import validate
    except ImportError:
        out["validate_s"] = None
    else:
        with _Timer() as t:
            report = validate(ds, check_images=False)
        out["validate_s"], out["validate_cpu_s"] = t.wall, t.cpu
        out["findings"] = len(report.findings)
    with _Timer() as t:  # the file has crowd regions and rounded areas: a counted loss
        yolo.write(ds, work / "yolo", copy_images=False,
                   options=WriteOptions.lossy(val_split="train"))
    out["write_yolo_s"], out["write_yolo_cpu_s"] = t.wall, t.cpu
    out["create_files_s"], out["create_files_cpu_s"] = _create_files_floor(work,
                                                                            work / "yolo")
    out["total_s"] = out["read_coco_s"] + (out["validate_s"] or 0) + out["write_yolo_s"]
    out["peak_rss_mb"] = _rss_mb()
    return out


def _create_files_floor(work: Path, written: Path) -> tuple[float, float]:
    """Seconds to create the label files the writer made, same folders and names, with bare
    syscalls and a fixed payload: the floor of any label writer on this file system."""
    labels = written / "labels"
    names = sorted(str(p.relative_to(labels)) for p in labels.rglob("*.txt"))
    floor = work / "floor"
    for folder in sorted({str(Path(n).parent) for n in names}):
        (floor / folder).mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    with _Timer() as t:
        for name in names:
            fd = os.open(floor / name, flags, 0o644)
            os.write(fd, b"0 0.5 0.5 0.1 0.1\n")
            os.close(fd)
    return t.wall, t.cpu


def run_supervision(json_path: Path, work: Path) -> dict[str, Any]:
    """``sv.DetectionDataset.from_coco`` on the same file (empty images folder)."""
    import supervision as sv

    images = work / "sv_images"
    images.mkdir(exist_ok=True)
    with _Timer() as t:
        ds = sv.DetectionDataset.from_coco(images_directory_path=str(images),
                                           annotations_path=str(json_path))
    out = {"read_coco_s": t.wall, "read_coco_cpu_s": t.cpu, "images": len(ds),
           "boxes": sum(len(d) for d in ds.annotations.values()),
           "peak_rss_mb": _rss_mb(), "version": sv.__version__}
    return out


def _child(stage: str, json_path: Path, work: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--stage", stage, "--json", str(json_path),
                           "--work", str(work)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


def _pair(r: dict[str, Any], key: str) -> str:
    wall, cpu = r.get(f"{key}_s"), r.get(f"{key}_cpu_s")
    return "-" if wall is None else f"{wall:.1f} ({cpu:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=120_000)
    ap.add_argument("--boxes", type=int, default=900_000)
    ap.add_argument("--stage", choices=["generate", "detforge", "supervision"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--tmp", type=Path, default=None,
                    help="parent of the scratch folder (default: the system temp dir)")
    args = ap.parse_args()
    if args.stage == "generate":
        generate(args.json, args.images, args.boxes)
        print(json.dumps({"peak_rss_mb": _rss_mb()}))
        return
    if args.stage:
        fn = run_detforge if args.stage == "detforge" else run_supervision
        print(json.dumps(fn(args.json, args.work)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_data_io.", dir=args.tmp) as tmp:
        work = Path(tmp)
        json_path = work / "instances.json"
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--stage", "generate", "--json",
                        str(json_path), "--images", str(args.images), "--boxes",
                        str(args.boxes)], check=True, capture_output=True)
        gen_s = time.perf_counter() - t
        det = _child("detforge", json_path, work)
        sv = _child("supervision", json_path, work)
        size_mb = json_path.stat().st_size / 2**20
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
        result = {"date": time.strftime("%Y-%m-%d"), "machine": machine,
                  "python": platform.python_version(),
                  "images": args.images, "boxes": args.boxes, "json_mb": round(size_mb, 1),
                  "generate_s": round(gen_s, 2), "detforge": det, "supervision": sv}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"COCO JSON: {args.images} images, {args.boxes} boxes, {size_mb:.0f} MB "
              f"(generated in {gen_s:.1f} s)")
        print("wall seconds (CPU seconds)")
        print(f"{'tool':<12} {'json.load':>13} {'read COCO':>13} {'validate':>13} "
              f"{'write YOLO':>13} {'create files':>13} {'total':>7} {'peak RSS MB':>12}")
        for name, r in (("detforge", det), ("supervision", sv)):
            if "error" in r:
                print(f"{name:<12} error: {r['error']}")
                continue
            cells = [_pair(r, k) for k in ("json_load", "read_coco", "validate", "write_yolo",
                                           "create_files")]
            print(f"{name:<12} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13} {cells[3]:>13} "
                  f"{cells[4]:>13} "
                  f"{_fmt(r.get('total_s')):>7} {_fmt(r.get('peak_rss_mb')):>12}")
        print(f"results: {args.out} (removing the scratch folder...)", flush=True)


if __name__ == "__main__":
    main()
