"""GPU model-only throughput: PyTorch FP32 vs FP16 (+ channels-last) for a YOLO11n.

Run on a CUDA machine (needs torch with CUDA and ultralytics):
    python benchmarks/bench_gpu_fp16.py --json benchmarks/results/gpu_fp16.json
Prints a table and writes JSON. The model is built from yolo11n.yaml (random weights:
speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, default=Path("gpu_fp16.json"))
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics.nn.tasks import DetectionModel

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    dev = torch.device("cuda")
    base = DetectionModel("yolo11n.yaml", nc=80, verbose=False).fuse().eval().to(dev)
    rows = []
    for imgsz in args.imgsz:
        for batch in args.batch:
            x = torch.rand(batch, 3, imgsz, imgsz, device=dev)
            for name, dtype, cl in (("fp32", torch.float32, False), ("fp16", torch.float16, False),
                                    ("fp16+cl", torch.float16, True)):
                m = base.to(dtype)
                xi = x.to(dtype)
                if cl:
                    m = m.to(memory_format=torch.channels_last)
                    xi = xi.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    for _ in range(10):
                        m(xi)
                    torch.cuda.synchronize()
                    n, start = 0, time.perf_counter()
                    while time.perf_counter() - start < args.seconds:
                        m(xi)
                        n += 1
                    torch.cuda.synchronize()
                    elapsed = time.perf_counter() - start
                rows.append({"imgsz": imgsz, "batch": batch, "precision": name,
                             "ips": n * batch / elapsed, "ms_per_batch": 1000 * elapsed / n})
                base = base.to(torch.float32).to(memory_format=torch.contiguous_format)
    fp32 = {(r["imgsz"], r["batch"]): r["ips"] for r in rows if r["precision"] == "fp32"}
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(f"{'imgsz':>5} {'batch':>5} {'precision':>9} {'img/s':>9} {'ms/batch':>9} {'vs fp32':>7}")
    for r in rows:
        r["vs_fp32"] = r["ips"] / fp32[(r["imgsz"], r["batch"])]
        print(f"{r['imgsz']:5d} {r['batch']:5d} {r['precision']:>9} {r['ips']:9.0f} "
              f"{r['ms_per_batch']:9.2f} {r['vs_fp32']:7.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(0),
                                     "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
