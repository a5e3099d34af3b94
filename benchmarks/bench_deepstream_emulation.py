"""How closely the emulated DeepStream pipeline agrees with the workstation, stage by stage.

For letterboxed 4:3 (640x480) and 16:9 (640x360) images of the synthetic dataset, a trained
YOLO11n (the one ``bench_quantize.py`` trains and caches; trained here when absent) is
bundled for an Orin Nano (FP16) with streammux at the image size, once with the pad-fill
adapter (nvinfer's black bands filled with the training grey inside the model) and once
without, and once with a stretching streammux (model size, enable-padding=0). Each bundle
goes through ``deploy verify``, whose emulation reports the agreement with the workstation
(same class, IoU >= 0.9, boxes within 0.05 of the threshold not counted) after each stage:
nvinfer scaling with grey padding, black padding, streammux, parser and cluster NMS.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_deepstream_emulation.py \\
        --json benchmarks/results/deepstream_emulation.json

Prints a table and writes the JSON. Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("DETFORGE_BENCH_CACHE", "/tmp/detforge-bench-cache"))
ASPECTS = {"4:3": (640, 480), "16:9": (640, 360)}


def _model(cache: Path, imgsz: int) -> Path:
    """The deepstream-layout ONNX of the cached trained YOLO11n (trained when absent)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_quantize import make_dataset, train_model

    from detforge.export.onnx_export import export_onnx

    out = cache / f"models{imgsz}" / "deepstream.onnx"
    if not out.is_file():
        pt = train_model(cache, make_dataset(cache, images=300), minutes=10.0, imgsz=imgsz)
        out.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(pt, out, imgsz=(imgsz, imgsz), batch=None, layout="deepstream")
    return out


def _dataset(cache: Path, aspect: str, images: int) -> Path:
    from detforge.data.synth import synthesize

    w, h = ASPECTS[aspect]
    out = cache / f"synth_{w}x{h}_{images}"
    if not (out / "data.yaml").is_file():
        if out.exists():
            shutil.rmtree(out)
        synthesize(out, images=images, classes=3, seed=11, size=(w, h), splits=(0.5, 0.5))
    return out


def _stretch(folder: Path, imgsz: int) -> None:
    path = folder / "deepstream_app_config.txt"
    text = path.read_text()
    lines = []
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        if section == "[streammux]" and line.startswith(("width=", "height=")):
            line = f"{line.split('=')[0]}={imgsz}"
        if section == "[streammux]" and line.startswith("enable-padding="):
            line = "enable-padding=0"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from detforge.deploy.bundle import bundle_model
    from detforge.deploy.verify import verify_bundle

    model = _model(args.cache, args.imgsz)
    work = args.cache / "emulation"
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    for aspect, size in ASPECTS.items():
        data = _dataset(args.cache, aspect, args.images)
        for variant in ("no pad-fill", "pad-fill", "stretched streammux"):
            out = work / f"{aspect.replace(':', 'x')}-{variant.replace(' ', '-')}"
            t0 = time.perf_counter()
            bundle_model(model, targets=["orin-nano"], out=out, precision="fp16", data=data,
                         reference_images=args.images // 2, source_size=size, conf=args.conf,
                         pad_fill=variant != "no pad-fill")
            folder = out / "orin-nano"
            if variant == "stretched streammux":
                _stretch(folder, args.imgsz)
            report = verify_bundle(folder, speed_seconds=0.05, min_device_agreement=0)
            rows.append({"aspect": aspect, "size": list(size), "variant": variant,
                         "stages": report.stages, "seconds": time.perf_counter() - t0,
                         "reasons": report.reasons})
    import onnxruntime as ort

    return {"date": date.today().isoformat(), "cpu_cores": len(os.sched_getaffinity(0)),
            "cpu": platform.machine(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "imgsz": args.imgsz, "conf": args.conf,
            "reference_images": args.images // 2, "iou": 0.9, "rows": rows}


def table(result: dict[str, Any]) -> str:
    stages = [s["stage"] for s in result["rows"][0]["stages"]]
    head = f"{'aspect':6s} {'variant':21s} " + " ".join(f"{s[:22]:>22s}" for s in stages)
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        cells = " ".join(f"{s['agreement']:>8.3f} ({s['matched']:>3d}/{s['matched'] + s['missing'] + s['extra']:>3d})"  # noqa: E501
                         .rjust(22) for s in r["stages"])
        lines.append(f"{r['aspect']:6s} {r['variant']:21s} {cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--images", type=int, default=80, help="per aspect; half are "
                                                               "reference images")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--json", type=Path,
                        default=Path("benchmarks/results/deepstream_emulation.json"))
    args = parser.parse_args()
    result = run(args)
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
