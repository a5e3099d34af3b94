"""Benchmark: training images/s of ``detforge train`` vs raw Ultralytics, side by side.

Three whole processes train yolo11n from its YAML on the same prepared YOLO dataset with
the same arguments:

* ``detforge``: ``detforge train ...`` (all allowed cores, offline, metrics, lineage);
* ``ultralytics-default``: ``YOLO("yolo11n.yaml").train(...)`` as a user runs it, with its
  default thread count (``os.cpu_count() - 1``: one thread on a 2-core machine);
* ``ultralytics-same-threads``: the same call with detforge's thread setup (torch set to
  all allowed cores, ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY=PASSIVE`` in the
  environment), so the difference to ``detforge`` is the wrapper's own overhead.

Images/s is measured the same way in all three: training images divided by the time from
Ultralytics' ``on_train_epoch_start`` to ``on_train_epoch_end`` callbacks, averaged over the
epochs after the first (warm-up). Whole-process wall time is reported too. The variants run
in rounds whose order alternates, and each variant's median over the rounds is compared.
The two raw runs get Ultralytics' offline environment (``YOLO_OFFLINE=1``, no auto-install,
``sync=False``, local fonts) so that no variant waits on the network, and its MLflow
callback off; ``detforge`` runs as users run it, MLflow tracking (local SQLite) included,
which adds to its wall time but not to its epoch times. ``args.yaml`` of the runs is
compared to prove they trained with the same arguments.

Usage::

    .venv/bin/python benchmarks/bench_train.py                  # 96 images, 160 px, 3 epochs
    .venv/bin/python benchmarks/bench_train.py --rounds 1 --images 32 --epochs 2   # quick

Writes ``benchmarks/results/train.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent

RAW_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from detforge.train.offline import offline_environment

args = json.loads(sys.argv[1])
threads = int(sys.argv[2])  # 0: Ultralytics' default
offline_environment(sys.argv[3])  # the env vars a careful user sets; fonts present
from ultralytics import YOLO
from ultralytics.utils import SETTINGS
SETTINGS.update({"sync": False, "mlflow": False})  # no tracking on this side

times = {}
model = YOLO("yolo11n.yaml")

def pretrain_start(trainer):
    import torch
    if threads:
        torch.set_num_threads(threads)
    times["threads"] = torch.get_num_threads()

def epoch_start(trainer):
    times["t0"] = time.perf_counter()

def epoch_end(trainer):
    dt = time.perf_counter() - times["t0"]
    times.setdefault("ips", []).append(len(trainer.train_loader.dataset) / dt)

model.add_callback("on_pretrain_routine_start", pretrain_start)
model.add_callback("on_train_epoch_start", epoch_start)
model.add_callback("on_train_epoch_end", epoch_end)
model.train(**args)
Path(sys.argv[4]).write_text(json.dumps({"ips": times["ips"], "threads": times["threads"]}))
"""

# Keys of args.yaml that name paths or run identity rather than training behaviour.
_PATH_KEYS = {"data", "project", "name", "save_dir", "model"}


def _clean_env() -> dict[str, str]:
    """The caller's environment without thread or Ultralytics settings (a fresh shell)."""
    drop = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MPLCONFIGDIR")
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith(("YOLO_", "ULTRALYTICS_"))}
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    with log.open("w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT,
                              env={**_clean_env(), **(env or {})}, cwd=log.parent, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(cmd[:4])}... failed with exit {done.returncode}:\n{tail}")
    return wall


def _steady(ips: list[float]) -> float:
    """Mean images/s of the epochs after the first (all of them when there is one)."""
    steady = ips[1:] or ips
    return statistics.fmean(steady)


def run_detforge(work: Path, data: Path, common: dict[str, Any], tag: str) -> dict[str, Any]:
    out = work / "runs" / tag
    cmd = [str(Path(sys.executable).parent / "detforge"), "train", "--data", str(data),
           "--model", "yolo11n.yaml", "--epochs", str(common["epochs"]),
           "--imgsz", str(common["imgsz"]), "--batch", str(common["batch"]),
           "--seed", str(common["seed"]), "--name", "bench", "--out", str(out),
           "--set", f"val={common['val']}",
           "--set", f"plots={common['plots']}", "--set", f"workers={common['workers']}",
           "--set", "patience=100"]
    wall = _run(cmd, work / f"{tag}.log")
    run_dir = out / "bench" / "v1"
    rows = json.loads((run_dir / "metrics.json").read_text())
    record = json.loads((run_dir / "run.json").read_text())
    return {"ips": [r["train_images_per_s"] for r in rows], "wall_s": wall,
            "threads": record["hardware"]["threads_used"], "args": run_dir / "args.yaml"}


def run_raw(work: Path, data_yaml: Path, common: dict[str, Any], threads: int,
            tag: str) -> dict[str, Any]:
    script = work / "raw.py"
    script.write_text(RAW_SCRIPT)
    result = work / f"{tag}.json"
    args = {**common, "data": str(data_yaml), "project": str(work / "runs" / tag),
            "name": "bench", "exist_ok": True, "pretrained": False, "deterministic": False,
            "amp": False, "patience": 100}
    cmd = [sys.executable, str(script), json.dumps(args), str(threads),
           str(work / ".ultralytics"), str(result)]
    env = {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"} if threads else {}
    wall = _run(cmd, work / f"{tag}.log", env)
    got = json.loads(result.read_text())
    return {"ips": got["ips"], "wall_s": wall, "threads": got["threads"],
            "args": work / "runs" / tag / "bench" / "args.yaml"}


def _arg_diff(a: Path, b: Path) -> dict[str, list[Any]]:
    ya, yb = yaml.safe_load(a.read_text()), yaml.safe_load(b.read_text())
    return {k: [ya.get(k), yb.get(k)] for k in sorted(set(ya) | set(yb))
            if k not in _PATH_KEYS and ya.get(k) != yb.get(k)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=96, help="synthetic images (80%% train)")
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="rounds; the order alternates")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train.json")
    args = ap.parse_args()

    from detforge.core.atomic import atomic_write_json
    from detforge.data.synth import synthesize
    from detforge.train.dataset_prep import prepare_yolo_dataset
    from detforge.train.threads import allowed_cores

    common = {"epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
              "device": "cpu", "seed": 0, "val": False, "plots": False, "workers": 0}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        data = work / "ds"
        synthesize(data, images=args.images, classes=2, seed=0, size=(args.imgsz, args.imgsz))
        prep = prepare_yolo_dataset(data, work / "prepared")
        cores = allowed_cores()
        variants = {
            "detforge": lambda tag: run_detforge(work, data, common, tag),
            "ultralytics-default": lambda tag: run_raw(work, prep.data_yaml, common, 0, tag),
            "ultralytics-same-threads": lambda tag: run_raw(work, prep.data_yaml, common,
                                                            cores, tag),
        }
        names = list(variants)
        samples: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                got = variants[name](f"{name}-r{r}")
                got["steady_ips"] = _steady(got["ips"])
                samples[name].append(got)
                print(f"round {r + 1} {name:<25} {got['steady_ips']:6.2f} img/s  "
                      f"{got['wall_s']:6.1f} s wall  threads={got['threads']}", flush=True)
        diffs = {n: _arg_diff(samples["detforge"][0]["args"], samples[n][0]["args"])
                 for n in names[1:]}
        load = os.getloadavg()

    med = {n: statistics.median(s["steady_ips"] for s in samples[n]) for n in names}
    wall = {n: statistics.median(s["wall_s"] for s in samples[n]) for n in names}
    speedup = med["detforge"] / med["ultralytics-default"]
    overhead = 1 - med["detforge"] / med["ultralytics-same-threads"]
    print(f"\n{'variant':<26} {'threads':>7} {'img/s':>7} {'wall s':>7}")
    for n in names:
        print(f"{n:<26} {samples[n][0]['threads']:>7} {med[n]:>7.2f} {wall[n]:>7.1f}")
    print(f"\nspeed-up vs Ultralytics defaults: {speedup:.2f}x (target >= 1.5x)")
    print(f"wrapper overhead vs same threads: {overhead * 100:+.1f}% (target <= 3%)")
    print(f"argument differences to detforge's args.yaml: {diffs}")
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")

    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU ({cores} allowed), "
                   f"Python {platform.python_version()}",
        "load_average_end": list(load),
        "setup": {"model": "yolo11n.yaml", "images": args.images,
                  "train_images": prep.num_train, "rounds": args.rounds, **common},
        "variants": {n: {"threads": samples[n][0]["threads"], "median_images_per_s": med[n],
                         "median_wall_s": wall[n],
                         "rounds": [{"images_per_s_per_epoch": s["ips"],
                                     "steady_images_per_s": s["steady_ips"],
                                     "wall_s": s["wall_s"]} for s in samples[n]]}
                     for n in names},
        "speedup_vs_default": speedup,
        "overhead_vs_same_threads": overhead,
        "argument_differences": diffs,
        "targets": {"speedup_vs_default": 1.5, "overhead_vs_same_threads": 0.03},
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
