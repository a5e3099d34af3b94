"""Benchmark: do active learning strategies beat random on a dataset with a rare class?

The dataset is generated with ``detforge data synth`` in two parts so that one class is
rare: ``--common`` images drawn with two classes (circle, square) and ``--rare`` images
drawn with three (circle, square, triangle); triangles therefore appear only in the rare
part, about 1 box in 13 with the default sizes. Both parts are joined into one YOLO dataset
(80 % train = the pool, 20 % val = the evaluation set, both seeded).

Models start from a base detector, as a team adding a class to a deployed model would:
yolo11n trained from its YAML on ``--base-images`` separate synthetic images of the two
common classes (``--base-epochs`` epochs; trained once and cached). Then ``detforge active
simulate`` replays ``--rounds`` rounds of ``--budget`` images per strategy for every seed
(each seed draws its own initial images and trains with its own seed; round 0 is shared by
the strategies of a seed), fine-tuning the base model on the labelled images (three classes)
at ``--imgsz`` for ``--epochs`` epochs per round, and evaluating mAP50-95 on the val split.

Usage::

    .venv/bin/python benchmarks/bench_active.py                       # the BENCHMARKS.md run
    .venv/bin/python benchmarks/bench_active.py --seeds 0 --rounds 1 --epochs 2   # quick

Prints the mean +- std table per labelled count and strategy, every round of every seed,
and the best strategy against random at equal labelled images; writes
``benchmarks/results/active.json`` (and keeps the simulation folder, which a rerun with
the same options resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def build_dataset(out: Path, *, common: int, rare: int, size: int, seed: int) -> dict[str, Any]:
    """Write the imbalanced dataset to ``out`` (YOLO) and return its class counts."""
    from detforge.core.atomic import link_or_copy
    from detforge.data.dataset import BoxTable, Dataset, ImageTable
    from detforge.data.formats import write_dataset
    from detforge.data.synth import generate

    if (out / "data.yaml").is_file():
        from detforge.data.formats import read_dataset

        ds = read_dataset(out)
        return dict(zip(ds.classes.names, ds.class_counts().tolist(), strict=True))
    work = Path(tempfile.mkdtemp(prefix="bench-active-", dir=out.parent))
    try:
        a = generate(work / "common", images=common, classes=2, seed=seed, size=(size, size),
                     splits=None)
        b = generate(work / "rare", images=rare, classes=3, seed=seed + 1, size=(size, size),
                     splits=None)
        stage = work / "joined"
        files = []
        for tag, part in (("common", a), ("rare", b)):
            for i in range(part.num_images):
                name = f"{tag}_{i:05d}.jpg"
                link_or_copy(part.image_path(i), stage / name)
                files.append(name)
        n = len(files)
        split = np.array(["train"] * n, dtype=object)
        rng = np.random.default_rng([seed, 99])
        split[rng.choice(n, round(0.2 * n), replace=False)] = "val"
        shifted = b.boxes.take(np.arange(len(b.boxes)))
        shifted.image_index = (shifted.image_index + a.num_images).astype(np.int32)
        ds = Dataset(b.classes, ImageTable.build(
            files, np.full(n, size), np.full(n, size), split=split.tolist()),
            BoxTable.concat([a.boxes, shifted]), root=stage,
            info={"name": "synth-imbalanced", "licence": "CC0-1.0",
                  "source": f"bench_active: synth {common} x 2 classes + {rare} x 3 classes"})
        write_dataset(ds, out, "yolo")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dict(zip(ds.classes.names, ds.class_counts().tolist(), strict=True))


def build_base(work: Path, *, images: int, epochs: int, size: int, batch: int) -> Path:
    """Train (once) the base detector on separate 2-class synthetic images; its best.pt."""
    from detforge.data.synth import synthesize
    from detforge.train import load_train_config, train

    best = work / "base" / "runs" / "base" / "v1" / "weights" / "best.pt"
    if best.is_file():
        return best
    shutil.rmtree(work / "base", ignore_errors=True)
    data = work / "base" / "data"
    synthesize(data, images=images, classes=2, seed=100, size=(size, size))
    config = load_train_config(flags={
        "data": str(data), "model": "yolo11n.yaml", "epochs": epochs, "imgsz": size,
        "batch": batch, "seed": 0, "name": "base", "out": str(work / "base" / "runs")},
        overrides=["tracking.enabled=false", "plots=false", "val=false", f"optim.nbs={batch}",
                   "optim.warmup_epochs=1"])
    result = train(config)
    print(f"base model {result.best}: {result.final_metrics}", flush=True)
    return result.best


def paired_gains(rows: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Per strategy and labelled count: mAP50-95 minus random's of the same seed."""
    rand = {(r["seed"], r["labelled"]): r["map50_95"] for r in rows if r["strategy"] == "random"}
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        key = (r["seed"], r["labelled"])
        if r["strategy"] == "random" or key not in rand:
            continue
        out.setdefault(r["strategy"], {}).setdefault(r["labelled"], {"values": []})
        out[r["strategy"]][r["labelled"]]["values"].append(r["map50_95"] - rand[key])
    for per_n in out.values():
        for d in per_n.values():
            v = np.asarray(d["values"])
            d["mean"] = float(v.mean())
            d["std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--common", type=int, default=440, help="images with 2 classes")
    parser.add_argument("--rare", type=int, default=120, help="images with 3 classes")
    parser.add_argument("--size", type=int, default=160, help="image side in pixels")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--initial", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=12, help="fine-tuning epochs per round")
    parser.add_argument("--base-images", type=int, default=300)
    parser.add_argument("--base-epochs", type=int, default=25)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--strategies", default="hybrid,entropy,random")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir())
                        / "detforge-bench-active", help="dataset and simulation folder")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "active.json")
    args = parser.parse_args(argv)

    os.environ.setdefault("YOLO_OFFLINE", "1")
    from detforge.active import simulate
    from detforge.data.report import text_table

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"ds_{args.common}_{args.rare}_{args.size}"
    counts = build_dataset(data, common=args.common, rare=args.rare, size=args.size, seed=0)
    print(f"dataset {data}: boxes per class {counts}", flush=True)
    t_base = time.perf_counter()
    base = build_base(args.work, images=args.base_images, epochs=args.base_epochs,
                      size=args.size, batch=args.batch)
    base_s = time.perf_counter() - t_base
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    sim_dir = args.work / (f"sim_r{args.rounds}_b{args.budget}_i{args.initial}_e{args.epochs}"
                           f"_s{args.imgsz}")
    t0 = time.perf_counter()
    res = simulate(data, out=sim_dir, rounds=args.rounds, budget=args.budget,
                   strategies=strategies, seeds=seeds, initial=args.initial,
                   epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, model=str(base),
                   progress=False)
    wall = time.perf_counter() - t0
    curves = res.summary["curves"]
    sizes = sorted({p["labelled"] for pts in curves.values() for p in pts})
    rows = [[n, *[next((f"{p['mean']:.4f} ± {p['std']:.4f}" for p in curves[s]
                        if p["labelled"] == n), "-") for s in strategies]] for n in sizes]
    print("\nmAP50-95, mean ± std over seeds", seeds)
    print(text_table(["labelled", *strategies], rows))
    print("\nevery round")
    print(text_table(["strategy", "seed", "round", "labelled", "mAP50-95", "mAP50",
                      "triangle AP", "triangle boxes"],
                     [[r["strategy"], r["seed"], r["round"], r["labelled"],
                       round(r["map50_95"], 4), round(r["map50"], 4),
                       round(r["per_class_ap"].get("triangle", -1), 4),
                       r["class_counts"].get("triangle", 0)] for r in res.rows]))
    paired = paired_gains(res.rows)
    print("\nmAP50-95 minus random's, same seed and labelled count (mean ± std over seeds)")
    print(text_table(["labelled", *[s for s in strategies if s != "random"]],
                     [[n, *[f"{paired[s][n]['mean']:+.4f} ± {paired[s][n]['std']:.4f}"
                            for s in strategies if s != "random"]]
                      for n in sizes if n != sizes[0]]) if "random" in strategies else "")
    print(f"\nbest strategy over all rounds: {res.summary['best']}")
    for v in res.summary["best_vs_random"]:
        print(f"at {v['labelled']} labelled: {v['best']} {v['best_mean']:.4f} ± "
              f"{v['best_std']:.4f} vs random {v['random_mean']:.4f} ± {v['random_std']:.4f} "
              f"({v['gain']:+.4f})")
    print(f"\nwall {wall:.0f} s ({res.resumed} rounds resumed); report {res.html}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"date": date.today().isoformat(), "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
              "args": {k: str(v) for k, v in vars(args).items()}, "class_counts": counts,
              "base_model": str(base), "base_train_s": base_s,
              "wall_s": wall, "resumed_rounds": res.resumed, "summary": res.summary,
              "paired_gains": paired_gains(res.rows),
              "rows": res.rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
