"""Ray overhead: ``predict --ray`` on a local cluster vs the local pipeline, same cores.

Run (about 8 minutes on a 2-core CPU; everything offline)::

    .venv/bin/python benchmarks/bench_ray.py --json benchmarks/results/ray.json

What it does:

1. Renders ``--images`` (default 2,000) seeded 640x480 JPEGs with ``detforge.data.synth``
   and exports YOLO11n (seeded random weights, 80 classes, FP32, dynamic batch) at
   ``--imgsz`` (default 320) into ``.cache/bench_ray`` (reused by later runs).
2. Start-up, from a process where Ray was never started: importing Ray, starting the
   local cluster (loopback, 2 CPUs here), starting the inference actors (model load and
   warm-up included), and the first chunk's results back; then the cluster is stopped.
3. Throughput, side by side: a local cluster is started once, then each round runs the
   local pipeline (``detforge.runtime.predict.predict``, its defaults: two streams) and the
   cluster run (``detforge.scale.predict_on_cluster``: 2 decode tasks at a time, two
   single-thread inference actors) over all the images into JSON Lines, in alternating
   order so load from elsewhere on a shared machine hits both alike. The cluster's figure
   is over the run's wall time (the driver loop, actors already loaded) and, separately,
   including the actors' start. Both outputs are checked byte for byte. The CPU time of
   this process is recorded per image: for the local run that is the whole pipeline, for
   the cluster run the driver alone (the cost that does not spread over nodes).

Prints a table and writes the JSON. Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench_ray"


def make_images(folder: Path, count: int) -> Path:
    """Seeded 640x480 JPEGs (reused when already there); the folder."""
    if len(list(folder.glob("synth_*.jpg"))) != count:
        from detforge.data.synth import generate

        generate(folder, images=count, classes=5, seed=0, size=(640, 480), splits=None)
    return folder


def make_model(cache: Path, imgsz: int) -> Path:
    """YOLO11n (seeded random weights) exported to ONNX at ``imgsz`` (reused)."""
    onnx = cache / f"yolo11n_{imgsz}.onnx"
    if onnx.is_file():
        return onnx
    import torch

    from detforge.export.onnx_export import export_onnx
    from detforge.train.offline import import_ultralytics

    import_ultralytics(cache / "ultralytics-config")
    from ultralytics.nn.tasks import DetectionModel

    pt = cache / "yolo11n_nc80.pt"
    torch.manual_seed(0)
    net = DetectionModel("yolo11n.yaml", nc=80, verbose=False)
    net.names = {i: f"class{i}" for i in range(80)}
    torch.save({"model": net, "train_args": {}, "epoch": -1}, pt)
    export_onnx(pt, onnx, imgsz=(imgsz, imgsz), layout="raw")
    return onnx


def startup(model: Path, images: Path, cpus: int) -> dict[str, float]:
    """Seconds of each start-up step on a cold process (Ray not imported before)."""
    if "ray" in sys.modules:
        raise SystemExit("start-up must be measured before Ray is imported")
    from detforge.runtime.sources import open_source
    from detforge.scale import Cluster, InferencePool, ModelSpec, run_on_cluster

    t0 = time.perf_counter()
    import ray  # noqa: F401

    t_import = time.perf_counter() - t0
    first = sorted(images.glob("*.jpg"))[:16]
    listing = CACHE / "startup_list.txt"
    listing.write_text("".join(f"{p}\n" for p in first))
    t1 = time.perf_counter()
    with Cluster("local", num_cpus=cpus) as cluster:
        t_cluster = time.perf_counter() - t1
        t2 = time.perf_counter()
        with InferencePool(cluster.require(), ModelSpec(str(model))) as pool:
            t_actors = time.perf_counter() - t2
            t3 = time.perf_counter()
            run_on_cluster(cluster.require(), pool, open_source(listing), [], progress=False,
                           chunk_size=16)
            t_first = time.perf_counter() - t3
        t4 = time.perf_counter()
    t_stop = time.perf_counter() - t4
    return {"import_ray_s": round(t_import, 2), "start_cluster_s": round(t_cluster, 2),
            "start_actors_s": round(t_actors, 2), "first_chunk_16_images_s": round(t_first, 2),
            "total_to_first_results_s": round(t_import + t_cluster + t_actors + t_first, 2),
            "stop_cluster_s": round(t_stop, 2)}


def _cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def throughput(model: Path, images: Path, rounds: int, cpus: int,
               chunk: int) -> list[dict[str, Any]]:
    """Per round: images/s of the local pipeline and of the cluster run, same inputs."""
    from detforge.runtime.predict import predict
    from detforge.scale import Cluster, predict_on_cluster

    out_dir = CACHE / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with Cluster("local", num_cpus=cpus):
        # warm-up: worker processes, sessions, page cache
        sample = sorted(images.glob("*.jpg"))[:64]
        warm = CACHE / "warm_list.txt"
        warm.write_text("".join(f"{p}\n" for p in sample))
        predict(model, warm, out=out_dir / "warm_local.jsonl", progress=False)
        predict_on_cluster(model, warm, out=out_dir / "warm_ray.jsonl", progress=False,
                           chunk_size=chunk)
        for r in range(rounds):
            row: dict[str, Any] = {"round": r + 1}
            for name in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
                target = out_dir / f"{name}.jsonl"
                cpu0 = _cpu_s()
                t0 = time.perf_counter()
                if name == "local":
                    stats: Any = predict(model, images, out=target, progress=False)
                    row["local_ips"] = round(stats.images / stats.wall_s, 2)
                else:
                    stats = predict_on_cluster(model, images, out=target, progress=False,
                                               chunk_size=chunk)
                    row["ray_ips"] = round(stats.images / stats.wall_s, 2)
                    row["ray_ips_with_actor_start"] = round(
                        stats.images / (time.perf_counter() - t0), 2)
                    row["ray_actor_start_s"] = round(stats.setup_s, 2)
                    row["retried"] = stats.retried
                row["images"] = stats.images
                row[f"{name}_cpu_ms_per_image_this_process"] = round(
                    (_cpu_s() - cpu0) * 1000 / max(1, stats.images), 3)
            row["ratio"] = round(row["ray_ips"] / row["local_ips"], 3)
            row["ratio_with_actor_start"] = round(row["ray_ips_with_actor_start"]
                                                  / row["local_ips"], 3)
            row["identical_output"] = ((out_dir / "local.jsonl").read_bytes()
                                       == (out_dir / "ray.jsonl").read_bytes())
            rows.append(row)
            print(f"round {r + 1}: local {row['local_ips']:.1f} img/s, ray "
                  f"{row['ray_ips']:.1f} img/s ({row['ratio']:.2f}x; "
                  f"{row['ratio_with_actor_start']:.2f}x with the actors' start), identical "
                  f"output: {row['identical_output']}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/ray.json")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=32, help="images per Ray task")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    cpus = len(os.sched_getaffinity(0))
    CACHE.mkdir(parents=True, exist_ok=True)
    load_before = [round(v, 2) for v in os.getloadavg()]
    images = make_images(CACHE / f"images_{args.images}", args.images)
    model = make_model(CACHE, args.imgsz)
    start = time.perf_counter()
    cold = startup(model, images, cpus)
    print("start-up: " + ", ".join(f"{k} {v}" for k, v in cold.items()), flush=True)
    rows = throughput(model, images, args.rounds, cpus, args.chunk)
    median = {k: round(statistics.median(r[k] for r in rows), 3)
              for k in ("local_ips", "ray_ips", "ray_ips_with_actor_start", "ratio",
                        "ratio_with_actor_start", "local_cpu_ms_per_image_this_process",
                        "ray_cpu_ms_per_image_this_process")}
    print(f"\n{'':34}{'local':>10}{'ray':>10}{'ray/local':>11}")
    print(f"{'images/s (median of rounds)':34}{median['local_ips']:>10.1f}"
          f"{median['ray_ips']:>10.1f}{median['ratio']:>10.2f}x")
    print(f"{'  with the actors start':34}{'':>10}{median['ray_ips_with_actor_start']:>10.1f}"
          f"{median['ratio_with_actor_start']:>10.2f}x")
    print(f"{'cold start to first results (s)':34}{'':>10}"
          f"{cold['total_to_first_results_s']:>10.1f}")
    print(f"{'CPU ms per image in this process':34}"
          f"{median['local_cpu_ms_per_image_this_process']:>10.2f}"
          f"{median['ray_cpu_ms_per_image_this_process']:>10.2f}  (ray: the driver alone)")
    import onnxruntime as ort
    import ray

    out = {"startup": cold, "rounds": rows, "median": median, "run": {
        "date": date.today().isoformat(), "cpu_cores": cpus, "cpu": platform.machine(),
        "images": args.images, "imgsz": args.imgsz, "chunk": args.chunk,
        "ray": ray.__version__, "onnxruntime": ort.__version__,
        "python": platform.python_version(), "load_average_before": load_before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "wall_s": round(time.perf_counter() - start, 1)}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
