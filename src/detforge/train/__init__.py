"""Training: typed config and presets, an offline Ultralytics backend, versioned runs with
lineage, MLflow tracking and size sweeps.

Importing this package does not import torch, Ultralytics or MLflow; they load when a run
starts.

Example:
    >>> from detforge.train import load_train_config, train
    >>> cfg = load_train_config(preset="traffic", flags={"data": "ds", "epochs": 5})
    >>> result = train(cfg)  # doctest: +SKIP
"""

from detforge.train.config import (
    PRESETS,
    AugmentConfig,
    OptimConfig,
    TrackingConfig,
    TrainConfig,
    load_preset,
    load_train_config,
)
from detforge.train.runner import RunResult, train
from detforge.train.sweep import SizeResult, SweepResult, run_training, train_sizes

__all__ = ["PRESETS", "AugmentConfig", "OptimConfig", "RunResult", "SizeResult", "SweepResult",
           "TrackingConfig", "TrainConfig", "load_preset", "load_train_config", "run_training",
           "train", "train_sizes"]
