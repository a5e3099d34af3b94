"""The training backend protocol and its lazy registry.

A backend trains one model from a :class:`~detforge.train.config.TrainConfig` on a dataset
already prepared in the layout it needs, reports each finished epoch through a callback,
and can describe and time the weights it produced. Only Ultralytics ships today; another
backend is one class and one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from detforge.core.errors import ConfigError

if TYPE_CHECKING:
    from detforge.train.config import TrainConfig

__all__ = ["BACKENDS", "BackendRun", "EpochCallback", "ModelInfo", "TrainerBackend",
           "get_backend"]

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after each epoch with the 1-based epoch and its metrics (losses, mAP, lr, speed)."""

BACKENDS: dict[str, str] = {
    "ultralytics": "detforge.train.backends.ultralytics:UltralyticsBackend",
}


@dataclass(frozen=True)
class BackendRun:
    """What a backend's training produced.

    Attributes:
        save_dir: Directory the backend wrote to (the run directory).
        best: Best checkpoint (by validation fitness).
        last: Last checkpoint (resume point).
        final_metrics: Validation metrics of ``best`` after training (``mAP50-95``, ...).
        epochs_done: Epochs completed (fewer than asked after an early stop).
    """

    save_dir: Path
    best: Path
    last: Path
    final_metrics: dict[str, float] = field(default_factory=dict)
    epochs_done: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """Size of a trained model: parameters and GFLOPs at the training image size."""

    params: int
    gflops: float


class TrainerBackend(Protocol):
    """What :func:`detforge.train.train` needs from a training framework."""

    name: str

    def fit(self, config: TrainConfig, *, data_yaml: Path, run_dir: Path,
            on_epoch: EpochCallback) -> BackendRun:
        """Train ``config.model`` on ``data_yaml``, writing into ``run_dir``."""
        ...

    def resume(self, config: TrainConfig, *, last: Path, data_yaml: Path, run_dir: Path,
               on_epoch: EpochCallback) -> BackendRun:
        """Continue an interrupted run from its ``last`` checkpoint."""
        ...

    def training_done(self, config: TrainConfig, last: Path) -> bool:
        """Whether ``last`` is the checkpoint of a run that trained every epoch (or stopped
        early): only its final validation can be left to do."""
        ...

    def finish(self, config: TrainConfig, *, run_dir: Path, data_yaml: Path,
               epochs_done: int) -> BackendRun:
        """Finalise a run whose epochs are all trained: the final validation of ``best``."""
        ...

    def model_info(self, weights: Path, imgsz: int) -> ModelInfo:
        """Parameters and GFLOPs of ``weights`` at ``imgsz``."""
        ...

    def cpu_latency_ms(self, weights: Path, imgsz: int, *, repeats: int = 10) -> float:
        """Median CPU forward time of one ``imgsz`` image, in milliseconds."""
        ...


def get_backend(name: str) -> TrainerBackend:
    """An instance of backend ``name``, imported on first use.

    Raises:
        ConfigError: Unknown backend; the message lists the valid names.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown training backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    backend: TrainerBackend = getattr(importlib.import_module(module), cls)()
    return backend
