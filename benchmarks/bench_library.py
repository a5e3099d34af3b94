"""Library index: files/s against a three-phase baseline, search latency, memory vs size.

Three measurements, each side by side in one run (the machine is shared; quote ratios):

1. **Throughput** on a generated library of ``--files`` mixed files (JPEG with EXIF, PNG,
   WebP, HEIC, DNG, MJPG videos) with a YOLO11n ONNX detector (seeded weights, 320x320):
   ``index_library`` (one decode per photo; EXIF, quality, pHash, thumbnail in the decode
   threads, overlapped with batched inference) against the *three-phase baseline* the seed
   system runs: a metadata pass over every file, then a quality pass (decode, measures,
   pHash, thumbnail), then an ML pass (decode again, batched detection through the same
   runtime pipeline). Each baseline pass gets the same threads and batch as the index.
2. **Search** over an index of ``--search-entries`` synthetic entries (written straight into
   the schema): p50 / p95 of a first page (100 results plus the total count) for a mix of
   filters and free-text queries.
3. **Peak RSS** (VmHWM of a fresh process) of ``index_library`` on 2,000 and 20,000 small
   files (tiny test detector), to show memory does not grow with the library.

Usage::

    .venv/bin/python benchmarks/bench_library.py --json benchmarks/results/library.json
    # photos at a phone camera's size instead of 640x480 / 960x720
    .venv/bin/python benchmarks/bench_library.py --skip search,memory --photo-size 4032x3024
    # search, side by side with the search code of another commit
    .venv/bin/python benchmarks/bench_library.py --skip throughput,memory --search-against REF

Prints tables and writes the JSON. Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np


def make_library(root: Path, n: int, *, seed: int = 0, small: bool = False,
                 photo_size: tuple[int, int] | None = None) -> int:
    """``n`` mixed files under ``root`` (reused when present); returns the file count.

    ``photo_size`` (width, height): photos at that size instead of 640x480 / 960x720, made
    by enlarging the 960x720 picture (smooth, so they decode faster than real photos of that
    size would: a conservative stand-in for a camera roll).
    """
    import cv2

    from detforge.library.synth import save_image, write_dng
    from detforge.testing import random_image, write_video

    stamp = root / ".complete"
    if stamp.exists():
        return int(stamp.read_text())
    shutil.rmtree(root, ignore_errors=True)
    cams = [("Apple", "iPhone 15 Pro"), ("Canon", "EOS R5"), ("Google", "Pixel 8")]
    count = 0
    for i in range(n):
        folder = root / f"{2015 + i % 10}" / f"{i // 200:03d}"
        make, model = cams[i % 3]
        when = f"{2015 + i % 10}:{1 + i % 12:02d}:{1 + i % 28:02d} 12:00:00"
        h, w = (120, 160) if small else ((480, 640) if i % 2 and not photo_size else (720, 960))
        img = random_image(h, w, seed=seed + i, shapes=8)
        if photo_size and i % 100 < 98:
            w, h = photo_size
            img = np.asarray(cv2.resize(img, photo_size, interpolation=cv2.INTER_LINEAR))
        kind = i % 100
        if small or kind < 80:
            save_image(folder / f"IMG_{i:05d}.jpg", img, "JPEG", quality=90, make=make,
                       model=model, date=when)
        elif kind < 90:
            save_image(folder / f"scan_{i:05d}.png", img[: h // 2, : w // 2], "PNG")
        elif kind < 95:
            save_image(folder / f"web_{i:05d}.webp", img, "WEBP", date=when, make=make,
                       model=model)
        elif kind < 98:
            save_image(folder / f"IMG_{i:05d}.heic", img[: h // 2, : w // 2], "HEIF",
                       date=when, make="Apple", model="iPhone 15")
        elif kind < 99:
            write_dng(folder / f"RAW_{i:05d}.dng", height=240, width=320, seed=i, date=when)
        else:
            frames = [random_image(120, 160, seed=i * 100 + k) for k in range(20)]
            write_video(folder / f"VID_{i:05d}.avi", frames, fps=10)
        count += 1
    stamp.write_text(str(count))
    return count


def make_model(cache: Path) -> Path:
    """YOLO11n (seeded random weights) exported to ONNX at 320x320 (reused)."""
    onnx = cache / "yolo11n_320.onnx"
    if onnx.is_file():
        return onnx
    from detforge.train.offline import offline_environment

    offline_environment(cache / "ultralytics-config")  # before Ultralytics is imported
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from detforge.export.onnx_export import export_onnx

    pt = cache / "yolo11n_nc80.pt"
    torch.manual_seed(0)
    net = DetectionModel("yolo11n.yaml", nc=80, verbose=False)  # type: ignore[no-untyped-call]
    net.names = {i: f"class{i}" for i in range(80)}
    torch.save({"model": net, "train_args": {}, "epoch": -1}, pt)
    export_onnx(pt, onnx, imgsz=(320, 320), layout="raw")
    return onnx


def run_index(root: Path, db: Path, model: Path, workers: int) -> dict[str, Any]:
    from detforge.library import index_library

    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    t0 = time.perf_counter()
    s = index_library(root, db=db, model=model, progress=False, workers=workers)
    wall = time.perf_counter() - t0
    return {"method": "index_library", "files": s.files, "wall_s": wall,
            "files_per_s": s.files / wall, "analysed": s.analysed}


def run_baseline(root: Path, db: Path, model: Path, workers: int) -> dict[str, Any]:
    """Metadata pass, then quality pass, then ML pass (each as parallel as the index)."""
    from detforge.core.detections import Detections
    from detforge.library.analyse import thumbnail_jpeg
    from detforge.library.decode import UndecodableError, decode_still
    from detforge.library.formats import kind_of
    from detforge.library.hashing import phash
    from detforge.library.meta import read_meta
    from detforge.library.quality import analysis_image, measure
    from detforge.library.video import probe_video, sample_frames
    from detforge.library.walk import walk
    from detforge.runtime import load_model
    from detforge.runtime.pipeline import run_pipeline
    from detforge.runtime.sinks import Prediction
    from detforge.runtime.sources import SourceItem, UnreadableError

    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE meta (path TEXT PRIMARY KEY, info TEXT)")
    con.execute("CREATE TABLE quality (path TEXT PRIMARY KEY, sharpness REAL, phash INTEGER, "
                "thumb BLOB)")
    con.execute("CREATE TABLE dets (path TEXT, frame INTEGER, n INTEGER)")
    files = [e for e in walk(root) if e.kind != "other"]
    times: dict[str, float] = {}

    def meta(entry: Any) -> tuple[str, str]:
        if entry.kind == "video":
            probed = probe_video(entry.path)
            return entry.path, json.dumps(None if probed is None else probed[0].fps)
        return entry.path, json.dumps(read_meta(Path(entry.path).read_bytes(),
                                                entry.kind).as_dict())

    def quality(entry: Any) -> tuple[str, float, int, bytes] | None:
        if entry.kind == "video":
            return None
        try:
            small = analysis_image(decode_still(Path(entry.path).read_bytes(), entry.kind,
                                                min_side=512).rgb)
        except UndecodableError:
            return None
        return entry.path, measure(small).sharpness, phash(small), thumbnail_jpeg(small)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(meta, files))
    con.executemany("INSERT INTO meta VALUES (?, ?)", rows)
    con.commit()
    times["meta"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        qrows = [r for r in pool.map(quality, files) if r is not None]
    con.executemany("INSERT INTO quality VALUES (?, ?, ?, ?)", qrows)
    con.commit()
    times["quality"] = time.perf_counter() - t0

    class Item(SourceItem):
        def load(self) -> Any:
            try:
                return decode_still(Path(self.source).read_bytes(), kind_of(self.source)).rgb
            except UndecodableError as exc:
                raise UnreadableError(str(exc)) from exc

    def items() -> Any:
        for e in files:
            if e.kind == "video":
                probed = probe_video(e.path)
                if probed is not None:
                    for index, bgr in sample_frames(e.path, probed[0]):
                        yield SourceItem(source=e.path, frame=index, bgr=bgr)
            else:
                yield Item(source=e.path)

    class Sink:
        needs_image = False

        def __init__(self) -> None:
            self.rows: list[tuple[str, int, int]] = []

        def write(self, pred: Prediction) -> None:
            d: Detections = pred.detections
            self.rows.append((pred.source, -1 if pred.frame is None else pred.frame, len(d)))

        def close(self) -> None:
            con.executemany("INSERT INTO dets VALUES (?, ?, ?)", self.rows)
            con.commit()

        def abort(self) -> None:
            self.rows.clear()

    t0 = time.perf_counter()
    with load_model(model, device="cpu") as m:
        run_pipeline(m, items(), [Sink()], workers=workers, progress=False)
    times["ml"] = time.perf_counter() - t0
    con.close()
    wall = sum(times.values())
    return {"method": "three-phase baseline", "files": len(files), "wall_s": wall,
            "files_per_s": len(files) / wall, "phases_s": times}


def build_search_index(db: Path, n: int, *, seed: int = 0) -> None:
    """``n`` synthetic entries written straight into the library schema (reused)."""
    from detforge.library.store import open_store

    if db.exists():
        return
    rng = random.Random(seed)
    con = open_store(db)
    labels = ["person", "dog", "cat", "car", "bicycle", "bird", "boat", "cup", "chair", "tv"]
    tags = ["beach", "forest", "city", "snow", "sunset", "indoors", "party", "food", "mountain",
            "street", "garden", "night"]
    cams = [("Apple", "iPhone 15 Pro"), ("Apple", "iPhone 12"), ("Canon", "EOS R5"),
            ("Sony", "ILCE-7M4"), ("Google", "Pixel 8"), (None, None)]
    con.execute("BEGIN")
    for i in range(n):
        h = f"{i:064x}"
        y, mo, d = 2010 + rng.randrange(15), 1 + rng.randrange(12), 1 + rng.randrange(28)
        taken = f"{y:04d}-{mo:02d}-{d:02d}T{rng.randrange(24):02d}:00:00"
        make, model = rng.choice(cams)
        kind = "video" if rng.random() < 0.05 else "image"
        sharpness = rng.lognormvariate(5, 1.2)
        con.execute("INSERT INTO contents (hash, kind, format, width, height, taken_at, "
                    "camera_make, camera_model, sharpness, brightness, dark_clip, bright_clip, "
                    "noise, phash, phases, analysed_at) VALUES (?, ?, 'jpg', 4000, 3000, ?, ?, "
                    "?, ?, 0.5, 0.01, 0.01, 2.0, ?, 'meta,objects,quality,tags', 'x')",
                    (h, kind, taken, make, model, sharpness, rng.getrandbits(64) - (1 << 63)))
        path = f"/photos/{y}/{mo:02d}/IMG_{i:06d}.{'mp4' if kind == 'video' else 'jpg'}"
        camera = f"{make} {model}" if make else None
        con.execute("INSERT INTO files (path, hash, kind, size, mtime_ns, date, camera, "
                    "sharpness, first_seen, updated_at) VALUES (?, ?, ?, 3000000, 0, ?, ?, ?, "
                    "'x', 'x')", (path, h, kind, taken, camera, sharpness))
        for label in rng.sample(labels, rng.randrange(4)):
            con.execute("INSERT INTO objects VALUES (?, ?, ?, 0.8)",
                        (label, h, 1 + rng.randrange(3)))
        for tag in rng.sample(tags, 1 + rng.randrange(3)):
            con.execute("INSERT INTO tags VALUES (?, ?, 0.5)", (tag, h))
    con.execute("COMMIT")
    con.execute("PRAGMA optimize")  # what every index run ends with
    con.close()


SEARCHES: list[dict[str, Any]] = [
    {}, {"objects": ("dog",)}, {"tags": ("beach",)}, {"after": "2024-01-01"},
    {"camera": "iphone"}, {"min_sharpness": 300.0}, {"kind": "video"},
    {"objects": ("dog",), "after": "2024-01-01", "camera": "iphone", "min_sharpness": 100.0},
    {"text": "photos with a dog from 2024 taken with the iPhone sharp"},
    {"text": "cat beach 2019"}, {"text": "IMG_0420"}, {"objects": ("cat", "person")},
    {"text": "unique sunset"}, {"tags": ("snow",), "before": "2015"}, {"text": "unique"},
    {"objects": ("dog",), "offset": 1000}, {"camera": "canon", "offset": 1000},
]


def _search_module_at(ref: str) -> Any:
    """``detforge.library.search`` as it is in git ``ref``, imported under another name."""
    import importlib.util
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{ref}:src/detforge/library/search.py"],
                            cwd=repo, check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "search_at_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("search_at_ref", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_at_ref"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _stats(times: list[float], cpu: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95)),
            "max_ms": max(times), "cpu_p50_ms": statistics.median(cpu),
            "cpu_p95_ms": float(np.percentile(cpu, 95))}


def bench_search(db: Path, repeats: int, against: str | None = None) -> dict[str, Any]:
    """Time each query ``repeats`` times; with ``against``, the search code of that git ref
    too, interleaved query by query on the same connection (one run, same conditions)."""
    import importlib

    from detforge.library import open_store

    codes = {"current": importlib.import_module("detforge.library.search")}
    if against:
        codes[against] = _search_module_at(against)
    con = open_store(db, readonly=True)
    per: list[dict[str, Any]] = []
    everything: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in codes}
    for spec in SEARCHES:
        row: dict[str, Any] = {"query": spec}
        timed: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in codes}
        for name, code in codes.items():
            res = code.search(con, code.SearchQuery(limit=100, **spec))  # warm the cache
            row.setdefault("total", res.total)
            if res.total != row["total"]:
                raise SystemExit(f"{name} counts {res.total} for {spec}, not {row['total']}")
        for _ in range(repeats):
            for name, code in codes.items():
                q = code.SearchQuery(limit=100, **spec)
                t0, c0 = time.perf_counter(), time.thread_time()
                code.search(con, q)
                timed[name][1].append((time.thread_time() - c0) * 1000)
                timed[name][0].append((time.perf_counter() - t0) * 1000)
        for name, (times, cpu) in timed.items():
            everything[name][0].extend(times)
            everything[name][1].extend(cpu)
        row.update(_stats(*timed["current"]))
        if against:
            row["against"] = _stats(*timed[against])
        per.append(row)
    con.close()
    # Wall time waits for the CPU when other jobs share the machine; CPU time is what a
    # search costs (SQLite runs in the calling thread).
    out: dict[str, Any] = {"entries": None, "queries": per, **_stats(*everything["current"])}
    if against:
        out["against"] = {"ref": against, **_stats(*everything[against])}
    return out


def memory_child(root: str, db: str, model: str) -> None:
    from detforge.library import index_library

    s = index_library(root, db=db, model=model, progress=False, phases="meta,quality,objects")
    status = Path("/proc/self/status").read_text()
    peak_kb = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("VmHWM:")))
    print(json.dumps({"files": s.files, "wall_s": s.wall_s, "peak_rss_mb": peak_kb / 1024}))


def bench_memory(cache: Path, sizes: list[int]) -> list[dict[str, Any]]:
    from detforge.testing import tiny_onnx_model

    model = tiny_onnx_model(cache / "tiny_64.onnx", classes=("cat", "dog"))
    out = []
    for n in sizes:
        root = cache / f"small_{n}"
        make_library(root, n, seed=7, small=True)
        db = cache / f"mem_{n}.sqlite"
        for p in cache.glob(db.name + "*"):
            p.unlink()
        proc = subprocess.run([sys.executable, __file__, "--memory-child", str(root), str(db),
                               str(model)], capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append(row)
        print(f"memory: {row['files']} files -> {row['peak_rss_mb']:.0f} MB peak RSS "
              f"({row['files'] / row['wall_s']:.0f} files/s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/detforge-bench-library"))
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--photo-size", metavar="WxH",
                        help="photos at this size (e.g. 4032x3024, a phone camera's 12 MP)")
    parser.add_argument("--search-entries", type=int, default=100_000)
    parser.add_argument("--search-repeats", type=int, default=30)
    parser.add_argument("--search-against", metavar="GIT_REF",
                        help="also time the search code of this commit, side by side")
    parser.add_argument("--memory-sizes", default="2000,20000")
    parser.add_argument("--skip", default="", help="comma list of throughput,search,memory")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    result: dict[str, Any] = {
        "date": date.today().isoformat(), "machine": {
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version()}}
    if "throughput" not in skip:
        size = None
        root = args.cache / f"mixed_{args.files}"
        if args.photo_size:
            w, _, h = args.photo_size.partition("x")
            size = (int(w), int(h))
            root = args.cache / f"mixed_{args.files}_{args.photo_size}"
        n = make_library(root, args.files, photo_size=size)
        model = make_model(args.cache)
        rows = []
        for runner in (run_baseline, run_index):  # one run each, side by side
            row = runner(root, args.cache / f"{runner.__name__}.sqlite", model, args.workers)
            rows.append(row)
            print(f"{row['method']:22} {row['files']:6d} files {row['wall_s']:7.1f} s "
                  f"{row['files_per_s']:7.1f} files/s", flush=True)
        ratio = rows[1]["files_per_s"] / rows[0]["files_per_s"]
        print(f"index_library vs three-phase baseline: {ratio:.2f}x ({n} files)")
        result["throughput"] = {"rows": rows, "ratio": ratio, "files": n, "photo_size": size,
                                "loadavg": os.getloadavg()}
    if "search" not in skip:
        from detforge.library import SCHEMA_VERSION

        db = args.cache / f"search_{args.search_entries}_v{SCHEMA_VERSION}.sqlite"
        build_search_index(db, args.search_entries)
        s = bench_search(db, args.search_repeats, args.search_against)
        s["entries"] = args.search_entries
        ref = args.search_against
        print(f"\nsearch over {args.search_entries:,} entries (first page of 100 + count):")
        print(f"{'query':62} {'total':>7} {'p50 ms':>7} {'p95 ms':>7} {'cpu p95':>7}"
              + (f" | {ref[:12]:>12} p50 {'p95':>6} {'ratio':>6}" if ref else ""))
        for q in s["queries"]:
            line = (f"{json.dumps(q['query'])[:62]:62} {q['total']:7d} {q['p50_ms']:7.1f} "
                    f"{q['p95_ms']:7.1f} {q['cpu_p95_ms']:7.1f}")
            if ref:
                a = q["against"]
                line += (f" | {a['p50_ms']:16.1f} {a['p95_ms']:6.1f} "
                         f"{a['p50_ms'] / q['p50_ms']:5.2f}x")
            print(line)
        s["loadavg"] = os.getloadavg()
        for name, st in [("current", s)] + ([(ref, s["against"])] if ref else []):
            print(f"{name}: all queries p50 {st['p50_ms']:.1f} ms, p95 {st['p95_ms']:.1f} ms, "
                  f"max {st['max_ms']:.1f} ms wall; CPU p50 {st['cpu_p50_ms']:.1f} ms, p95 "
                  f"{st['cpu_p95_ms']:.1f} ms")
        print(f"(load average {s['loadavg'][0]:.1f} on {os.cpu_count()} cores)")
        result["search"] = s
    if "memory" not in skip:
        sizes = [int(x) for x in args.memory_sizes.split(",")]
        result["memory"] = bench_memory(args.cache, sizes)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
