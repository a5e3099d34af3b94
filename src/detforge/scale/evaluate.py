"""``evaluate --ray``: the COCO evaluation of a very large results file on a Ray cluster.

COCO's precision and recall are computed per category (see
:mod:`detforge.evaluate.sharded`), so the categories are split into shards of about equal
detection counts, one per logical CPU of the cluster. Each shard travels alone: its
categories' ground-truth and result annotations (the image list is put in the object store
once and shared), so a task holds a 1/N share of the input, not all of it. Each task builds
its two COCO indexes and runs :func:`~detforge.evaluate.sharded.evaluate_categories`; the
arrays are joined here and summarised exactly as in one process. Loading and checking the
files, and the per-image matching for P/R/F1 and the confusion matrix, stay on this machine.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from detforge.evaluate.sharded import evaluate_categories, shards_through
from detforge.scale.cluster import Cluster, ClusterInfo, import_ray, reraise_cause

__all__ = ["evaluation_on_cluster"]


@contextlib.contextmanager
def evaluation_on_cluster(address: str = "local", *,
                          workers: int | None = None) -> Iterator[ClusterInfo]:
    """Run the COCO evaluations of the block on the Ray cluster at ``address``.

    Args:
        address: ``local`` (a cluster started for the block), ``auto``, ``HOST:PORT`` or
            ``ray://HOST:PORT``.
        workers: Category shards (default: the cluster's logical CPUs, at least 2).

    Yields:
        The cluster.

    Raises:
        MissingExtraError: Ray is not installed.
        ClusterError: The cluster cannot be reached.

    Example:
        >>> with evaluation_on_cluster("auto"):  # doctest: +SKIP
        ...     result = evaluate_files("dt.json", "gt.json")
    """
    with Cluster(address) as cluster:
        info = cluster.require()
        with shards_through(_on_ray, workers=workers or max(2, int(info.cpus))):
            yield info


def _on_ray(coco_gt: Any, coco_dt: Any, shards: list[list[int]]) -> list[dict[str, np.ndarray]]:
    ray = import_ray()
    gt_by = _by_category(coco_gt.dataset["annotations"])
    dt_by = _by_category(coco_dt.dataset["annotations"])
    images = ray.put(coco_gt.dataset["images"])
    categories = ray.put(coco_gt.dataset["categories"])
    task = ray.remote(num_cpus=1, max_retries=3)(_evaluate_shard)
    refs = [task.remote(images, categories, [a for c in shard for a in gt_by[c]],
                        [a for c in shard for a in dt_by[c]], shard) for shard in shards]
    try:
        parts: list[dict[str, np.ndarray]] = ray.get(refs)
    except Exception as exc:
        reraise_cause(exc)
        raise
    return parts


def _by_category(annotations: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in annotations:
        out[int(ann["category_id"])].append(ann)
    return out


def _evaluate_shard(images: list[dict[str, Any]], categories: list[dict[str, Any]],
                    gt: list[dict[str, Any]], dt: list[dict[str, Any]],
                    cat_ids: list[int]) -> dict[str, np.ndarray]:
    """A Ray task: one shard's arrays, from the annotations of its categories alone."""
    from faster_coco_eval import COCO

    coco_gt = COCO({"images": images, "categories": categories, "annotations": gt},
                   print_function=_quiet)
    coco_dt = COCO({"images": images, "categories": categories, "annotations": dt},
                   print_function=_quiet)
    return evaluate_categories(coco_gt, coco_dt, cat_ids)


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """Silence faster-coco-eval's progress prints."""
