"""COCO metrics through faster-coco-eval (identical to pycocotools), plus operating points.

:func:`evaluate_coco` is the one evaluation path: every entry point (a dataset and
detections, two COCO files, a model) ends there. It runs ``COCOeval_faster`` for the 12
COCO numbers, per-class AP and the PR curves, then :mod:`detforge.evaluate.operating`
for precision / recall / F1 at a confidence, the F1-optimal confidence, the confusion
matrix and the worst images.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.core.errors import ConfigError
from detforge.data.dataset import Dataset
from detforge.evaluate.coco import dataset_to_coco, detections_to_coco, load_json
from detforge.evaluate.coco_input import GroundTruth, Results, check_gt, check_results
from detforge.evaluate.operating import (
    class_operating_points,
    confusion_matrix,
    image_scores,
    match_coco,
)
from detforge.evaluate.sharded import run_cocoeval

__all__ = ["STAT_NAMES", "ClassMetrics", "EvalResult", "ImageScore", "evaluate_coco",
           "evaluate_files", "evaluate_predictions", "gc_paused"]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs",
              "ARm", "ARl")
"""Names of ``EvalResult.stats``, in pycocotools ``COCOeval.stats`` order."""

WORST_IMAGES = 20


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one class (-1 where COCO has no value: a class without ground truth).

    Attributes:
        ap: AP at IoU 0.50:0.95. ap50, ap75: AP at IoU 0.50 and 0.75.
        precision, recall, f1: At the operating confidence, IoU 0.5.
        support: Non-crowd ground-truth boxes. detections: Detections above the confidence.
    """

    ap: float
    ap50: float
    ap75: float
    precision: float
    recall: float
    f1: float
    support: int
    detections: int


@dataclass(frozen=True)
class ImageScore:
    """Match quality of one image at the operating confidence (IoU 0.5); ``image_id`` is
    the ground truth's own id (an int, or a string where the file uses strings)."""

    image_id: int | str
    file: str
    tp: int
    fp: int
    fn: int
    f1: float


@dataclass(frozen=True, eq=False)
class EvalResult:
    """The outcome of one evaluation.

    Attributes:
        stats: The 12 COCO numbers in pycocotools order (see :data:`STAT_NAMES`).
        class_names: Class names in class-index order.
        per_class: :class:`ClassMetrics` by class name.
        recall_thresholds: ``[101]`` recall points of the PR curves (0..1).
        pr_curves: ``[K, 101]`` interpolated precision at IoU 0.5 (COCO's curve).
        conf: The operating confidence of the P/R/F1 numbers and the confusion matrix.
        conf_grid: ``[C]`` confidences of ``f1_curves``.
        f1_curves: ``[K, C]`` F1 versus confidence per class (-1: no ground truth).
        f1_optimal_conf: Confidence with the best mean F1 over classes.
        confusion_matrix: ``[K+1, K+1]``; rows predicted, columns true, index K background.
        worst_images: Images with the lowest F1 at ``conf``, worst first.
        num_images: Images evaluated. num_detections: Detections given.
        ignored_detections: Detections in categories the ground truth does not list (not
            scored, as in pycocotools).
        notes: What was scored as pycocotools scores it, and deviations (also warned).
    """

    stats: tuple[float, ...]
    class_names: tuple[str, ...]
    per_class: dict[str, ClassMetrics]
    recall_thresholds: NDArray[np.float64]
    pr_curves: NDArray[np.float64]
    conf: float
    conf_grid: NDArray[np.float64]
    f1_curves: NDArray[np.float64]
    f1_optimal_conf: float
    confusion_matrix: NDArray[np.int64]
    worst_images: tuple[ImageScore, ...]
    num_images: int
    num_detections: int
    ignored_detections: int = 0
    notes: tuple[str, ...] = ()

    @property
    def summary(self) -> dict[str, float]:
        """The 12 COCO numbers by name."""
        return dict(zip(STAT_NAMES, self.stats, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``stats`` is the 12-number list)."""
        return {
            "stats": list(self.stats),
            "stat_names": list(STAT_NAMES),
            "summary": self.summary,
            "per_class": {n: _asdict(m) for n, m in self.per_class.items()},
            "conf": self.conf,
            "f1_optimal_conf": self.f1_optimal_conf,
            "pr_curves": {"recall": self.recall_thresholds.tolist(),
                          "precision": {n: self.pr_curves[i].tolist()
                                        for i, n in enumerate(self.class_names)}},
            "f1_curves": {"conf": self.conf_grid.tolist(),
                          "f1": {n: self.f1_curves[i].tolist()
                                 for i, n in enumerate(self.class_names)}},
            "confusion_matrix": {"labels": [*self.class_names, "background"],
                                 "matrix": self.confusion_matrix.tolist()},
            "worst_images": [_asdict(w) for w in self.worst_images],
            "num_images": self.num_images,
            "num_detections": self.num_detections,
            "ignored_detections": self.ignored_detections,
            "notes": list(self.notes),
        }


def _asdict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _results_coco(coco_gt: Any, results: list[dict[str, Any]]) -> Any:
    """The detections as a COCO object: what ``COCO.loadRes`` builds for boxes (the
    checked results carry its ``id``, ``area`` and ``iscrowd``), without the polygon it adds
    to every result."""
    from faster_coco_eval import COCO

    res = COCO(print_function=_quiet)
    res.dataset = {"images": list(coco_gt.dataset["images"]),
                   "categories": [dict(c) for c in coco_gt.dataset["categories"]],
                   "annotations": results}
    res.createIndex()
    return res


def evaluate_coco(gt: dict[str, Any] | GroundTruth,
                  results: list[dict[str, Any]] | Results, *, conf: float = 0.25,
                  iou_type: str = "bbox", workers: int | None = None,
                  path: str | Path | None = None, gt_path: str | Path | None = None,
                  ) -> EvalResult:
    """Evaluate COCO results against COCO ground truth, with pycocotools' numbers.

    Both inputs are checked first (:func:`~detforge.evaluate.coco_input.check_gt`,
    :func:`~detforge.evaluate.coco_input.check_results`) unless they are checked already;
    neither is modified. Detections in categories the ground truth does not list are
    ignored and counted in ``ignored_detections``, as pycocotools ignores them.

    Args:
        gt: COCO ground truth, or its checked form.
        results: COCO results (``image_id``, ``category_id``, ``bbox``, ``score``), or
            their checked form.
        conf: Operating confidence for P/R/F1, the confusion matrix and worst images.
        iou_type: Only ``"bbox"`` is supported.
        workers: Processes for the COCO evaluation (split by category, identical
            numbers); None uses every usable core on large inputs.
        path: The results file, named in errors.
        gt_path: The ground-truth file, named in errors.

    Returns:
        The evaluation result; ``stats`` equal pycocotools' ``COCOeval.stats``.

    Raises:
        ConfigError: ``iou_type`` is not ``"bbox"`` or ``conf`` is outside [0, 1].
        DatasetError: An input pycocotools cannot score (the message names the entry).

    Example:
        >>> gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "cat"}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
        ...                        "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}]}
        >>> dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]
        >>> evaluate_coco(gt, dt).summary["AP50"]
        1.0
    """
    from faster_coco_eval import COCO

    if iou_type != "bbox":
        raise ConfigError(f"iou_type {iou_type!r} is not supported; detforge evaluates boxes "
                          f"(iou_type='bbox')")
    if not 0.0 <= conf <= 1.0:
        raise ConfigError(f"conf {conf} must be within [0, 1]")
    checked = gt if isinstance(gt, GroundTruth) else check_gt(gt, gt_path)
    dets = results if isinstance(results, Results) else check_results(results, checked, path)
    names = checked.class_names
    k = len(names)
    gt_boxes, dt_boxes = checked.boxes, dets.boxes

    with warnings.catch_warnings():  # id 0 is noted by check_gt already
        warnings.filterwarnings("ignore", "Found annotation id 0", UserWarning)
        coco_gt = COCO(checked.coco, print_function=_quiet)
    coco_dt = _results_coco(coco_gt, dets.coco)
    ev = run_cocoeval(coco_gt, coco_dt, workers=workers)
    stats = tuple(float(s) for s in ev.stats[:12])
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    ap = _class_ap(precision[:, :, :, 0, -1])
    ap50 = _class_ap(precision[:1, :, :, 0, -1])
    ap75 = _class_ap(precision[5:6, :, :, 0, -1])
    pr = np.clip(precision[0, :, :, 0, -1].T, 0.0, None).astype(np.float64)

    matches = match_coco(dt_boxes, gt_boxes, k)
    ops = class_operating_points(dt_boxes, gt_boxes, matches, k, conf=conf)
    per_class = {
        name: ClassMetrics(ap=ap[i], ap50=ap50[i], ap75=ap75[i],
                           precision=float(ops.precision[i]), recall=float(ops.recall[i]),
                           f1=float(ops.f1[i]), support=int(ops.support[i]),
                           detections=int(ops.detections[i]))
        for i, name in enumerate(names)}
    n_images = len(checked.image_ids)
    tp, fp, fn = image_scores(dt_boxes, gt_boxes, matches, n_images, conf=conf)
    return EvalResult(
        stats=stats, class_names=names, per_class=per_class,
        recall_thresholds=np.asarray(ev.params.recThrs, np.float64), pr_curves=pr,
        conf=conf, conf_grid=ops.conf_grid, f1_curves=ops.f1_curve,
        f1_optimal_conf=ops.f1_optimal_conf,
        confusion_matrix=confusion_matrix(dt_boxes, gt_boxes, k, conf=conf),
        worst_images=_worst(checked, tp, fp, fn), num_images=n_images,
        num_detections=len(dets.coco) + dets.ignored, ignored_detections=dets.ignored,
        notes=checked.notes + dets.notes)


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """Silence faster-coco-eval's progress prints."""


def _class_ap(p: NDArray[np.float64]) -> list[float]:
    """Mean of the valid (> -1) precision entries per class, -1 when none (as COCO)."""
    valid = p > -1
    total = np.where(valid, p, 0.0).sum(axis=(0, 1))
    count = valid.sum(axis=(0, 1))
    return [float(t / c) if c else -1.0 for t, c in zip(total, count, strict=True)]


def _worst(gt: GroundTruth, tp: NDArray[np.int64], fp: NDArray[np.int64],
           fn: NDArray[np.int64], n: int = WORST_IMAGES) -> tuple[ImageScore, ...]:
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)
    bad = np.flatnonzero(fp + fn > 0)
    order = bad[np.lexsort((bad, -(fp + fn)[bad], f1[bad]))][:n]
    return tuple(ImageScore(gt.image_ids[i], gt.files[i], int(tp[i]), int(fp[i]), int(fn[i]),
                            float(f1[i])) for i in order)


def evaluate_predictions(gt: Dataset, predictions: Mapping[int, Detections] | list[
                         dict[str, Any]], *, split: str | None = None,
                         iou_type: str = "bbox", conf: float = 0.25) -> EvalResult:
    """Evaluate detections against a labelled dataset.

    Args:
        gt: The labelled dataset (ignore regions count as crowd boxes).
        predictions: Either :class:`Detections` keyed by dataset image row, or a COCO
            results list whose ``image_id`` / ``category_id`` follow
            :func:`~detforge.evaluate.coco.dataset_to_coco` (image ids = ``images.id``,
            category ids = 1..K or the COCO source ids).
        split: Evaluate only this split's images; None evaluates every image.
        iou_type: Only ``"bbox"``.
        conf: Operating confidence for P/R/F1, the confusion matrix and worst images.

    Returns:
        The evaluation result.

    Raises:
        DatasetError: The split is empty, or predictions name unknown images or classes.
        ConfigError: Bad ``iou_type`` or ``conf``.

    Example:
        >>> res = evaluate_predictions(ds, {0: dets}, conf=0.3)  # doctest: +SKIP
        >>> res.summary["AP50"]  # doctest: +SKIP
    """
    coco = dataset_to_coco(gt, split=split)
    results = predictions if isinstance(predictions, list) else detections_to_coco(
        predictions, coco)
    return evaluate_coco(coco.coco, results, conf=conf, iou_type=iou_type)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a block runs.

    Loading a COCO file creates millions of small dicts and lists, none in reference
    cycles; with the collector on, its repeated full passes over them cost about a quarter
    of the CPU time of a large evaluation. Reference counting still frees memory.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def evaluate_files(predictions_json: str | Path, gt_json: str | Path, *,
                   conf: float = 0.25) -> EvalResult:
    """Score a COCO results file against a COCO ground-truth file (any detector).

    Args:
        predictions_json: COCO results: a JSON list of ``{image_id, category_id, bbox,
            score}``.
        gt_json: COCO ground truth with ``images``, ``annotations``, ``categories``.
        conf: Operating confidence for P/R/F1, the confusion matrix and worst images.

    Returns:
        The evaluation result.

    Raises:
        DatasetError: A file is missing, is not JSON, or is malformed; the message names
            the file and the offending entry.

    Example:
        >>> evaluate_files("dt.json", "gt.json").stats[0]  # doctest: +SKIP
    """
    with gc_paused():
        gt = check_gt(load_json(gt_json, "COCO ground-truth"), gt_json)
        results = check_results(load_json(predictions_json, "COCO results"), gt,
                                predictions_json)
        return evaluate_coco(gt, results, conf=conf)
