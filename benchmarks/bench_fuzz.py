"""Long fuzzing run of the dataset readers, validate and writers (detforge.data.fuzz).

Each format's campaign mutates a valid dataset (bytes, JSON/YAML/XML structure, text
fields, numbers at 2^31 / 2^63 and beyond, NaN/inf, deep nesting, YAML alias and XML
entity bombs, bogus encodings, NUL / overlong / odd file names, symlink loops) and runs
every input through read -> validate (images too) -> write another format -> read back,
each in its own child process with a CPU-time and a memory limit. The target is 0
tracebacks, 0 hangs, 0 blow-ups and 0 unreadable outputs.

Before the campaigns, the harness is calibrated: each probe (a raise, a busy loop, a
300 MiB allocation...) must be classified as what it is.

Run:  .venv/bin/python benchmarks/bench_fuzz.py [--inputs 2000] [--formats coco,yolo,voc,kitti]
Writes benchmarks/results/fuzz.json and prints a table; failing inputs are copied to
$TMPDIR/detforge-fuzz-failures/<format>-<seed>-<index>/ to replay.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def calibrate() -> dict[str, str]:
    """Run every probe; return probe -> outcome kind (must equal the expected kind)."""
    from detforge.data.fuzz.runner import probe, run_in_child

    expected = {"clean": "clean", "error": "error", "multi-line-error": "traceback",
                "huge-error": "traceback", "traceback": "traceback", "hang": "hang",
                "blowup": "blowup"}
    got = {name: run_in_child(probe(name), cpu_seconds=1, memory_mb=100).kind
           for name in expected}
    bad = {k: v for k, v in got.items() if v != expected[k]}
    if bad:
        raise SystemExit(f"harness calibration failed: {bad} (expected {expected})")
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=2000, help="inputs per format")
    parser.add_argument("--formats", default="coco,yolo,voc,kitti")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-seconds", type=int, default=10, help="per-input CPU limit")
    parser.add_argument("--memory-mb", type=int, default=512,
                        help="per-input memory growth limit")
    parser.add_argument("--json", type=Path, default=RESULTS / "fuzz.json")
    args = parser.parse_args()

    from tqdm import tqdm

    from detforge.data.fuzz import run_campaign

    calibration = calibrate()
    failures_dir = Path(tempfile.gettempdir()) / "detforge-fuzz-failures"
    rows: list[dict[str, Any]] = []
    for fmt in args.formats.split(","):
        start = time.perf_counter()
        campaign = run_campaign(
            fmt, args.inputs, seed=args.seed, cpu_seconds=args.cpu_seconds,
            memory_mb=args.memory_mb, keep_failures=failures_dir,
            progress=lambda it, f=fmt: tqdm(it, total=args.inputs, desc=f, leave=False))
        row = campaign.to_dict()
        row["wall_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)

    header = ("format", "inputs", "clean", "error (1 line)", "traceback", "hang", "blowup",
              "bad output", "slowest s", "max peak MiB")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        c = r["counts"]
        print(f"| {r['format']} | {r['inputs']} | {c['clean']} | {c['error']} | "
              f"{c['traceback']} | {c['hang']} | {c['blowup']} | {c['bad-output']} | "
              f"{r['max_seconds']:.2f} | {r['max_peak_mb']:.0f} |")
    for r in rows:
        for f in r["failures"][:10]:
            print(f"  {r['format']} input {f['index']} ({f['mutator']}): {f['kind']}: "
                  f"{f['detail'][:200]}")
    out = {"date": date.today().isoformat(), "machine": platform.platform(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "seed": args.seed,
           "cpu_seconds": args.cpu_seconds, "memory_mb": args.memory_mb,
           "calibration": calibration, "campaigns": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
