"""``detforge demo``: synth -> validate -> split -> stats -> train -> evaluate -> export ->
INT8 -> benchmark -> deployment bundle (verified) -> predict with tracking on a video ->
summary and an index page.

Every step records its outputs in ``<out>/steps.json`` when it finishes; re-running the
demo with the same ``--out`` reuses finished steps (delete the file, or a step's entry,
to redo them). Everything runs offline on the CPU.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detforge.core.atomic import atomic_write_json, atomic_write_text
from detforge.demo.report import render_index

__all__ = ["DemoConfig", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults finish in a few minutes on a 2-core CPU.

    200 images of two classes at 128 px for 25 epochs learn to an AP50 near 0.7 (the
    learning test in ``tests/train`` asserts >= 0.5 with the same budget).
    """

    out: Path
    images: int = 200
    classes: int = 2
    seed: int = 0
    imgsz: int = 128
    epochs: int = 25
    batch: int = 8
    model: str = "yolo11n.yaml"
    video_frames: int = 48


Step = Callable[[DemoConfig, dict[str, Any]], dict[str, Any]]


def _synth(cfg: DemoConfig, _: dict[str, Any]) -> dict[str, Any]:
    from detforge.data.synth import synthesize

    path = cfg.out / "dataset_raw"
    ds = synthesize(path, images=cfg.images, classes=cfg.classes, seed=cfg.seed,
                    size=(cfg.imgsz, cfg.imgsz), fmt="yolo", splits=None)
    return {"dataset_raw": str(path), "images": ds.num_images, "boxes": ds.num_boxes}


def _validate(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    from detforge.data.formats import read_dataset
    from detforge.data.validate import validate

    report = validate(read_dataset(state["dataset_raw"]), progress=False)
    path = cfg.out / "reports" / "validation.json"
    atomic_write_json(path, report.to_dict())
    counts = {s: sum(f.severity == s for f in report.findings)
              for s in ("error", "warning", "info")}
    return {"validation": str(path), "findings": counts}


def _split(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    from detforge.data.split import split_dataset_files

    path = cfg.out / "dataset"
    split_dataset_files(state["dataset_raw"], path, ratios=(0.8, 0.2), seed=cfg.seed)
    return {"dataset": str(path)}


def _stats(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    from detforge.data.formats import read_dataset
    from detforge.data.stats import dataset_stats, render_stats_html
    from detforge.data.version import dataset_version

    ds = read_dataset(state["dataset"])
    path = render_stats_html(dataset_stats(ds), cfg.out / "reports" / "stats.html")
    return {"stats_report": str(path), "dataset_version": dataset_version(ds)}


def _train(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    from detforge.train.config import AugmentConfig, OptimConfig, TrainConfig
    from detforge.train.runner import train

    # A short run needs steps: one optimiser step per batch, a one-epoch warm-up, and
    # validation only at the end.
    result = train(TrainConfig(
        data=Path(state["dataset"]), model=cfg.model, epochs=cfg.epochs, imgsz=cfg.imgsz,
        batch=cfg.batch, seed=cfg.seed, name="demo", out=cfg.out / "runs",
        patience=cfg.epochs, val=False, plots=False,
        optim=OptimConfig(nbs=cfg.batch, warmup_epochs=1),
        augment=AugmentConfig(close_mosaic=min(5, cfg.epochs))))
    return {"run": str(result.run_dir), "pt": str(result.best),
            "train_metrics": result.final_metrics}


def _export(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    from detforge.export.api import export_model

    onnx = cfg.out / "models" / "model.onnx"
    outcome = export_model(Path(state["pt"]), onnx, imgsz=(cfg.imgsz, cfg.imgsz), batch=None,
                           layout="raw", check=True, data=Path(state["dataset"]))
    hop, parity = outcome.hop, outcome.parity
    return {"onnx": str(onnx), "parity_max_abs_diff": parity.max_abs_diff if parity else None,
            "map50_95_pt": hop.map50_95_before if hop else None,
            "map50_95_onnx": hop.map50_95_after if hop else None}


def _evaluate(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    from detforge.data.formats import read_dataset
    from detforge.evaluate.model import evaluate_model
    from detforge.evaluate.report import render_html_report

    result = evaluate_model(Path(state["onnx"]), read_dataset(state["dataset"]), split="val")
    html = cfg.out / "reports" / "evaluation.html"
    atomic_write_text(html, render_html_report({"model.onnx": result},
                                               subtitle=f"{state['onnx']} on {state['dataset']}"))
    return {"evaluation_report": str(html), "map50_95": float(result.stats[0]),
            "map50": float(result.stats[1])}


def _quantize(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    from detforge.export.api import quantize_model

    out = cfg.out / "models" / "model_int8.onnx"
    q = quantize_model(Path(state["onnx"]), out, data=Path(state["dataset"]), calib_images=64,
                       flavour="cpu", force=True)
    return {"int8_onnx": str(out), "int8_ips": q.ips_after, "fp32_ips": q.ips_before,
            "int8_speedup": q.ips_after / q.ips_before,
            "map50_95_int8": q.hop.map50_95_after if q.hop else None,
            "fidelity_report": str(out.parent / "fidelity.html")}


def _benchmark(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    from detforge.bench.api import benchmark
    from detforge.data.formats import read_dataset

    ds = read_dataset(state["dataset"])
    val = [ds.image_path(i) for i in range(ds.num_images) if ds.images.split[i] == "val"]
    listing = cfg.out / "reports" / "benchmark_images.txt"
    atomic_write_text(listing, "".join(f"{p}\n" for p in val))
    out = cfg.out / "reports" / "benchmark.json"
    report = benchmark([Path(state["onnx"]), Path(state["int8_onnx"])], source=listing,
                       json_out=out, batches=(1, 8), device="cpu", repeats=2, seconds=0.5,
                       progress=False)  # mAP of both models: the quantize step measured it
    rows = [{"model": r.model, "batch": r.batch, "model_only_ips": round(r.model_only_ips, 1),
             "end_to_end_ips": round(r.end_to_end_ips, 1)}
            for r in report.result.rows]
    return {"benchmark": str(out), "benchmark_rows": rows}


def _bundle(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    from detforge.deploy.bundle import bundle_model
    from detforge.deploy.verify import verify_bundle

    out = cfg.out / "bundle"
    result = bundle_model(Path(state["onnx"]), targets=["orin-nano", "t4"], out=out,
                          data=Path(state["dataset"]), calib_images=32)
    first = result.bundles[0]
    report = verify_bundle(first.folder, speed_seconds=0.5)
    return {"bundle": str(out), "engine_script": str(first.folder / "build_engine.sh"),
            "bundle_targets": {b.target: b.precision for b in result.bundles},
            "verify_passed": report.passed, "verify_target": first.target}


def _write_video(path: Path, frame: Any, frames: int) -> None:
    """A video of ``frame`` panning sideways (objects move smoothly, wrapping at the edge)."""
    import cv2
    import numpy as np

    h, w = frame.shape[:2]
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), 12.0, (w, h))
    try:
        for i in range(frames):
            writer.write(np.ascontiguousarray(np.roll(frame, 3 * i, axis=1)[..., ::-1]))
    finally:
        writer.release()
    tmp.replace(path)


def _track(cfg: DemoConfig, state: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from detforge.core.imageio import open_image
    from detforge.data.formats import read_dataset
    from detforge.runtime.predict import predict

    ds = read_dataset(state["dataset"])
    val = [i for i in range(ds.num_images) if ds.images.split[i] == "val"] or [0]
    counts = np.bincount(ds.boxes.image_index, minlength=ds.num_images)
    busiest = max(val, key=lambda i: int(counts[i]))
    with open_image(ds.image_path(busiest)) as im:
        frame = np.asarray(im.convert("RGB"))
    video = cfg.out / "video" / "pan.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    _write_video(video, frame, cfg.video_frames)
    out = cfg.out / "video" / "tracks.jsonl"
    stats = predict(Path(state["onnx"]), video, out=out, track=True, conf=0.3, device="cpu",
                    save_vis=cfg.out / "video" / "annotated", progress=False)
    ids = {d["track_id"] for line in out.read_text(encoding="utf-8").splitlines()
           for d in json.loads(line)["detections"] if d["track_id"] is not None}
    return {"video": str(video), "tracks": str(out), "video_frames": stats.images,
            "track_ids": len(ids), "predict_ips": round(stats.throughput, 1)}


STEPS: list[tuple[str, Step]] = [
    ("synth", _synth), ("validate", _validate), ("split", _split), ("stats", _stats),
    ("train", _train), ("export", _export), ("evaluate", _evaluate),
    ("quantize", _quantize), ("benchmark", _benchmark), ("bundle", _bundle), ("track", _track),
]


def run_demo(cfg: DemoConfig, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every step and write ``summary.json`` and ``index.html``.

    Returns:
        The summary: artifact paths (``dataset``, ``run``, ``pt``, ``onnx``, ``int8_onnx``,
        ``report``) and key figures.
    """
    cfg.out.mkdir(parents=True, exist_ok=True)
    state_file = cfg.out / "steps.json"
    done: dict[str, Any] = {}
    if state_file.is_file():
        done = json.loads(state_file.read_text(encoding="utf-8"))
    state: dict[str, Any] = {}
    for record in done.values():
        state.update(record["outputs"])
    for name, step in STEPS:
        if name in done:
            echo(f"[{name}] reused ({done[name]['seconds']:.1f}s earlier)")
            continue
        echo(f"[{name}] running")
        start = time.perf_counter()
        outputs = step(cfg, state)
        seconds = time.perf_counter() - start
        state.update(outputs)
        done[name] = {"outputs": outputs, "seconds": seconds}
        atomic_write_json(state_file, done)
        echo(f"[{name}] done in {seconds:.1f}s")
    summary = _summary(cfg, state, done)
    atomic_write_json(cfg.out / "summary.json", summary)
    atomic_write_text(cfg.out / "index.html", render_index(summary))
    return summary


def _summary(cfg: DemoConfig, state: dict[str, Any], done: dict[str, Any]) -> dict[str, Any]:
    keys = ("dataset", "dataset_version", "run", "pt", "onnx", "int8_onnx", "engine_script",
            "stats_report", "evaluation_report", "fidelity_report", "validation", "benchmark",
            "video", "tracks")
    figures = ("images", "boxes", "findings", "map50_95", "map50", "map50_95_pt",
               "map50_95_onnx", "map50_95_int8", "parity_max_abs_diff", "fp32_ips",
               "int8_ips", "int8_speedup", "bundle_targets", "verify_passed", "video_frames",
               "track_ids", "predict_ips")
    out: dict[str, Any] = {k: state.get(k) for k in keys}
    out["bundle"] = state.get("bundle")
    out["benchmark_rows"] = state.get("benchmark_rows")
    out["report"] = str(cfg.out / "index.html")
    out["figures"] = {k: state.get(k) for k in figures}
    out["seconds"] = {k: round(v["seconds"], 1) for k, v in done.items()}
    return out
