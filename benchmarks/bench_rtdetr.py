"""RT-DETR at 16:9: detforge's ONNX end to end vs Ultralytics predict, INT8 vs FP32, and
rectangular vs square inputs of equal pixels.

Run (offline; about 30-60 minutes on a 2-core CPU, mostly the two trainings)::

    .venv/bin/python benchmarks/bench_rtdetr.py --json benchmarks/results/rtdetr.json

What it does:

1. Renders ``--images`` seeded 512x288 (16:9) JPEGs with ``detforge.data.synth`` (2 classes,
   80/20 train/val) into the cache.
2. Trains ``rtdetr-tiny.yaml`` twice with detforge's letterboxed trainer, same recipe and
   epochs: at 288x512 (16:9, no padding) and at 384x384 (square, 147,456 pixels each: equal
   compute per image; the 16:9 frame fills 384x216 of it, 44 % grey).
3. Exports both (``rtdetr`` layout, dynamic batch) plus a batch-1 copy of the 16:9 model
   (Ultralytics letterboxes exactly only for a fixed batch), and quantises the 16:9 model in
   both INT8 flavours (``detforge.export.quantize.quantize_int8``, 32 calibration images).
4. Accuracy: AP and AP50 (pycocotools numbers, ``detforge.evaluate.evaluate_model``) on the
   val split for every file, the ``.pt`` included.
5. Speed, side by side: the images are cut into ``--chunks`` slices and every method runs
   every slice in turn, starting one further along each time, so load from elsewhere on a
   shared machine hits all of them alike (warmed up first):
   - ``detforge``: ``run_pipeline`` end to end over a list file (decode, letterbox, infer,
     decode rows; ``--batch auto --streams auto``; no sink) on each ONNX;
   - ``ultralytics onnx``: ``YOLO(batch-1 onnx).predict(files, stream=True)`` at 288x512;
   - ``ultralytics pt``: ``RTDETR(best.pt).predict(files, stream=True)`` at 288x512 (its own
     path: the PyTorch model, its stretch preprocessing);
   - model only: ONNX Runtime on preprocessed batches of 8 (``model_only_ips``).

Prints a table and writes the JSON (command, machine, date). Not run by the tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

CACHE = Path(os.environ.get("DETFORGE_BENCH_CACHE", "/tmp/detforge-bench-cache")) / "rtdetr"
RECT, SQUARE = (288, 512), (384, 384)
CONF = 0.25


def make_dataset(cache: Path, images: int) -> Path:
    from detforge.data.synth import synthesize

    out = cache / f"synth{images}_512x288"
    if not (out / "data.yaml").is_file():
        shutil.rmtree(out, ignore_errors=True)
        synthesize(out, images=images, classes=2, seed=0, size=(512, 288))
    return out


def train(cache: Path, data: Path, shape: tuple[int, int], epochs: int) -> tuple[Path, float]:
    """``best.pt`` of rtdetr-tiny trained letterboxed at ``shape`` (cached) and the seconds
    it took (0 when cached)."""
    from detforge.train.config import TrainConfig
    from detforge.train.runner import train as run

    name = f"tiny_{shape[0]}x{shape[1]}_e{epochs}"
    weights = cache / f"{name}.pt"
    if weights.is_file():
        return weights, 0.0
    cfg = TrainConfig(
        data=data, model="rtdetr-tiny.yaml", epochs=epochs, imgsz=shape, batch=8, seed=0,
        name=name, out=cache / "runs", plots=False, val=False,
        optim={"optimizer": "AdamW", "lr0": 0.002, "nbs": 8, "warmup_epochs": 1.0,
               "max_grad_norm": 0.1, "lr_schedule": "multistep",
               "lr_milestones": [epochs - 5], "lr_gamma": 0.1},
        augment={"mosaic": 0.0, "scale": 0.3}, ema={"tau": 100}, tracking={"enabled": False})
    t0 = time.perf_counter()
    result = run(cfg)
    seconds = time.perf_counter() - t0
    shutil.copyfile(result.best, weights)
    return weights, seconds


def make_models(cache: Path, data: Path, rect_pt: Path, square_pt: Path) -> dict[str, Path]:
    from detforge.data.formats import read_dataset
    from detforge.export.calibration import calibration_files
    from detforge.export.onnx_export import export_onnx
    from detforge.export.parity import load_inputs
    from detforge.export.quantize import quantize_int8

    out = {"fp32 16:9": cache / "rect.onnx", "fp32 square": cache / "square.onnx",
           "fp32 16:9 b1": cache / "rect_b1.onnx", "int8 16:9 tensorrt": cache / "rect_trt.onnx",
           "int8 16:9 cpu": cache / "rect_cpu.onnx"}
    if not out["fp32 16:9"].is_file():
        export_onnx(rect_pt, out["fp32 16:9"])
    if not out["fp32 square"].is_file():
        export_onnx(square_pt, out["fp32 square"])
    if not out["fp32 16:9 b1"].is_file():
        export_onnx(rect_pt, out["fp32 16:9 b1"], batch=1)
    calib = [b[None] for b in load_inputs(calibration_files(read_dataset(data), 32), RECT)]
    for flavour in ("tensorrt", "cpu"):
        path = out[f"int8 16:9 {flavour}"]
        if not path.is_file():
            quantize_int8(out["fp32 16:9"], path, calib, flavour=flavour)
    return out


def accuracy(files: dict[str, Path], data: Path) -> dict[str, dict[str, float]]:
    from detforge.data.formats import read_dataset
    from detforge.evaluate import evaluate_model

    ds = read_dataset(data)
    out = {}
    for name, path in files.items():
        res = evaluate_model(path, ds, split="val", device="cpu")
        out[name] = {"ap": round(float(res.stats[0]), 4), "ap50": round(float(res.stats[1]), 4)}
        print(f"accuracy {name}: AP {out[name]['ap']:.3f} AP50 {out[name]['ap50']:.3f}",
              flush=True)
    return out


Runner = Callable[[list[Path]], tuple[int, float]]


def detforge_runner(path: Path, work: Path) -> Runner:
    from detforge.runtime import load_model
    from detforge.runtime.pipeline import run_pipeline
    from detforge.runtime.sources import open_source

    model = load_model(path, device="cpu", conf=CONF)
    list_file = work / f"{path.stem}.txt"

    def run(images: list[Path]) -> tuple[int, float]:
        list_file.write_text("".join(f"{p}\n" for p in images))
        stats = run_pipeline(model, open_source(list_file), [], batch="auto", progress=False,
                             warmup=False)
        return stats.images, stats.wall_s

    return run


def ultralytics_runner(path: Path) -> Runner:
    from ultralytics import RTDETR, YOLO

    model = RTDETR(str(path)) if path.suffix == ".pt" else YOLO(str(path), task="detect")

    def run(images: list[Path]) -> tuple[int, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n, t0 = 0, time.perf_counter()
            for _ in model.predict([str(p) for p in images], imgsz=list(RECT), conf=CONF,
                                   device="cpu", verbose=False, stream=True):
                n += 1
            return n, time.perf_counter() - t0

    return run


def speed(models: dict[str, Path], rect_pt: Path, images: list[Path], chunks: int,
          work: Path) -> dict[str, float]:
    jobs: list[tuple[str, Runner]] = [
        (f"detforge {k}", detforge_runner(v, work)) for k, v in models.items()
        if not k.endswith("b1")]
    jobs += [("ultralytics onnx fp32 16:9", ultralytics_runner(models["fp32 16:9 b1"])),
             ("ultralytics pt 16:9", ultralytics_runner(rect_pt))]
    for _, fn in jobs:
        fn(images[:2])
    totals = {name: [0, 0.0] for name, _ in jobs}
    step = -(-len(images) // chunks)
    for i, start in enumerate(range(0, len(images), step)):
        part = images[start:start + step]
        shift = i % len(jobs)
        for name, fn in jobs[shift:] + jobs[:shift]:
            n, secs = fn(part)
            totals[name][0] += n
            totals[name][1] += secs
        print(f"chunk {i + 1}/{chunks}: " + "  ".join(
            f"{k} {n / s:.1f}" for k, (n, s) in totals.items() if s), flush=True)
    return {k: round(n / s, 2) for k, (n, s) in totals.items()}


def model_only(models: dict[str, Path], data: Path) -> dict[str, float]:
    from detforge.data.formats import read_dataset
    from detforge.export.calibration import calibration_files
    from detforge.export.parity import load_inputs
    from detforge.export.quantize import model_only_ips
    from detforge.runtime.metadata import read_onnx_meta

    ds = read_dataset(data)
    out = {}
    for _ in range(2):  # alternate, keep the better of two
        for name, path in models.items():
            if name.endswith("b1"):
                continue
            batch = load_inputs(calibration_files(ds, 8, split="val"), read_onnx_meta(path).imgsz)
            ips = model_only_ips(path, batch, seconds=3.0)
            out[name] = round(max(out.get(name, 0.0), ips), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from detforge.train.offline import import_ultralytics

    CACHE.mkdir(parents=True, exist_ok=True)
    import_ultralytics(CACHE / "ultralytics")
    data = make_dataset(CACHE, args.images)
    rect_pt, rect_s = train(CACHE, data, RECT, args.epochs)
    square_pt, square_s = train(CACHE, data, SQUARE, args.epochs)
    models = make_models(CACHE, data, rect_pt, square_pt)
    acc = accuracy({"pt 16:9": rect_pt, **{k: v for k, v in models.items()
                                           if not k.endswith("b1")}}, data)
    images = sorted((data / "images").rglob("*.jpg"))
    ips = speed(models, rect_pt, images, args.chunks, CACHE)
    mo = model_only(models, data)
    e2e = ips["detforge fp32 16:9"]
    ratios = {"detforge_vs_ultralytics_onnx": round(e2e / ips["ultralytics onnx fp32 16:9"], 3),
              "detforge_vs_ultralytics_pt": round(e2e / ips["ultralytics pt 16:9"], 3),
              "int8_cpu_vs_fp32_e2e": round(ips["detforge int8 16:9 cpu"] / e2e, 3),
              "int8_tensorrt_vs_fp32_e2e": round(ips["detforge int8 16:9 tensorrt"] / e2e, 3),
              "rect_vs_square_ap50": round(acc["fp32 16:9"]["ap50"]
                                           / max(acc["fp32 square"]["ap50"], 1e-9), 3),
              "rect_vs_square_e2e": round(e2e / ips["detforge fp32 square"], 3)}
    print(f"\n{'file':<22} {'AP':>6} {'AP50':>6} {'model-only img/s':>17} {'e2e img/s':>10}")
    for name in acc:
        key = name if name in mo else None
        e = ips.get(f"detforge {name}")
        print(f"{name:<22} {acc[name]['ap']:>6.3f} {acc[name]['ap50']:>6.3f} "
              f"{mo[key] if key else float('nan'):>17.1f} {e if e else float('nan'):>10.1f}")
    for name in ("ultralytics onnx fp32 16:9", "ultralytics pt 16:9"):
        print(f"{name:<22} {'':>6} {'':>6} {'':>17} {ips[name]:>10.1f}")
    print("ratios:", json.dumps(ratios))
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "date": dt.date.today().isoformat(),
              "machine": {"cpu": platform.processor() or platform.machine(),
                          "cores": len(os.sched_getaffinity(0)),
                          "load_avg": os.getloadavg()},
              "train_seconds": {"16:9": rect_s, "square": square_s},
              "accuracy": acc, "end_to_end_ips": ips, "model_only_ips": mo, "ratios": ratios,
              "settings": {"rect": RECT, "square": SQUARE, "images": args.images,
                           "epochs": args.epochs, "conf": CONF}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
