"""Use every CPU core the process is allowed.

Ultralytics computes ``NUM_THREADS = min(8, max(1, os.cpu_count() - 1))`` at import time
and ``select_device`` calls ``torch.set_num_threads(NUM_THREADS)`` for CPU training, so on a
2-core machine it trains on one core. Its ``__init__`` also sets ``OMP_NUM_THREADS=1``
when unset. :func:`configure_threads` fixes all three: the environment (before torch loads),
``NUM_THREADS`` in every loaded Ultralytics module that copied it, and torch itself.

It also sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the environment sets a policy), before
torch loads: by default OpenMP threads spin at every barrier, and on a machine whose cores
other processes also use, a spinning thread waits for a partner that is not running. Measured
on the shared 2-core machine (load average 8, yolo11n forward + backward, batch 8, 128 px):
2 spinning threads 10 s per step, 1 thread 1.2 s, 2 passive threads 0.5 s.
"""

from __future__ import annotations

import os
import sys

__all__ = ["allowed_cores", "configure_threads"]

_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def allowed_cores() -> int:
    """Number of CPU cores this process may run on (its affinity mask, not the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def configure_threads(threads: int | None = None) -> int:
    """Set torch, OpenMP and Ultralytics to use ``threads`` (default: all allowed cores).

    Also makes idle OpenMP threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``,
    when the environment sets no policy); that takes effect only if torch is not loaded yet.

    Safe to call before or after torch and Ultralytics are imported; call it again after
    importing Ultralytics so the modules that copied ``NUM_THREADS`` see the new value.

    Args:
        threads: Thread count; None for :func:`allowed_cores`.

    Returns:
        The thread count applied.

    Example:
        >>> configure_threads() == allowed_cores()
        True
    """
    n = threads or allowed_cores()
    for var in _ENV_VARS:
        os.environ[var] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for name, module in list(sys.modules.items()):
        if name.startswith("ultralytics") and isinstance(getattr(module, "NUM_THREADS", None),
                                                          int):
            setattr(module, "NUM_THREADS", n)  # noqa: B010
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    return n
