"""Training devices: ``cpu``, one GPU (``0``) or several for DDP (``0,1``).

Several GPUs train through Ultralytics' DDP: the launching process starts one worker per
GPU with ``torch.distributed.run``; each worker gets ``RANK``, and rank 0 alone writes
checkpoints, results and (here) the run's metrics and MLflow epochs
(see :mod:`detforge.train.backends.ultralytics`). GPUs that are not there are refused
before anything is written, with the indices this machine has.
"""

from __future__ import annotations

import os

from detforge.core.errors import ConfigError

__all__ = ["check_devices", "is_rank_zero", "parse_device"]


def parse_device(device: str) -> tuple[int, ...]:
    """GPU indices of ``device``: ``()`` for ``cpu``, ``(0, 1)`` for ``0,1``.

    Raises:
        ConfigError: Not ``cpu`` or distinct non-negative indices.

    Example:
        >>> parse_device("0,1"), parse_device("cpu")
        ((0, 1), ())
    """
    if device == "cpu":
        return ()
    parts = [p.strip() for p in device.split(",")]
    if not all(p.isdigit() for p in parts):
        raise ConfigError(f"--device {device!r} must be 'cpu' or GPU indices like '0' or '0,1'")
    ids = tuple(int(p) for p in parts)
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--device {device!r} names a GPU twice; list each GPU once")
    return ids


def check_devices(device: str) -> tuple[int, ...]:
    """The GPU indices of ``device``, checked against the GPUs torch sees here.

    Raises:
        ConfigError: A GPU is missing (the message says which ones exist), or torch sees
            no CUDA GPU at all.
    """
    ids = parse_device(device)
    if not ids:
        return ids
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    if count == 0:
        raise ConfigError(f"--device {device}: this machine has no CUDA GPU that torch can "
                          f"use{where}; train with --device cpu, or on a machine with "
                          f"{len(ids)} GPU(s)")
    missing = [i for i in ids if i >= count]
    if missing:
        raise ConfigError(f"--device {device}: no GPU {', '.join(map(str, missing))} here; "
                          f"this machine has {count} CUDA GPU(s), indices 0 to {count - 1}"
                          f"{where}; pass indices in that range")
    return ids


def is_rank_zero() -> bool:
    """True in a process that is not a DDP worker, or in rank 0 of a DDP run."""
    return int(os.environ.get("RANK", "-1")) <= 0
