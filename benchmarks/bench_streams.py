"""Inference streams on a CPU: how one batch at a time compares with batches side by side.

Uses the models and JPEGs of ``bench_predict.py`` (its cache; run that first). Two parts,
each interleaved round by round so load from elsewhere hits every variant alike:

1. Model-only, random input of the model's size, images/s over wall time:
   - ``default``: one ONNX Runtime session with default options (threads spin), one call
     at a time;
   - ``sleeping``: one session with ``intra_op_num_threads = cores`` and idle threads that
     sleep (detforge's own session), one call at a time;
   - ``shared``: that session called from ``cores`` threads at once;
   - ``streams``: one single-thread session called from ``cores`` threads at once (what
     ``--streams auto`` runs on a CPU).
2. End to end, ``run_pipeline`` over the 500 JPEGs (no sink) for each ``streams x batch``
   pair given.
3. ``--parts ort-batches``: the default session alone at batches 1, 2, 4 and 8, median of
   the rounds (is the batch the pipeline picks also a fair one for the reference?).

Usage::

    .venv/bin/python benchmarks/bench_streams.py --json benchmarks/results/streams.json

Prints two tables and writes the JSON. Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench_predict"
MODELS = {"fp32 320": "yolo11n_320.onnx", "fp32 640": "yolo11n_640.onnx",
          "fp32 480x640": "yolo11n_480x640.onnx"}


def _session(path: Path, threads: int | None, spin: bool | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if spin is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def model_only(path: Path, batch: int, rounds: int, calls: int) -> dict[str, float]:
    """Median images/s of each variant over ``rounds`` interleaved rounds."""
    cores = len(os.sched_getaffinity(0))
    default = _session(path, None, None)
    inp = default.get_inputs()[0]
    x = np.random.default_rng(0).random((batch, 3, inp.shape[2], inp.shape[3]), np.float32)
    sleeping = _session(path, cores, False)
    single = _session(path, 1, False)

    def serial(sess: Any) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            sess.run(None, {inp.name: x})
        return calls * batch / (time.perf_counter() - t0)

    def parallel(sess: Any) -> float:
        with ThreadPoolExecutor(cores) as pool:
            t0 = time.perf_counter()
            list(pool.map(lambda _: sess.run(None, {inp.name: x}), range(calls)))
            return calls * batch / (time.perf_counter() - t0)

    variants = {"default": lambda: serial(default), "sleeping": lambda: serial(sleeping),
                "shared": lambda: parallel(sleeping), "streams": lambda: parallel(single)}
    for fn in variants.values():  # warm-up
        fn()
    runs: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds):
        names = list(variants)
        for name in names[r % len(names):] + names[:r % len(names)]:
            runs[name].append(variants[name]())
    return {k: round(statistics.median(v), 2) for k, v in runs.items()}


def ort_batches(path: Path, rounds: int) -> dict[str, float]:
    """Median images/s of a default session, one call at a time, at batches 1 to 8."""
    sess = _session(path, None, None)
    inp = sess.get_inputs()[0]
    runs: dict[int, list[float]] = {b: [] for b in (1, 2, 4, 8)}
    for r in range(rounds + 1):  # round 0 warms up
        for batch in runs:
            x = np.random.default_rng(0).random((batch, 3, inp.shape[2], inp.shape[3]),
                                                np.float32)
            calls = max(1, 32 // batch)
            t0 = time.perf_counter()
            for _ in range(calls):
                sess.run(None, {inp.name: x})
            if r:
                runs[batch].append(calls * batch / (time.perf_counter() - t0))
    return {f"batch {b}": round(statistics.median(v), 2) for b, v in runs.items()}


def end_to_end(path: Path, images: list[Path], pairs: list[tuple[int, int]],
               chunks: int) -> dict[str, float]:
    """Images/s of ``run_pipeline`` for each ``(streams, batch)`` over all images."""
    from detforge.runtime import load_model
    from detforge.runtime.pipeline import run_pipeline
    from detforge.runtime.sources import open_source

    model = load_model(path, device="cpu")
    listing = CACHE / "streams_list.txt"
    totals = {p: [0, 0.0] for p in pairs}

    def run(pair: tuple[int, int], part: list[Path]) -> tuple[int, float]:
        listing.write_text("".join(f"{p}\n" for p in part))
        stats = run_pipeline(model, open_source(listing), [], streams=pair[0], batch=pair[1],
                             progress=False, warmup=False)
        return stats.images, stats.wall_s

    for pair in pairs:  # warm-up: sessions, stream sessions, thread pools
        run(pair, images[:16])
    step = -(-len(images) // chunks)
    for i, start in enumerate(range(0, len(images), step)):
        order = pairs[i % len(pairs):] + pairs[:i % len(pairs)]
        for pair in order:
            n, secs = run(pair, images[start:start + step])
            totals[pair][0] += n
            totals[pair][1] += secs
    model.close()
    return {f"streams {s} batch {b}": round(n / secs, 2) for (s, b), (n, secs) in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/streams.json")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--pairs", default="1x2,1x4,1x8,2x1,2x2,2x4",
                        help="end-to-end STREAMSxBATCH pairs")
    parser.add_argument("--parts", default="model-only,end-to-end",
                        help="comma-separated: model-only, end-to-end, ort-batches")
    args = parser.parse_args()
    images = sorted((args.cache / "images_500").glob("*.jpg"))
    if not images or not all((args.cache / f).is_file() for f in MODELS.values()):
        raise SystemExit(f"no models or images in {args.cache}: run "
                         f"benchmarks/bench_predict.py first")
    pairs = [(int(s), int(b)) for s, b in (p.split("x") for p in args.pairs.split(","))]
    start = time.perf_counter()
    rows = []
    parts = set(args.parts.split(","))
    for name, file in MODELS.items():
        path = args.cache / file
        batch = 4 if name == "fp32 320" else 1
        row: dict[str, Any] = {"model": name}
        if "model-only" in parts:
            mo = model_only(path, batch, args.rounds, 24 if batch > 1 else 16)
            row.update(model_only_batch=batch, model_only_ips=mo)
            print(f"{name} model-only b{batch}: "
                  + "  ".join(f"{k} {v:.1f}" for k, v in mo.items())
                  + f"  (streams/default {mo['streams'] / mo['default']:.2f}x)", flush=True)
        if "end-to-end" in parts:
            row["end_to_end_ips"] = e2e = end_to_end(path, images, pairs, args.chunks)
            print(f"{name} end-to-end: " + "  ".join(f"{k}: {v:.1f}" for k, v in e2e.items()),
                  flush=True)
        if "ort-batches" in parts:
            row["ort_default_ips_by_batch"] = ob = ort_batches(path, args.rounds)
            print(f"{name} ORT default session: "
                  + "  ".join(f"{k}: {v:.1f}" for k, v in ob.items()), flush=True)
        rows.append(row)
    import onnxruntime as ort

    out = {"rows": rows, "run": {
        "date": date.today().isoformat(), "cpu_cores": len(os.sched_getaffinity(0)),
        "cpu": platform.machine(), "onnxruntime": ort.__version__,
        "python": platform.python_version(), "rounds": args.rounds, "chunks": args.chunks,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "wall_s": round(time.perf_counter() - start, 1)}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
