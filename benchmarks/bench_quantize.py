"""INT8 on a trained model: FP32 vs detforge INT8 (cpu / tensorrt flavours) vs Ultralytics INT8.

Trains a YOLO11n on a synthetic dataset (once; cached), exports ONNX at 320 and 640 with a
dynamic batch, quantises it with ``detforge.export.api.quantize_model`` and measures, in one
run with alternating repetitions, model-only img/s at batch 1 and 8 and mAP50-95 on the val
split through ``detforge.evaluate.model.evaluate_model`` (the same evaluator for every file).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_quantize.py --train-minutes 8
    .venv/bin/python benchmarks/bench_quantize.py --json benchmarks/results/quantize.json

The dataset, the training run, the trained weights and every exported/quantised model are
cached in ``$DETFORGE_BENCH_CACHE`` (default ``/tmp/detforge-bench-cache``); delete it to
start over. Nothing is downloaded: the model is built from ``yolo11n.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("DETFORGE_BENCH_CACHE", "/tmp/detforge-bench-cache"))


def _offline(cache: Path) -> None:
    from detforge.train.offline import offline_environment

    offline_environment(cache / "ultralytics")


def make_dataset(cache: Path, *, images: int) -> Path:
    """The synthetic dataset (YOLO format, train/val split), generated once."""
    from detforge.data.synth import synthesize

    out = cache / f"synth{images}"
    if not (out / "data.yaml").is_file():
        if out.exists():
            shutil.rmtree(out)
        synthesize(out, images=images, classes=3, seed=0, size=(320, 320))
    return out


def train_model(cache: Path, data: Path, *, minutes: float, imgsz: int = 320,
                threads: int | None = None, epochs: int | None = None,
                activation: str | None = None) -> Path:
    """Train YOLO11n for about ``minutes`` of wall time, or ``epochs``, (once) -> its best.pt.

    Ultralytics' ``time`` argument re-plans the epoch count after the first epoch so the
    learning-rate schedule and the mosaic close-out fit the budget. ``activation`` builds
    the model with another activation (``TrainConfig.activation``).
    """
    from detforge.train.backends.ultralytics import UltralyticsBackend
    from detforge.train.config import TrainConfig
    from detforge.train.runner import train

    weights = cache / "yolo11n_synth.pt"
    if weights.is_file():
        return weights

    class TimedBackend(UltralyticsBackend):
        def _args(self, config: TrainConfig, data_yaml: Path, run_dir: Path) -> dict[str, Any]:
            timed = {} if epochs else {"time": minutes / 60}
            return {**super()._args(config, data_yaml, run_dir), **timed}

    config = TrainConfig(
        data=data, model="yolo11n.yaml", activation=activation, epochs=epochs or 300,
        imgsz=imgsz, batch=8, seed=0, threads=threads,
        name="bench", out=cache / "runs", plots=False,
        optim={"nbs": 8, "warmup_epochs": 1.0},
        augment={"close_mosaic": 3},
        tracking={"enabled": False})
    result = train(config, backend=TimedBackend())
    print(f"trained {result.epochs_done} epochs: {result.final_metrics}")
    shutil.copyfile(result.best, weights)
    (cache / "train.json").write_text(json.dumps(
        {"epochs": result.epochs_done, "minutes": None if epochs else minutes, "imgsz": imgsz,
         "threads": threads, "activation": activation or "silu",
         "final_metrics": result.final_metrics, "run_dir": str(result.run_dir)}, indent=2))
    return weights


def ultralytics_int8(cache: Path, pt: Path, data: Path, imgsz: int) -> Path:
    """Ultralytics' own INT8 ONNX (``quantize=8``: ORT static S8S8, only Conv quantised,
    per-tensor weights), calibrated through its own letterbox dataloader on the train split,
    the split detforge calibrates on too (Ultralytics' default would be the val split)."""
    from detforge.train.offline import import_ultralytics

    folder = cache / f"models{imgsz}" / "ultralytics"
    out = folder / f"{pt.stem}_int8.onnx"
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / pt.name
    shutil.copyfile(pt, local)
    ul = import_ultralytics(cache / "ultralytics")
    made = ul.YOLO(str(local)).export(format="onnx", quantize=8, data=str(data / "data.yaml"),
                                      imgsz=imgsz, dynamic=True, batch=8, simplify=True,
                                      split="train")
    Path(made).replace(out)
    return out


Records = list[dict[str, Any]]


def make_models(cache: Path, pt: Path, data: Path, imgsz: int, *, methods: list[str],
                flavours: list[str], calib_images: int,
                ultralytics: bool) -> tuple[dict[str, Path], Records]:
    """FP32 ONNX, detforge INT8 per flavour and method, and Ultralytics INT8 at ``imgsz``."""
    from detforge.export.api import quantize_model, summary
    from detforge.export.onnx_export import export_onnx

    folder = cache / f"models{imgsz}"
    fp32 = folder / "fp32.onnx"
    if not fp32.is_file():
        export_onnx(pt, fp32, imgsz=(imgsz, imgsz), batch=None, layout="raw")
    models = {"fp32": fp32}
    records = []
    for method in methods:
        for flavour in flavours:
            name = f"int8-{flavour}-{method}-{calib_images}"
            out, sidecar = folder / f"{name}.onnx", folder / f"{name}.json"
            if not (out.is_file() and sidecar.is_file()):
                t0 = time.perf_counter()
                outcome = quantize_model(fp32, out, data=data, calib_images=calib_images,
                                         method=method, flavour=flavour, force=True)
                rec = {"name": name, "imgsz": imgsz, "quantize_s": time.perf_counter() - t0,
                       "calib_images": calib_images, **summary(outcome)}
                sidecar.write_text(json.dumps(rec, indent=2))
            records.append(json.loads(sidecar.read_text()))
            models[name] = out
    if ultralytics:
        models["ultralytics-int8"] = ultralytics_int8(cache, pt, data, imgsz)
    return models, records


def measure_speed(models: dict[str, Path], batch: Any, *, reps: int,
                  seconds: float) -> dict[str, dict[str, float]]:
    """Model-only img/s of every model on ``batch``, repetitions interleaved across models.

    Each repetition times every model for ``seconds`` in a rotated order, so a burst of load
    on this shared machine hits all of them alike; the median repetition is reported.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    sessions = {n: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                for n, p in models.items()}
    feeds = {n: {s.get_inputs()[0].name: batch} for n, s in sessions.items()}
    for n, s in sessions.items():  # warm-up
        s.run(None, feeds[n])
    runs: dict[str, list[float]] = {n: [] for n in models}
    names = list(models)
    for rep in range(reps):
        for n in names[rep % len(names):] + names[:rep % len(names)]:
            count, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds or count < 2:
                sessions[n].run(None, feeds[n])
                count += 1
            runs[n].append(count * len(batch) / elapsed)
    return {n: {"ips": statistics.median(v), "ips_min": min(v), "ips_max": max(v)}
            for n, v in runs.items()}


def measure_map(models: dict[str, Path], data: Path, imgsz: int) -> dict[str, dict[str, float]]:
    """mAP50-95 and mAP50 of every model on the val split, through one evaluator."""
    from detforge.data.formats import read_dataset
    from detforge.evaluate.model import evaluate_model

    dataset = read_dataset(data)
    out = {}
    for name, path in models.items():
        res = evaluate_model(path, dataset, split="val", imgsz=(imgsz, imgsz), device="cpu")
        out[name] = {"map50_95": float(res.stats[0]), "map50": float(res.stats[1])}
    return out


def _machine() -> dict[str, Any]:
    import onnxruntime as ort

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "load_avg_start": os.getloadavg()}


def markdown(result: dict[str, Any]) -> str:
    """The result rows as the Markdown table of BENCHMARKS.md."""
    lines = ["| imgsz | batch | model | img/s (median; min-max) | vs FP32 | mAP50-95 | drop (pts) "
             "| mAP50 |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['imgsz']} | {r['batch']} | {r['model']} | {r['ips']:.1f} "
                     f"({r['ips_min']:.1f}-{r['ips_max']:.1f}) | {r['vs_fp32']:.2f}x | "
                     f"{r['map50_95']:.4f} | {r['map_drop_pts']:+.2f} | {r['map50']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--train-minutes", type=float, default=8.0)
    parser.add_argument("--train-imgsz", type=int, default=320)
    parser.add_argument("--train-threads", type=int, default=None,
                        help="torch threads (1 wastes less on an oversubscribed machine)")
    parser.add_argument("--train-epochs", type=int, default=None,
                        help="train this many epochs instead of --train-minutes")
    parser.add_argument("--activation", choices=["silu", "relu"], default=None,
                        help="train the YOLO11n with this activation; its models are cached "
                             "in CACHE/act-<name> (default: the YAML's SiLU, in CACHE)")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--methods", nargs="+", default=["minmax"],
                        choices=["minmax", "entropy", "percentile"])
    parser.add_argument("--flavours", nargs="+", default=["cpu", "tensorrt"],
                        choices=["cpu", "tensorrt"])
    parser.add_argument("--calib-images", type=int, default=256,
                        help="entropy/percentile keep every activation: use <= 64 at 320")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--no-ultralytics", action="store_true")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/quantize.json"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    _offline(args.cache)
    data = make_dataset(args.cache, images=args.images)
    cache = args.cache / f"act-{args.activation}" if args.activation else args.cache
    cache.mkdir(exist_ok=True)
    pt = train_model(cache, data, minutes=args.train_minutes, imgsz=args.train_imgsz,
                     threads=args.train_threads, epochs=args.train_epochs,
                     activation=args.activation)
    if args.train_only:
        return
    from detforge.data.formats import read_dataset
    from detforge.export.calibration import calibration_files
    from detforge.export.parity import load_inputs

    val = calibration_files(read_dataset(data), max(args.batches), split="val")
    result: dict[str, Any] = {"machine": _machine(), "trained": json.loads(
        (cache / "train.json").read_text()), "rows": [], "quantize": []}
    for imgsz in args.sizes:
        models, records = make_models(cache, pt, data, imgsz, methods=args.methods,
                                      flavours=args.flavours, calib_images=args.calib_images,
                                      ultralytics=not args.no_ultralytics)
        result["quantize"] += records
        maps = measure_map(models, data, imgsz)
        inputs = load_inputs(val, (imgsz, imgsz))
        for b in args.batches:
            speed = measure_speed(models, inputs[:b], reps=args.reps, seconds=args.seconds)
            for name in models:
                result["rows"].append({
                    "imgsz": imgsz, "batch": b, "model": name, **speed[name], **maps[name],
                    "vs_fp32": speed[name]["ips"] / speed["fp32"]["ips"],
                    "map_drop_pts": 100 * (maps["fp32"]["map50_95"] - maps[name]["map50_95"])})
    result["machine"]["load_avg_end"] = os.getloadavg()
    print(f"trained: {result['trained']['epochs']} epochs, {result['trained']['final_metrics']}")
    print(f"{'imgsz':>5} {'batch':>5} {'model':<28} {'img/s':>8} {'vs fp32':>7} "
          f"{'mAP50-95':>8} {'drop pts':>8} {'mAP50':>6}")
    for r in result["rows"]:
        print(f"{r['imgsz']:5d} {r['batch']:5d} {r['model']:<28} {r['ips']:8.1f} "
              f"{r['vs_fp32']:7.2f} {r['map50_95']:8.4f} {r['map_drop_pts']:8.2f} "
              f"{r['map50']:6.3f}")
    print(markdown(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
