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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.core.errors import ConfigError
from detforge.data.dataset import Dataset
from detforge.evaluate.coco import (
    ResultColumns,
    dataset_to_coco,
    detections_to_coco,
    load_json,
    validate_gt,
    validate_results,
)
from detforge.evaluate.operating import (
    Boxes,
    class_operating_points,
    confusion_matrix,
    image_scores,
    match_coco,
)
from detforge.evaluate.sharded import run_cocoeval

__all__ = ["STAT_NAMES", "ClassMetrics", "EvalResult", "ImageScore", "coco_boxes",
           "evaluate_coco", "evaluate_files", "evaluate_predictions", "gc_paused"]

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
    """Match quality of one image at the operating confidence (IoU 0.5)."""

    image_id: int
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
        }


def _asdict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _lookup(values: NDArray[np.float64], keys: Sequence[int]) -> NDArray[np.int64]:
    """Position of each value in ``keys`` (every value must be present)."""
    k = np.asarray(keys, np.float64)
    order = np.argsort(k, kind="stable")
    return order[np.searchsorted(k[order], values)].astype(np.int64)


def coco_boxes(columns: ResultColumns, image_ids: Sequence[int], cat_ids: Sequence[int],
               crowd: NDArray[np.bool_] | None = None) -> Boxes:
    """Columnar :class:`Boxes` (image and class as indices into the id lists).

    Args:
        columns: Validated columns of COCO annotations or results.
        image_ids: Image ids, in image-index order.
        cat_ids: Category ids, in class-index order.
        crowd: Crowd flags (ground truth); None for detections.

    Returns:
        The boxes.
    """
    n = len(columns.image_id)
    return Boxes(image=_lookup(columns.image_id, image_ids),
                 cls=_lookup(columns.category_id, cat_ids), xywh=columns.bbox,
                 score=columns.score, crowd=np.zeros(n, np.bool_) if crowd is None else crowd)


def _gt_columns(anns: Sequence[dict[str, Any]]) -> tuple[ResultColumns, NDArray[np.bool_]]:
    n = len(anns)
    cols = ResultColumns(
        np.fromiter((a["image_id"] for a in anns), np.float64, n),
        np.fromiter((a["category_id"] for a in anns), np.float64, n), np.ones(n),
        np.array([a["bbox"] for a in anns], np.float64).reshape(n, 4))
    return cols, np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), np.bool_, n)


def _results_coco(coco_gt: Any, results: list[dict[str, Any]], bbox: NDArray[np.float64],
                  ) -> Any:
    """The detections as a COCO object: what ``COCO.loadRes`` builds for boxes (area
    w*h, ids 1..N, iscrowd 0), without the polygon it adds to every result."""
    from faster_coco_eval import COCO

    for i, (ann, area) in enumerate(zip(results, (bbox[:, 2] * bbox[:, 3]).tolist(),
                                        strict=True)):
        ann["area"] = area
        ann["id"] = i + 1
        ann["iscrowd"] = 0
    res = COCO(print_function=_quiet)
    res.dataset = {"images": list(coco_gt.dataset["images"]),
                   "categories": [dict(c) for c in coco_gt.dataset["categories"]],
                   "annotations": results}
    res.createIndex()
    return res


def evaluate_coco(gt: dict[str, Any], results: list[dict[str, Any]], *, conf: float = 0.25,
                  iou_type: str = "bbox", columns: ResultColumns | None = None,
                  workers: int | None = None) -> EvalResult:
    """Evaluate COCO results against a COCO ground-truth dict.

    ``gt`` and ``results`` must be valid (see :func:`~detforge.evaluate.coco.validate_gt`
    and :func:`~detforge.evaluate.coco.validate_results`); the result dicts are annotated in
    place by the COCO loader.

    Args:
        gt: COCO ground truth.
        results: COCO results (``image_id``, ``category_id``, ``bbox``, ``score``).
        conf: Operating confidence for P/R/F1, the confusion matrix and worst images.
        iou_type: Only ``"bbox"`` is supported.
        columns: ``results`` as columns, when the caller has them already (from
            :func:`~detforge.evaluate.coco.validate_results`).
        workers: Processes for the COCO evaluation (split by category, identical
            numbers); None uses every usable core on large inputs.

    Returns:
        The evaluation result; ``stats`` equal pycocotools' ``COCOeval.stats``.

    Raises:
        ConfigError: ``iou_type`` is not ``"bbox"`` or ``conf`` is outside [0, 1].
    """
    from faster_coco_eval import COCO

    if iou_type != "bbox":
        raise ConfigError(f"iou_type {iou_type!r} is not supported; detforge evaluates boxes "
                          f"(iou_type='bbox')")
    if not 0.0 <= conf <= 1.0:
        raise ConfigError(f"conf {conf} must be within [0, 1]")
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    cat_ids = [int(c["id"]) for c in cats]
    names = tuple(str(c["name"]) for c in cats)
    images = gt["images"]
    image_ids = [int(im["id"]) for im in images]
    gt_cols, gt_crowd = _gt_columns(gt["annotations"])
    gt_boxes = coco_boxes(gt_cols, image_ids, cat_ids, gt_crowd)
    cols = ResultColumns.of(results) if columns is None else columns
    dt_boxes = coco_boxes(cols, image_ids, cat_ids)

    coco_gt = COCO(gt, print_function=_quiet)
    coco_dt = _results_coco(coco_gt, results, cols.bbox)
    ev = run_cocoeval(coco_gt, coco_dt, workers=workers)
    stats = tuple(float(s) for s in ev.stats[:12])
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    k = len(cat_ids)
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
    tp, fp, fn = image_scores(dt_boxes, gt_boxes, matches, len(images), conf=conf)
    return EvalResult(
        stats=stats, class_names=names, per_class=per_class,
        recall_thresholds=np.asarray(ev.params.recThrs, np.float64), pr_curves=pr,
        conf=conf, conf_grid=ops.conf_grid, f1_curves=ops.f1_curve,
        f1_optimal_conf=ops.f1_optimal_conf,
        confusion_matrix=confusion_matrix(dt_boxes, gt_boxes, k, conf=conf),
        worst_images=_worst(images, tp, fp, fn), num_images=len(images),
        num_detections=len(results))


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """Silence faster-coco-eval's progress prints."""


def _class_ap(p: NDArray[np.float64]) -> list[float]:
    """Mean of the valid (> -1) precision entries per class, -1 when none (as COCO)."""
    valid = p > -1
    total = np.where(valid, p, 0.0).sum(axis=(0, 1))
    count = valid.sum(axis=(0, 1))
    return [float(t / c) if c else -1.0 for t, c in zip(total, count, strict=True)]


def _worst(images: Sequence[dict[str, Any]], tp: NDArray[np.int64], fp: NDArray[np.int64],
           fn: NDArray[np.int64], n: int = WORST_IMAGES) -> tuple[ImageScore, ...]:
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)
    bad = np.flatnonzero(fp + fn > 0)
    order = bad[np.lexsort((bad, -(fp + fn)[bad], f1[bad]))][:n]
    return tuple(ImageScore(int(images[i]["id"]), str(images[i].get("file_name", "")),
                            int(tp[i]), int(fp[i]), int(fn[i]), float(f1[i])) for i in order)


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
    if isinstance(predictions, list):
        results = [dict(r) for r in predictions]
        columns = validate_results(results, coco.image_ids.tolist(), coco.cat_ids)
        return evaluate_coco(coco.coco, results, conf=conf, iou_type=iou_type,
                             columns=columns)
    return evaluate_coco(coco.coco, detections_to_coco(predictions, coco), conf=conf,
                         iou_type=iou_type)


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
        gt = validate_gt(load_json(gt_json, "COCO ground-truth"), gt_json)
        results = load_json(predictions_json, "COCO results")
        columns = validate_results(results, [im["id"] for im in gt["images"]],
                                   [c["id"] for c in gt["categories"]], predictions_json)
        return evaluate_coco(gt, results, conf=conf, columns=columns)
