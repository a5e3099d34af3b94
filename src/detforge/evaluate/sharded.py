"""COCO evaluation split by category over processes.

COCO's precision and recall are computed per category and only then averaged, so the
categories can be evaluated in separate processes and their arrays joined on the
category axis before ``summarize``: the numbers are identical to one process. On large
inputs faster-coco-eval's C++ evaluate-and-accumulate is the bulk of an evaluation and
runs on one core; forked workers (which inherit the loaded COCO objects instead of
pickling them) spread it over the cores the process may use. Inside :func:`shards_through`
the shards go to another executor instead (``evaluate --ray``: tasks on a Ray cluster, see
:mod:`detforge.scale.evaluate`), each evaluated by :func:`evaluate_categories`.

The inputs come renumbered by :mod:`detforge.evaluate.coco_input` (unique annotation and
category ids): a repeated annotation id would otherwise pick a different annotation in a
shard than in one process, since pycocotools resolves the id after filtering by category.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import numpy as np

__all__ = ["SHARD_MIN_DETECTIONS", "ShardMap", "evaluate_categories", "run_cocoeval",
           "shards_through"]

SHARD_MIN_DETECTIONS = 50_000
"""Below this many detections one process is faster than starting workers."""

_SHARED: tuple[Any, Any] | None = None  # (coco_gt, coco_dt), inherited by forked workers

ShardMap = Callable[[Any, Any, list[list[int]]], list[dict[str, np.ndarray]]]
"""``(coco_gt, coco_dt, shards) -> [evaluate_categories(...) of each shard]``, in order."""

_EXECUTOR: ContextVar[tuple[ShardMap, int] | None] = ContextVar("detforge_shard_map",
                                                                default=None)


@contextlib.contextmanager
def shards_through(shard_map: ShardMap, *, workers: int) -> Iterator[None]:
    """Evaluate the category shards of every COCO evaluation in the block with
    ``shard_map``, in ``workers`` shards (instead of forked local processes).

    Example:
        >>> with shards_through(my_map, workers=64):  # doctest: +SKIP
        ...     evaluate_files("dt.json", "gt.json")
    """
    token = _EXECUTOR.set((shard_map, workers))
    try:
        yield
    finally:
        _EXECUTOR.reset(token)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """Silence faster-coco-eval's progress prints."""


def _new_eval(coco_gt: Any, coco_dt: Any) -> Any:
    from faster_coco_eval import COCOeval_faster

    return COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=_quiet)


def evaluate_categories(coco_gt: Any, coco_dt: Any, cat_ids: list[int]) -> dict[str,
                                                                                np.ndarray]:
    """Evaluate and accumulate the categories ``cat_ids`` alone: their ``precision``,
    ``recall`` and ``scores`` arrays, as one process computes them for those categories.

    ``coco_gt`` and ``coco_dt`` need to hold the annotations of these categories only.
    """
    ev = _new_eval(coco_gt, coco_dt)
    ev.params.catIds = cat_ids
    ev.evaluate()
    ev.accumulate()
    return {k: np.asarray(ev.eval[k]) for k in ("precision", "recall", "scores")}


def _eval_shard(cat_ids: list[int]) -> dict[str, np.ndarray]:
    assert _SHARED is not None  # set by run_cocoeval before the fork
    return evaluate_categories(*_SHARED, cat_ids)


def _shards(coco_dt: Any, cat_ids: list[int], n: int) -> list[list[int]]:
    """Categories in ``n`` groups of about equal detection counts (largest first)."""
    counts = {c: len(coco_dt.catToImgs.get(c, ())) for c in cat_ids}
    groups: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for c in sorted(cat_ids, key=lambda c: -counts[c]):
        i = load.index(min(load))
        groups[i].append(c)
        load[i] += counts[c] + 1
    return [sorted(g) for g in groups if g]


def run_cocoeval(coco_gt: Any, coco_dt: Any, *, workers: int | None = None) -> Any:
    """Evaluate, accumulate and summarise boxes; the ``COCOeval_faster`` object afterwards.

    Args:
        coco_gt: Ground truth (faster-coco-eval ``COCO``).
        coco_dt: Detections (faster-coco-eval ``COCO``).
        workers: Processes; None picks the usable cores when there are at least
            :data:`SHARD_MIN_DETECTIONS` detections, else 1 (inside :func:`shards_through`:
            its ``workers``, whatever the size).

    Returns:
        The evaluator with ``stats``, ``eval["precision"]``, ``eval["recall"]`` and
        ``params`` as after ``evaluate(); accumulate(); summarize()``.
    """
    executor = _EXECUTOR.get()
    if executor is not None and workers is None:
        workers = executor[1]
    global _SHARED
    ev = _new_eval(coco_gt, coco_dt)
    cat_ids = sorted({int(c) for c in ev.params.catIds})  # np.unique, as pycocotools
    if workers is None:
        workers = _cores() if len(coco_dt.anns) >= SHARD_MIN_DETECTIONS else 1
    workers = min(workers, len(cat_ids))
    if workers < 2 or (executor is None
                       and "fork" not in multiprocessing.get_all_start_methods()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev
    shards = _shards(coco_dt, cat_ids, workers)
    if executor is not None:
        parts = executor[0](coco_gt, coco_dt, shards)
    else:
        _SHARED = (coco_gt, coco_dt)
        try:
            with warnings.catch_warnings():
                # Python >= 3.12 warns that fork with threads may deadlock; the workers only
                # run faster-coco-eval on data they inherit, and no lock is held here.
                warnings.simplefilter("ignore", DeprecationWarning)
                with multiprocessing.get_context("fork").Pool(len(shards)) as pool:
                    parts = pool.map(_eval_shard, shards)
        finally:
            _SHARED = None
    order = np.argsort([c for shard in shards for c in shard], kind="stable")
    ev.params.catIds = cat_ids
    ev.matched = False  # what accumulate() sets without extra_calc
    ev.eval = {"params": ev.params,
               "precision": np.concatenate([p["precision"] for p in parts], axis=2)[:, :, order],
               "recall": np.concatenate([p["recall"] for p in parts], axis=1)[:, order],
               "scores": np.concatenate([p["scores"] for p in parts], axis=2)[:, :, order]}
    ev.summarize()
    return ev
