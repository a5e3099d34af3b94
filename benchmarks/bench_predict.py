"""Runtime throughput: detforge's pipeline vs ONNX Runtime model-only vs Ultralytics predict.

Run (about 10 minutes on a 2-core CPU; everything offline)::

    .venv/bin/python benchmarks/bench_predict.py --json benchmarks/results/predict.json

What it does, all in one process except the memory runs:

1. Renders 500 seeded 640x480 JPEGs with ``detforge.data.synth`` into a cache folder
   (``.cache/bench_predict``, reused by later runs).
2. Builds YOLO11n from ``yolo11n.yaml`` (nc=80, seeded random weights: speed does not depend
   on them), saves a ``.pt`` and exports it with ``detforge.export.onnx_export.export_onnx``
   (raw layout, dynamic batch, FP32) at 320x320, 640x640 and 480x640 (rectangular, the
   images' own aspect), plus CPU-flavour INT8 copies of the 640 and 480x640 models
   (``quantize_int8(..., flavour="cpu")``, calibrated on 16 of the images).
3. For each model, side by side: every (model, method) pair runs over all the images. The
   images are cut into ``--chunks`` slices and each slice goes through every pair in turn,
   starting one further along the list each time, so load from elsewhere on a shared
   machine hits all pairs alike. Every pair is warmed up first. Methods:
   - ``ort``: ONNX Runtime alone (default session options) on batches preprocessed
     beforehand (letterbox + /255 outside the timer), at the batch ``--batch auto`` picks
     for the pipeline and at batch 4; the faster of the two is the ceiling the pipeline is
     held to (on a shared 2-core machine which batch suits a default session varies from
     run to run by up to 15 %);
   - ``model_only``: detforge's own backend (``Model.infer`` on the pipeline's inference
     streams: two single-thread sessions called at once on two cores) on the same
     preprocessed batches;
   - ``fast``: the pipeline with ``fast_decode=True`` (``detforge predict --fast-decode``),
     for the models whose input is at least 2x smaller than the images (320);
   - ``detforge``: ``run_pipeline`` end to end over a list file of the slice (decode,
     letterbox, infer, box decoding + NMS; ``--batch auto --streams auto``: two streams,
     batches of 4 at 320, 1 at 640; no sink);
   - ``ultralytics``: ``YOLO(onnx).predict(files, stream=True)`` on the same files (FP32
     models only), with ``rect=False``: the file has a dynamic batch, which Ultralytics takes
     for a dynamic input size and would otherwise letterbox to the smallest stride multiple
     (320x256) instead of the model's 320x320.
   Random weights with conf 0.25 keep almost no boxes, so NMS costs next to nothing in
   every method alike; a trained model adds the same small post-processing to each.
4. Memory: ``run_pipeline`` over a list file of N paths (the images repeated) for N = 500
   and N = ``--memory-images`` (default 20,000), each in a fresh subprocess, with the
   ``--memory-model`` (default the 320 FP32 one; ``tiny`` runs a near-free graph, so the
   pipeline itself is measured at decode speed). The peak is the child's ``VmHWM``:
   Linux carries ``ru_maxrss`` over from the parent across exec, so a child of this
   torch-laden process would report the parent's peak (both are written).

Prints a table and writes the JSON. Not run by the tests.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench_predict"
CONF = 0.25
IMAGE_HW = (480, 640)  # the benchmark's JPEGs
SPIN = False  # --spin: detforge sessions let idle ONNX Runtime threads spin
ORT_BATCH = 4  # plain ORT also runs at this batch; the reference is the faster of the two


def _env(cache: Path) -> None:
    from detforge.train.offline import offline_environment

    offline_environment(cache / "ultralytics-config")


def make_images(folder: Path, count: int) -> list[Path]:
    """Seeded 640x480 JPEGs (reused when already there)."""
    files = sorted(folder.glob("synth_*.jpg"))
    if len(files) != count:
        from detforge.data.synth import generate

        generate(folder, images=count, classes=5, seed=0, size=(640, 480), splits=None)
        files = sorted(folder.glob("synth_*.jpg"))
    return files


def make_models(cache: Path, images: list[Path]) -> dict[str, Path]:
    """The .pt, its FP32 ONNX exports and the INT8 copies (reused when already there)."""
    models = {"fp32 320": cache / "yolo11n_320.onnx", "fp32 640": cache / "yolo11n_640.onnx",
              "fp32 480x640": cache / "yolo11n_480x640.onnx",
              "int8 640": cache / "yolo11n_640_int8.onnx",
              "int8 480x640": cache / "yolo11n_480x640_int8.onnx"}
    if all(p.is_file() for p in models.values()):
        return models
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from detforge.export.onnx_export import export_onnx
    from detforge.export.quantize import quantize_int8
    from detforge.runtime import load_model
    from detforge.runtime.sources import decode_image

    pt = cache / "yolo11n_nc80.pt"
    torch.manual_seed(0)
    net = DetectionModel("yolo11n.yaml", nc=80, verbose=False)
    net.names = {i: f"class{i}" for i in range(80)}
    torch.save({"model": net, "train_args": {}, "epoch": -1}, pt)
    for name, size in (("fp32 320", (320, 320)), ("fp32 640", (640, 640)),
                       ("fp32 480x640", (480, 640))):
        export_onnx(pt, models[name], imgsz=size, layout="raw")
    for name in ("int8 640", "int8 480x640"):
        fp32 = models[name.replace("int8", "fp32")]
        with load_model(fp32, device="cpu") as m:
            calib = [m.preprocess(decode_image(p))[0][None] for p in images[:16]]
        quantize_int8(fp32, models[name], calib, flavour="cpu")
    return models


def _preprocessed(model_path: Path, images: list[Path], batch: int) -> list[Any]:
    """Preprocessed ``[batch, 3, H, W]`` tensors of ``images`` (letterbox + /255)."""
    import numpy as np

    from detforge.runtime import load_model
    from detforge.runtime.sources import decode_image

    with load_model(model_path, device="cpu") as m:
        tensors = [m.preprocess(decode_image(p))[0] for p in images]
    return [np.stack(tensors[i:i + batch]) for i in range(0, len(tensors), batch)]


class OrtRunner:
    """ONNX Runtime alone (default session options, CPU) on preprocessed batches of the
    size the pipeline's ``--batch auto`` takes."""

    def __init__(self, model_path: Path, batch: int) -> None:
        import onnxruntime as ort

        self.path, self.batch = model_path, batch
        self.sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self.name = self.sess.get_inputs()[0].name

    def __call__(self, images: list[Path]) -> tuple[int, float]:
        busy = 0.0
        for x in _preprocessed(self.path, images, self.batch):  # outside the timer
            t0 = time.perf_counter()
            self.sess.run(None, {self.name: x})
            busy += time.perf_counter() - t0
        return len(images), busy


class DetforgeModelOnly:
    """detforge's backend alone (``Model.infer`` on the pipeline's own inference streams,
    called from as many threads) on the same preprocessed batches: the model-only figure
    ``detforge benchmark`` reports."""

    def __init__(self, model_path: Path, batch: int) -> None:
        from detforge.runtime import load_model
        from detforge.runtime.pipeline import resolve_streams

        self.path, self.batch = model_path, batch
        self.model = load_model(model_path, device="cpu", conf=CONF, spin=SPIN)
        self.streams, self.backend = resolve_streams(self.model, "auto")

    def __call__(self, images: list[Path]) -> tuple[int, float]:
        from concurrent.futures import ThreadPoolExecutor

        batches = _preprocessed(self.path, images, self.batch)  # outside the timer
        with ThreadPoolExecutor(self.streams) as pool:
            t0 = time.perf_counter()
            list(pool.map(lambda x: self.model.infer(x, backend=self.backend), batches))
            return len(images), time.perf_counter() - t0


class DetforgeRunner:
    """detforge's pipeline end to end (``--batch auto``, no sink) over a list of files."""

    def __init__(self, model_path: Path, work: Path, *, fast_decode: bool = False) -> None:
        from detforge.runtime import load_model

        self.model = load_model(model_path, device="cpu", conf=CONF, spin=SPIN)
        self.list_file = work / f"{model_path.stem}{'_fast' if fast_decode else ''}.txt"
        self.fast_decode = fast_decode

    def __call__(self, images: list[Path]) -> tuple[int, float]:
        from detforge.runtime.pipeline import run_pipeline
        from detforge.runtime.sources import open_source

        self.list_file.write_text("".join(f"{p}\n" for p in images))
        stats = run_pipeline(self.model, open_source(self.list_file), [], batch="auto",
                             progress=False, warmup=False, fast_decode=self.fast_decode)
        return stats.images, stats.wall_s


class UltralyticsRunner:
    """``YOLO(onnx).predict(files, stream=True)`` on the same files, same input size."""

    def __init__(self, model_path: Path, imgsz: tuple[int, int]) -> None:
        from ultralytics import YOLO

        self.yolo = YOLO(str(model_path), task="detect")
        self.imgsz = list(imgsz)

    def __call__(self, images: list[Path]) -> tuple[int, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n, t0 = 0, time.perf_counter()
            for _ in self.yolo.predict([str(p) for p in images], imgsz=self.imgsz, conf=CONF,
                                       rect=False, device="cpu", verbose=False, stream=True):
                n += 1
            return n, time.perf_counter() - t0


def memory_child(model_path: Path, list_file: Path) -> None:
    """In a fresh process: the pipeline over a list file, then print images and ru_maxrss."""
    from detforge.runtime import load_model
    from detforge.runtime.pipeline import run_pipeline
    from detforge.runtime.sources import open_source

    with load_model(model_path, device="cpu", conf=CONF) as m:
        stats = run_pipeline(m, open_source(list_file), [], batch="auto", progress=False)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec, so a
    # child of this (torch-laden, ~1 GB) process would report the parent's peak.
    status = Path("/proc/self/status").read_text()
    peak_kb = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("VmHWM:")))
    print(json.dumps({"images": stats.images, "wall_s": stats.wall_s,
                      "peak_rss_mb": peak_kb / 1024,
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_memory(model_path: Path, images: list[Path], sizes: list[int],
               cache: Path) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        list_file = cache / f"list_{n}.txt"
        paths = list(itertools.islice(itertools.cycle(images), n))
        list_file.write_text("".join(f"{p}\n" for p in paths))
        proc = subprocess.run([sys.executable, __file__, "--memory-child", str(model_path),
                               str(list_file)], capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append({"images_requested": n, **row})
        print(f"memory: {n} images -> {row['peak_rss_mb']:.0f} MB peak RSS "
              f"({row['images'] / row['wall_s']:.1f} img/s)", flush=True)
    return out


def measure(models: dict[str, Path], images: list[Path], chunks: int,
            work: Path) -> list[dict[str, Any]]:
    """Every (model, method) pair over all images, interleaved chunk by chunk.

    The images are cut into ``chunks`` slices; each slice runs through every pair, starting
    one further along the list each time, so load from elsewhere hits all pairs alike.
    """
    from detforge.runtime.metadata import read_onnx_meta
    from detforge.runtime.reduced_decode import reduction_for

    jobs: list[tuple[str, str, Callable[[list[Path]], tuple[int, float]]]] = []
    from detforge.runtime.pipeline import resolve_batch, resolve_streams

    batches, streams = {}, {}
    for name, path in models.items():
        e2e = DetforgeRunner(path, work)
        streams[name] = resolve_streams(e2e.model, "auto")[0]
        batches[name] = resolve_batch(e2e.model, "auto", streams=streams[name])
        for b in sorted({batches[name], ORT_BATCH}):
            jobs.append((name, f"ort b{b}", OrtRunner(path, b)))
        jobs.append((name, "model_only", DetforgeModelOnly(path, batches[name])))
        jobs.append((name, "detforge", e2e))
        if reduction_for(IMAGE_HW, read_onnx_meta(path).imgsz) > 1:  # --fast-decode helps
            jobs.append((name, "fast", DetforgeRunner(path, work, fast_decode=True)))
        if name.startswith("fp32"):
            jobs.append((name, "ultralytics", UltralyticsRunner(path, read_onnx_meta(path).imgsz)))
    for _, _, fn in jobs:  # warm-up: sessions, thread pools, Ultralytics' own warm-up
        fn(images[:2])
    totals: dict[tuple[str, str], list[float]] = {(m, k): [0, 0.0] for m, k, _ in jobs}
    step = -(-len(images) // chunks)
    for i, start in enumerate(range(0, len(images), step)):
        part = images[start:start + step]
        shift = i % len(jobs)
        for model, method, fn in jobs[shift:] + jobs[:shift]:
            n, secs = fn(part)
            totals[(model, method)][0] += n
            totals[(model, method)][1] += secs
        line = "  ".join(f"{m} {k} {n / s:.1f}" for (m, k), (n, s) in totals.items() if s)
        print(f"chunk {i + 1}/{chunks}: {line}", flush=True)
    rows = []
    for name in models:
        ips = {k: totals[(name, k)][0] / totals[(name, k)][1]
               for k in ("model_only", "detforge", "fast", "ultralytics") if (name, k) in totals}
        ort = {k: n / secs for (m, k), (n, secs) in totals.items()
               if m == name and k.startswith("ort ")}
        ips["ort"] = max(ort.values())  # the reference at its best batch
        rows.append({"model": name, "batch": batches[name], "streams": streams[name],
                     "ort_model_only_ips": round(ips["ort"], 2),
                     "ort_model_only_ips_by_batch": {k[4:]: round(v, 2) for k, v in ort.items()},
                     "detforge_model_only_ips": round(ips["model_only"], 2),
                     "detforge_end_to_end_ips": round(ips["detforge"], 2),
                     "detforge_e2e_vs_model_only": round(ips["detforge"] / ips["model_only"],
                                                         3),
                     "ultralytics_predict_ips": round(ips["ultralytics"], 2)
                     if "ultralytics" in ips else None,
                     "detforge_vs_ort": round(ips["detforge"] / ips["ort"], 3),
                     "detforge_vs_ultralytics": round(ips["detforge"] / ips["ultralytics"], 3)
                     if "ultralytics" in ips else None})
        if "fast" in ips:  # detforge predict --fast-decode
            rows[-1].update({
                "fast_decode_end_to_end_ips": round(ips["fast"], 2),
                "fast_decode_vs_ort": round(ips["fast"] / ips["ort"], 3),
                "fast_decode_vs_ultralytics": round(ips["fast"] / ips["ultralytics"], 3)
                if "ultralytics" in ips else None})
    ref = next((r for r in rows if r["model"] == "fp32 640"), None)
    for row in rows:  # rectangular and INT8 against the square FP32 640 model-only ceiling
        if ref is not None and row["model"] in ("fp32 480x640", "int8 640", "int8 480x640"):
            row["detforge_vs_square_fp32_640_model_only"] = round(
                row["detforge_end_to_end_ips"] / ref["ort_model_only_ips"], 3)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'model':<13} {'ORT model-only':>15} {'df model-only':>14} {'detforge e2e':>13} "
          f"{'Ultralytics':>12} {'e2e/ORT':>8} {'e2e/df-mo':>9} {'e2e/UL':>7} "
          f"{'e2e/sq640 ORT':>14}")
    for r in rows:
        ul = r["ultralytics_predict_ips"]
        vs_ul = r["detforge_vs_ultralytics"]
        sq = r.get("detforge_vs_square_fp32_640_model_only")
        print(f"{r['model']:<13} {r['ort_model_only_ips']:>15.1f} "
              f"{r['detforge_model_only_ips']:>14.1f} "
              f"{r['detforge_end_to_end_ips']:>13.1f} {'-' if ul is None else f'{ul:.1f}':>12} "
              f"{r['detforge_vs_ort']:>8.2f} {r['detforge_e2e_vs_model_only']:>9.2f} "
              f"{'-' if vs_ul is None else f'{vs_ul:.2f}':>7} "
              f"{'-' if sq is None else f'{sq:.2f}':>14}")
    for r in rows:
        if "fast_decode_end_to_end_ips" in r:
            vs_ul = r["fast_decode_vs_ultralytics"]
            print(f"{r['model']:<13} --fast-decode end-to-end "
                  f"{r['fast_decode_end_to_end_ips']:.1f} img/s: "
                  f"{r['fast_decode_vs_ort']:.2f}x ORT model-only, "
                  f"{'-' if vs_ul is None else f'{vs_ul:.2f}'}x Ultralytics")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/predict.json")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=5,
                        help="interleaving slices of the image set")
    parser.add_argument("--memory-images", type=int, default=20_000)
    parser.add_argument("--memory-model", default="fp32 320",
                        help="a model name, or 'tiny' (a near-free 320x320 graph, so the "
                             "run is bound by decoding and measures the pipeline itself)")
    parser.add_argument("--only", nargs="*", help="model names to run, e.g. 'fp32 320'")
    parser.add_argument("--spin", action="store_true",
                        help="detforge's sessions spin idle threads (`detforge predict --spin`)")
    parser.add_argument("--memory-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _env(args.cache)
    global SPIN
    SPIN = args.spin
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    start = time.perf_counter()
    folder = args.cache / f"images_{args.images}"
    images = make_images(folder, args.images)
    models = make_models(args.cache, images)
    if args.only is not None:
        models = {k: v for k, v in models.items() if k in args.only}
    rows = measure(models, images, args.chunks, args.cache) if models else []
    print_table(rows)
    memory = []
    if args.memory_images:
        if args.memory_model == "tiny":
            from detforge.testing import tiny_onnx_model

            mem_model = tiny_onnx_model(args.cache / "tiny_320.onnx", imgsz=(320, 320))
        else:
            mem_model = make_models(args.cache, images)[args.memory_model]
        memory = run_memory(mem_model, images, [len(images), args.memory_images], args.cache)
        growth = memory[-1]["peak_rss_mb"] / memory[0]["peak_rss_mb"] - 1
        print(f"peak RSS {memory[0]['peak_rss_mb']:.0f} MB -> {memory[-1]['peak_rss_mb']:.0f} MB "
              f"({growth:+.1%})")
    import onnxruntime as ort

    from detforge.core.atomic import atomic_write_json
    from detforge.runtime.hardware import cpu_cores

    # Sections not measured in this run (e.g. a memory-only run) keep their earlier figures.
    out = json.loads(args.json.read_text()) if args.json.is_file() else {}
    run = {"date": date.today().isoformat(), "command": " ".join(sys.argv[1:]),
           "images": len(images), "image_size": "640x480", "conf": CONF,
           "batch": "auto (per row)", "spin": SPIN,
           "load_average_after": [round(v, 1) for v in os.getloadavg()],
           "wall_s": round(time.perf_counter() - start, 1)}
    if rows:
        out.update(rows=rows, rows_run={**run, "chunks": args.chunks})
    if memory:
        out.update(memory=memory, memory_run={**run, "memory_model": args.memory_model})
    out["machine"] = {"cpu_cores": cpu_cores(), "cpu": platform.processor() or
                      platform.machine(), "onnxruntime": ort.__version__,
                      "python": platform.python_version()}
    atomic_write_json(args.json, out)
    print(f"wrote {args.json} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
