"""Size sweeps: train n/s/m... variants of one model family and compare them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from detforge.train.backends.base import TrainerBackend, get_backend
from detforge.train.config import TrainConfig, model_for_size
from detforge.train.runner import RunResult, train

__all__ = ["SizeResult", "SweepResult", "run_training", "train_sizes"]


@dataclass(frozen=True)
class SizeResult:
    """One trained size: its run, model size and CPU speed."""

    size: str
    model: str
    run: RunResult
    params: int
    gflops: float
    cpu_latency_ms: float

    @property
    def map50_95(self) -> float:
        return float(self.run.final_metrics.get("mAP50-95", float("nan")))

    @property
    def map50(self) -> float:
        return float(self.run.final_metrics.get("mAP50", float("nan")))


@dataclass(frozen=True)
class SweepResult:
    """All sizes of a sweep, in the order trained."""

    rows: list[SizeResult]

    def table(self) -> str:
        """A plain-text comparison table (one row per size)."""
        head = (f"{'size':<5} {'model':<14} {'mAP50-95':>9} {'mAP50':>7} {'params':>11} "
                f"{'GFLOPs':>7} {'CPU ms/img':>11}  run")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.size:<5} {r.model:<14} {r.map50_95:>9.4f} {r.map50:>7.4f} "
                         f"{r.params:>11,} {r.gflops:>7.2f} {r.cpu_latency_ms:>11.1f}  "
                         f"{r.run.run_dir}")
        return "\n".join(lines)


def train_sizes(config: TrainConfig, *, backend: TrainerBackend | None = None,
                latency_repeats: int = 10) -> SweepResult:
    """Train ``config.model`` at every size in ``config.sizes`` and compare them.

    Each size is its own run named ``<name>-<size>`` (so each is versioned, tracked and
    resumable on its own). Latency is the median CPU forward time of one image at the
    training size, measured here, one model after another.

    Args:
        config: Config with ``sizes`` set and a model YAML name (``yolo11n.yaml``).
        backend: Training backend; Ultralytics by default.
        latency_repeats: Timed forward passes per model.

    Returns:
        One row per size.

    Raises:
        ConfigError: ``model`` is not a family YAML name, or a size does not exist for it.

    Example:
        >>> sweep = train_sizes(cfg.model_copy(update={"sizes": ["n", "s"]}))  # doctest: +SKIP
        >>> print(sweep.table())  # doctest: +SKIP
    """
    backend = backend or get_backend("ultralytics")
    models = [(s, model_for_size(config.model, s)) for s in config.sizes]
    rows = []
    for size, model in tqdm(models, desc="sizes", unit="model"):
        cfg = config.model_copy(update={"model": model, "sizes": [],
                                        "name": f"{config.name}-{size}"})
        run = train(cfg, backend=backend)
        info = backend.model_info(Path(run.best), cfg.train_imgsz)
        latency = backend.cpu_latency_ms(Path(run.best), cfg.train_imgsz,
                                         repeats=latency_repeats)
        rows.append(SizeResult(size=size, model=model, run=run, params=info.params,
                               gflops=info.gflops, cpu_latency_ms=latency))
    return SweepResult(rows)


def run_training(config: TrainConfig) -> RunResult | SweepResult:
    """Train one run, or a size sweep when ``config.sizes`` is set (the CLI's entry point).

    Args:
        config: The resolved config.

    Returns:
        A :class:`RunResult`, or a :class:`SweepResult` for a sweep.

    Raises:
        ConfigError: ``--resume`` combined with ``--sizes`` (resume each size's run by name).
    """
    if config.sizes and config.resume:
        from detforge.core.errors import ConfigError

        raise ConfigError("--resume continues one run: pass --name <name>-<size> of the "
                          "interrupted size instead of --sizes")
    return train_sizes(config) if config.sizes else train(config)
