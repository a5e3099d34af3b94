"""Training backends behind :class:`~detforge.train.backends.base.TrainerBackend`."""

from detforge.train.backends.base import (
    BACKENDS,
    BackendRun,
    EpochCallback,
    ModelInfo,
    TrainerBackend,
    get_backend,
)

__all__ = ["BACKENDS", "BackendRun", "EpochCallback", "ModelInfo", "TrainerBackend",
           "get_backend"]
