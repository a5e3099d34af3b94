"""``active simulate``: replay select -> label -> retrain on a labelled dataset, per strategy.

The labels of the training images are hidden; the validation split (else test, else a fixed
20 % hold-out) is the yardstick every model is scored on. Per seed:

1. round 0: ``initial`` training images drawn at random (the same for every strategy) are
   "labelled"; a model is trained on them and evaluated;
2. round r: each strategy picks ``budget`` more images from the rest of the pool with its own
   model of round r - 1 (exactly as ``active select`` would, near duplicates of labelled
   images left out; strategies that need embeddings score through the model's ONNX export),
   their labels are revealed, a new model is trained on all labelled images (from the same
   starting point as round 0: a model YAML or the weights given) and evaluated.

Training goes through :func:`detforge.train.train` (tracking off, no per-epoch validation),
evaluation through :func:`detforge.evaluate.evaluate_model` (pycocotools-identical COCO
mAP). Everything a round needs next is kept in its folder and its ``result.json`` is written
last, so an interrupted simulation resumes at the first unfinished round; more rounds,
strategies or seeds can be added later with the same options. The outputs
``simulation.json`` (every round, the mean and std per strategy and labelled count) and
``report.html`` (the curves and tables) are rewritten after every round.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.active.pool import dataset_pool
from detforge.active.selection import ChooseOptions, choose
from detforge.active.strategies import get_strategy
from detforge.core.atomic import atomic_write_json
from detforge.core.errors import ConfigError
from detforge.data.dataset import Dataset

__all__ = ["SimulationConfig", "SimulationResult", "simulate", "summarise"]

METRIC = "mAP50-95"
_EVAL_SEED = 12345  # the hold-out, when there is no val/test split, is the same for all seeds


@dataclass(frozen=True)
class SimulationConfig:
    """Options every round of a simulation depends on (a resumed run must match them).

    Attributes:
        dataset: The dataset folder or file.
        budget: Images picked per round.
        initial: Images labelled at round 0.
        epochs: Training epochs per round.
        imgsz: Training and inference size.
        model: Model YAML or weights trained from.
        batch: Training batch.
        device: ``cpu`` or GPU indices for training.
        overrides: Extra ``key=value`` training overrides.
        uncertainty: ``hybrid``'s measure.
        aggregate: Box-to-image aggregation.
        hybrid_factor: ``hybrid``'s pre-selection factor.
    """

    dataset: str
    budget: int
    initial: int
    epochs: int
    imgsz: int
    model: str
    batch: int
    device: str = "cpu"
    overrides: tuple[str, ...] = ()
    uncertainty: str = "entropy"
    aggregate: str = "max"
    hybrid_factor: int = 3


@dataclass
class SimulationResult:
    """The simulation's outputs.

    Attributes:
        out: Its folder.
        rows: One record per (strategy, seed, round).
        summary: Curves (mean and std of mAP50-95 per labelled count) per strategy.
        json: ``simulation.json``.
        html: ``report.html``.
    """

    out: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    json: Path
    html: Path
    resumed: int = field(default=0)


def _splits(ds: Dataset) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(pool rows, evaluation rows)."""
    split = ds.images.split.astype(str)
    for name in ("val", "test"):
        if (split == name).any():
            ev = np.flatnonzero(split == name)
            return np.flatnonzero(~np.isin(split, ["val", "test"])), ev
    rng = np.random.default_rng(_EVAL_SEED)
    ev = np.sort(rng.choice(ds.num_images, max(1, round(0.2 * ds.num_images)), replace=False))
    return np.setdiff1d(np.arange(ds.num_images), ev), ev


class _Runner:
    """Trains, exports and evaluates one round; holds what every round shares."""

    def __init__(self, cfg: SimulationConfig, ds: Dataset, eval_rows: NDArray[np.intp],
                 progress: bool) -> None:
        self.cfg, self.ds, self.eval_rows, self.progress = cfg, ds, eval_rows, progress
        split = np.full(ds.num_images, "", dtype=object)
        split[eval_rows] = "val"
        self.eval_view = ds.with_split(split.tolist())

    def run(self, folder: Path, labelled: Sequence[int], seed: int) -> dict[str, Any]:
        from detforge.data.formats import write_dataset
        from detforge.evaluate import evaluate_model
        from detforge.train import load_train_config, train

        cfg = self.cfg
        if folder.exists():  # an interrupted round: start it again
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        rows = np.concatenate([np.asarray(labelled, np.intp), self.eval_rows])
        sub = self.ds.subset(rows).with_split(["train"] * len(labelled)
                                              + ["val"] * len(self.eval_rows))
        write_dataset(sub, folder / "data", "yolo")
        config = load_train_config(flags={
            "data": str(folder / "data"), "model": cfg.model, "epochs": cfg.epochs,
            "imgsz": cfg.imgsz, "batch": cfg.batch, "seed": seed, "device": cfg.device,
            "name": "train", "out": str(folder / "runs")}, overrides=[
            "tracking.enabled=false", "plots=false", "val=false", f"optim.nbs={cfg.batch}",
            "optim.warmup_epochs=1", *cfg.overrides])
        result = train(config)
        ev = evaluate_model(result.best, self.eval_view, split="val",
                            imgsz=(cfg.imgsz, cfg.imgsz),
                            device="cpu" if cfg.device == "cpu" else "auto")
        # Later rounds need best.pt (and its ONNX export, made when a strategy needs
        # embeddings); the copies of the data and last.pt are not needed.
        shutil.rmtree(folder / "data", ignore_errors=True)
        shutil.rmtree(result.run_dir / "data", ignore_errors=True)
        result.last.unlink(missing_ok=True)
        counts = self.ds.subset(np.asarray(labelled, np.intp)).class_counts().tolist()
        return {"labelled": len(labelled), "weights": str(result.best.relative_to(folder)),
                "map50_95": float(ev.stats[0]),
                "map50": float(ev.stats[1]),
                "per_class_ap": {c: float(m.ap) for c, m in ev.per_class.items()},
                "class_counts": dict(zip(self.ds.classes.names, counts, strict=True)),
                "labelled_files": [str(self.ds.images.file[r]) for r in labelled]}


def _selection_model(folder: Path, result: dict[str, Any], cfg: SimulationConfig,
                     strategy: str) -> Path:
    """The round's model for the next selection: its best.pt, or its ONNX export (made once)
    when the strategy needs embeddings (:mod:`detforge.active.embedding` reads ONNX)."""
    weights = folder / str(result["weights"])
    if "embedding" not in get_strategy(strategy).needs:
        return weights
    onnx = folder / "model.onnx"
    if not onnx.is_file():
        from detforge.export.onnx_export import export_onnx

        export_onnx(weights, onnx, imgsz=(cfg.imgsz, cfg.imgsz), simplify=False)
    return onnx


def _load(folder: Path) -> dict[str, Any] | None:
    from detforge.core.jsonfile import parse_json

    file = folder / "result.json"
    if not file.is_file():
        return None
    try:
        data = parse_json(file.read_bytes())
    except ValueError:  # cut short: redo the round
        return None
    return data if isinstance(data, dict) else None


def simulate(dataset: str | Path, *, out: str | Path, rounds: int = 3, budget: int = 20,
             strategies: Sequence[str] = ("entropy", "random"), seeds: Sequence[int] = (0,),
             initial: int | None = None, epochs: int = 10, imgsz: int = 160,
             model: str = "yolo11n.yaml", batch: int = 16, device: str = "cpu",
             overrides: Sequence[str] = (), uncertainty: str = "entropy",
             aggregate: str = "max", hybrid_factor: int = 3,
             progress: bool = True) -> SimulationResult:
    """Compare strategies by replaying active learning rounds on a labelled dataset.

    Args:
        dataset: A labelled dataset (any format); its ``val`` (else ``test``) split is the
            evaluation set, the rest the pool.
        out: Folder for the rounds and results; an existing simulation with the same
            options is resumed (and may be extended by rounds, strategies or seeds).
        rounds: Selection rounds after round 0.
        budget: Images labelled per round.
        strategies: Strategy names (``random`` is the baseline).
        seeds: One replay per seed (initial draw, training seed, ``random``'s picks).
        initial: Images labelled at round 0 (default: ``budget``).
        epochs: Training epochs of every model.
        imgsz: Training and inference size (square).
        model: Model YAML (from scratch) or local ``.pt`` weights.
        batch: Training batch size.
        device: ``cpu`` or GPU indices.
        overrides: Extra training overrides (``key.sub=value``).
        uncertainty: ``hybrid``'s measure.
        aggregate: Box-to-image aggregation for the uncertainty strategies.
        hybrid_factor: ``hybrid``'s pre-selection factor.
        progress: Show progress bars.

    Returns:
        The rows, the summary and the files written.

    Raises:
        ConfigError: Unknown strategy, bad numbers, a pool too small for ``initial + rounds
            * budget`` images, or ``out`` holding a simulation with other options.
        DatasetError: The dataset cannot be read.

    Example:
        >>> res = simulate("ds", out="sim", rounds=3, budget=20,  # doctest: +SKIP
        ...                strategies=["hybrid", "random"], seeds=[0, 1, 2])
    """
    from tqdm import tqdm

    from detforge.data.formats import read_dataset
    from detforge.data.validate.images import probe_images

    for s in strategies:
        get_strategy(s)
    if not strategies or len(set(strategies)) != len(strategies):
        raise ConfigError(f"--strategies must name distinct strategies, got {list(strategies)}")
    if rounds < 1 or budget < 1 or epochs < 1 or not seeds:
        raise ConfigError("--rounds, --budget and --epochs must be at least 1, and at least "
                          "one seed is needed")
    ds = read_dataset(dataset)
    pool_rows, eval_rows = _splits(ds)
    initial = budget if initial is None else initial
    need = initial + rounds * budget
    if initial < 1 or need > len(pool_rows):
        raise ConfigError(f"{dataset}: {initial} initial + {rounds} rounds x {budget} = {need} "
                          f"images needed, but the pool (non-evaluation images) has "
                          f"{len(pool_rows)}; lower --budget / --rounds or use more images")
    cfg = SimulationConfig(str(Path(dataset).resolve()), budget, initial, epochs, imgsz, model,
                           batch, device, tuple(overrides), uncertainty, aggregate,
                           hybrid_factor)
    out = Path(out)
    _check_config(out, cfg)
    runner = _Runner(cfg, ds, eval_rows, progress)
    probes = probe_images(ds, progress=progress)
    rows: list[dict[str, Any]] = []
    resumed = 0
    total = len(seeds) * (1 + rounds * len(strategies))
    with tqdm(total=total, desc="simulate", unit="round", disable=not progress) as bar:
        for seed in seeds:
            rng = np.random.default_rng([seed, 7])
            start = np.sort(rng.choice(pool_rows, initial, replace=False))
            base = out / f"seed{seed}" / "round0"
            r0 = _load(base)
            if r0 is None:
                r0 = runner.run(base, start.tolist(), seed)
                atomic_write_json(base / "result.json", r0)
            else:
                resumed += 1
            bar.update(1)
            for strategy in strategies:
                rows.append({"strategy": strategy, "seed": seed, "round": 0, **_row(r0)})
                labelled, previous, prev_res = start.tolist(), base, r0
                for r in range(1, rounds + 1):
                    folder = out / f"seed{seed}" / strategy / f"round{r}"
                    res = _load(folder)
                    if res is None:
                        model_path = _selection_model(previous, prev_res, cfg, strategy)
                        added = _pick(ds, pool_rows, labelled, probes, model_path, cfg,
                                      strategy, budget, seed * 1000 + r, progress)
                        res = runner.run(folder, [*labelled, *added], seed)
                        res["added"] = [str(ds.images.file[a]) for a in added]
                        atomic_write_json(folder / "result.json", res)
                    else:
                        resumed += 1
                    labelled = _rows_of(ds, res["labelled_files"])
                    previous, prev_res = folder, res
                    rows.append({"strategy": strategy, "seed": seed, "round": r, **_row(res)})
                    bar.update(1)
                    _write_outputs(out, cfg, rows)
    summary = summarise(rows)
    json_path, html_path = _write_outputs(out, cfg, rows)
    return SimulationResult(out, rows, summary, json_path, html_path, resumed)


def _row(res: dict[str, Any]) -> dict[str, Any]:
    return {k: res[k] for k in ("labelled", "map50_95", "map50", "per_class_ap",
                                "class_counts")}


def _rows_of(ds: Dataset, files: list[str]) -> list[int]:
    index = {str(f): i for i, f in enumerate(ds.images.file.tolist())}
    return [index[f] for f in files]


def _pick(ds: Dataset, pool_rows: NDArray[np.intp], labelled: list[int], probes: list[Any],
          model: Path, cfg: SimulationConfig, strategy: str, budget: int, seed: int,
          progress: bool) -> list[int]:
    unlabelled = np.setdiff1d(pool_rows, labelled)
    pool = dataset_pool(ds, unlabelled, np.asarray(labelled, np.intp), probes)
    options = ChooseOptions(strategy, uncertainty=cfg.uncertainty, aggregate=cfg.aggregate,
                            hybrid_factor=cfg.hybrid_factor, seed=seed,
                            imgsz=(cfg.imgsz, cfg.imgsz), device="cpu")
    choice = choose(model, pool, budget, options, progress=progress)
    return _rows_of(ds, [p.image.key for p in choice.picked])


def _check_config(out: Path, cfg: SimulationConfig) -> None:
    from detforge.core.jsonfile import parse_json

    file = out / "config.json"
    want = asdict(cfg)
    want["overrides"] = list(cfg.overrides)
    if file.is_file():
        have = parse_json(file.read_bytes())
        if have != want:
            diff = sorted(k for k in want if have.get(k) != want[k])
            raise ConfigError(f"{out} holds a simulation with other options ({diff}); pass the "
                              "same options to resume it, or choose a new --out")
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder exists, is not empty and holds no simulation; choose "
                          "a new --out")
    atomic_write_json(file, want)


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (sample) std of mAP50-95 per strategy and labelled count, over seeds.

    Args:
        rows: Round records (``strategy``, ``seed``, ``labelled``, ``map50_95``).

    Returns:
        ``{"metric", "curves": {strategy: [{labelled, mean, std, n, values}]}, "best",
        "best_vs_random": [...]}``. ``best`` is the strategy other than random with the
        highest mean over every round after round 0 (one choice for the whole curve, not
        the luckiest strategy at each point); ``best_vs_random`` compares its mean with
        random's at each labelled count after round 0 (when random ran).
    """
    curves: dict[str, list[dict[str, Any]]] = {}
    for s in dict.fromkeys(r["strategy"] for r in rows):
        by_n: dict[int, list[float]] = {}
        for r in rows:
            if r["strategy"] == s:
                by_n.setdefault(int(r["labelled"]), []).append(float(r["map50_95"]))
        curves[s] = [{"labelled": n, "mean": float(np.mean(v)),
                      "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v),
                      "values": v} for n, v in sorted(by_n.items())]
    start = min((p["labelled"] for pts in curves.values() for p in pts), default=0)
    later = {s: [p["mean"] for p in pts if p["labelled"] != start]
             for s, pts in curves.items() if s != "random"}
    later = {s: v for s, v in later.items() if v}
    best = max(later, key=lambda s: float(np.mean(later[s]))) if later else None
    versus = []
    if best is not None and "random" in curves:
        ours = {p["labelled"]: p for p in curves[best]}
        for point in curves["random"]:
            if point["labelled"] != start and point["labelled"] in ours:
                bp = ours[point["labelled"]]
                versus.append({"labelled": point["labelled"], "best": best,
                               "best_mean": bp["mean"], "best_std": bp["std"],
                               "random_mean": point["mean"], "random_std": point["std"],
                               "gain": bp["mean"] - point["mean"]})
    return {"metric": METRIC, "curves": curves, "best": best, "best_vs_random": versus}


def _write_outputs(out: Path, cfg: SimulationConfig, rows: list[dict[str, Any]]
                   ) -> tuple[Path, Path]:
    from detforge.active.report import write_simulation_report

    summary = summarise(rows)
    summary["description"] = (f"{Path(cfg.dataset).name}: {cfg.initial} initial images, "
                              f"+{cfg.budget} per round, {cfg.model} at {cfg.imgsz} px, "
                              f"{cfg.epochs} epochs per model")
    json_path = out / "simulation.json"
    atomic_write_json(json_path, {"config": asdict(cfg), "rows": rows, "summary": summary})
    html_path = write_simulation_report(out / "report.html", summary, rows)
    return json_path, html_path
