"""Conversions between detforge datasets / detections and COCO dicts, with validation.

COCO ground truth (``{"images", "annotations", "categories"}``) and COCO results
(``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``) are the exchange
format of the evaluator, so any detector's results file can be scored.

Conventions when a :class:`~detforge.data.dataset.Dataset` becomes COCO ground truth:

* image ids are ``Dataset.images.id`` when they are unique, otherwise the row index;
* category ids are ``ClassMap.source_ids`` for a dataset read from COCO, or whenever they
  do not contain 0 (a valid COCO id set), and ``1..K`` otherwise;
* ignore regions (KITTI ``DontCare``) become ``iscrowd=1`` boxes of every class, so a
  detection that falls inside one is neither a true nor a false positive;
* ``area`` is the box area, annotation ids run ``1..M``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.core.errors import DatasetError
from detforge.core.jsonfile import parse_json
from detforge.data.dataset import Dataset

__all__ = ["CocoGroundTruth", "ResultColumns", "category_ids", "dataset_to_coco",
           "detections_to_coco", "load_json", "validate_gt", "validate_results"]


@dataclass(frozen=True)
class CocoGroundTruth:
    """A COCO ground-truth dict plus how its ids map back to the dataset.

    Attributes:
        coco: The COCO dict (``images``, ``annotations``, ``categories``).
        image_rows: For each COCO image (in ``coco["images"]`` order), its dataset row.
        image_ids: COCO image id of each entry of ``image_rows``.
        cat_ids: COCO category id of each class index ``0..K-1``.
    """

    coco: dict[str, Any]
    image_rows: NDArray[np.int64]
    image_ids: NDArray[np.int64]
    cat_ids: tuple[int, ...]


def category_ids(dataset: Dataset) -> tuple[int, ...]:
    """COCO category id of each class index of ``dataset``.

    Args:
        dataset: The dataset whose classes are numbered.

    Returns:
        ``ClassMap.source_ids`` when the dataset came from COCO or the ids contain no 0,
        otherwise ``1..K``.
    """
    src = tuple(int(i) for i in dataset.classes.source_ids)
    if dataset.info.get("format") == "coco" or (0 not in src and len(set(src)) == len(src)):
        return src
    return tuple(range(1, len(dataset.classes) + 1))


def dataset_to_coco(dataset: Dataset, *, split: str | None = None) -> CocoGroundTruth:
    """COCO ground truth for ``dataset`` (optionally one split).

    Args:
        dataset: The labelled dataset.
        split: Keep only images of this split; None keeps every image.

    Returns:
        The COCO dict and the id mappings.

    Raises:
        DatasetError: ``split`` names a split the dataset does not have, or an image has
            an unknown size (needed for COCO image records).

    Example:
        >>> gt = dataset_to_coco(ds, split="val")  # doctest: +SKIP
        >>> len(gt.coco["images"])  # doctest: +SKIP
    """
    rows = np.arange(dataset.num_images, dtype=np.int64)
    if split is not None:
        rows = np.flatnonzero(dataset.images.split == split).astype(np.int64)
        if len(rows) == 0:
            raise DatasetError(
                f"split {split!r} has no images; the dataset has splits "
                f"{dataset.split_names() or ['(none)']}. Pass one of them, or evaluate every "
                f"image (split=None; `--split all` on the command line).")
    ids = dataset.images.id.astype(np.int64)
    image_ids = ids[rows] if len(np.unique(ids)) == len(ids) else rows.copy()
    cat_ids = category_ids(dataset)
    k = len(dataset.classes)
    images = [{"id": int(i), "file_name": str(dataset.images.file[r]),
               "width": int(dataset.images.width[r]), "height": int(dataset.images.height[r])}
              for i, r in zip(image_ids.tolist(), rows.tolist(), strict=True)]
    row_to_id = np.full(dataset.num_images, -1, np.int64)
    row_to_id[rows] = image_ids

    b = dataset.boxes
    keep = row_to_id[b.image_index] >= 0
    bad = keep & ~b.ignore & ((b.class_id < 0) | (b.class_id >= k))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"box {j} of image {dataset.images.file[b.image_index[j]]!r} has class id "
            f"{int(b.class_id[j])}, outside 0..{k - 1}; run `detforge data validate` and "
            f"fix the labels first.", path=dataset.images.label_file[b.image_index[j]] or None,
            line=int(b.line[j]) or None)
    annotations: list[dict[str, Any]] = []
    xyxy = b.xyxy[keep]
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    area = np.clip(xywh[:, 2], 0, None) * np.clip(xywh[:, 3], 0, None)
    img_col = row_to_id[b.image_index[keep]].tolist()
    cls_col = b.class_id[keep].tolist()
    crowd_col = (b.iscrowd[keep] | b.ignore[keep]).tolist()
    ign_col = b.ignore[keep].tolist()
    for box, a, img, cls, crowd, ign in zip(xywh.tolist(), area.tolist(), img_col, cls_col,
                                            crowd_col, ign_col, strict=True):
        # An ignore region is no class: make it a crowd box of every class.
        for cid in (cat_ids if ign else (cat_ids[cls],)):
            annotations.append({"id": len(annotations) + 1, "image_id": img,
                                "category_id": cid, "bbox": box, "area": a,
                                "iscrowd": int(crowd)})
    categories = [{"id": cid, "name": name}
                  for cid, name in zip(cat_ids, dataset.classes.names, strict=True)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    return CocoGroundTruth(coco, rows, image_ids, cat_ids)


def detections_to_coco(predictions: Mapping[int, Detections], gt: CocoGroundTruth,
                       ) -> list[dict[str, Any]]:
    """COCO results for per-image detections.

    Args:
        predictions: Detections keyed by dataset image row (the index into
            ``Dataset.images``); rows outside ``gt`` are an error, missing rows mean no
            detections.
        gt: The ground truth built by :func:`dataset_to_coco`.

    Returns:
        The COCO results list (``bbox`` as ``[x, y, w, h]``).

    Raises:
        DatasetError: A key is not an evaluated image row, or a class id is out of range.
    """
    row_to_id = dict(zip(gt.image_rows.tolist(), gt.image_ids.tolist(), strict=True))
    cats = np.asarray(gt.cat_ids, np.int64)
    out: list[dict[str, Any]] = []
    for row, det in predictions.items():
        if int(row) not in row_to_id:
            raise DatasetError(
                f"predictions given for image row {row}, which is not among the "
                f"{len(row_to_id)} evaluated images; key predictions by the row index of "
                f"the dataset image (and check the split).")
        if len(det) == 0:
            continue
        cls = det.class_ids.astype(np.int64)
        if cls.min() < 0 or cls.max() >= len(cats):
            raise DatasetError(
                f"image row {row}: class id {int(cls[(cls < 0) | (cls >= len(cats))][0])} "
                f"is outside 0..{len(cats) - 1}; the model's classes do not match the "
                f"dataset's {len(cats)} classes.")
        xy = det.xyxy.astype(np.float64)
        boxes = np.concatenate([xy[:, :2], xy[:, 2:] - xy[:, :2]], axis=1).tolist()
        img = row_to_id[int(row)]
        out.extend({"image_id": img, "category_id": c, "bbox": bx, "score": s}
                   for bx, c, s in zip(boxes, cats[cls].tolist(),
                                       det.scores.astype(np.float64).tolist(), strict=True))
    return out


def load_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file, turning read and syntax errors into a DatasetError.

    Args:
        path: The file.
        what: What the file should hold, for the message (e.g. "COCO results").

    Returns:
        The parsed JSON value.

    Raises:
        DatasetError: The file is missing or is not valid JSON.
    """
    path = Path(path)
    try:
        return parse_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise DatasetError(f"{what} file not found; check the path", path=path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {what} file: {exc}", path=path) from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON ({exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}); a {what} file must be JSON", path=path,
                           line=exc.lineno) from exc


def validate_gt(gt: Any, path: str | Path | None = None) -> dict[str, Any]:
    """Check a COCO ground-truth dict and fill a missing ``area`` with the box area.

    Args:
        gt: The parsed ground truth.
        path: Its file, named in errors.

    Returns:
        ``gt`` (annotation ids renumbered ``1..M`` if one of them is 0, which COCO tools
        treat as "unmatched").

    Raises:
        DatasetError: A required key is missing or malformed.
    """
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) \
            or not isinstance(gt.get("categories"), list):
        raise DatasetError("not a COCO ground-truth file: expected an object with "
                           "'images', 'annotations' and 'categories' lists (a results file "
                           "goes to --predictions)", path=path)
    anns = gt.setdefault("annotations", [])
    for key, items, need in (("images", gt["images"], ("id",)),
                             ("categories", gt["categories"], ("id", "name")),
                             ("annotations", anns, ("id", "image_id", "category_id", "bbox"))):
        for i, item in enumerate(items):
            missing = [k for k in need if not isinstance(item, dict) or k not in item]
            if missing:
                raise DatasetError(f"{key}[{i}] lacks {missing}; every entry of {key!r} "
                                   f"needs {list(need)}", path=path)
    image_ids = {im["id"] for im in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    for i, ann in enumerate(anns):
        if ann["image_id"] not in image_ids or ann["category_id"] not in cat_ids:
            raise DatasetError(
                f"annotations[{i}] refers to image_id {ann['image_id']!r} / category_id "
                f"{ann['category_id']!r}, which 'images' / 'categories' do not list",
                path=path)
        bb = ann["bbox"]
        if not isinstance(bb, list) or len(bb) != 4:
            raise DatasetError(f"annotations[{i}] has bbox {bb!r}; expected [x, y, w, h]",
                               path=path)
        if "area" not in ann:
            ann["area"] = float(bb[2]) * float(bb[3])
    if any(ann["id"] == 0 for ann in anns):
        for i, ann in enumerate(anns):
            ann["id"] = i + 1
    return gt


_RESULT_KEYS = ("image_id", "category_id", "bbox", "score")


@dataclass(frozen=True)
class ResultColumns:
    """The columns of a COCO results list, as float64 arrays.

    Attributes:
        image_id: ``[N]`` image ids. category_id: ``[N]`` category ids.
        score: ``[N]`` scores. bbox: ``[N, 4]`` COCO ``[x, y, w, h]`` boxes.
    """

    image_id: NDArray[np.float64]
    category_id: NDArray[np.float64]
    score: NDArray[np.float64]
    bbox: NDArray[np.float64]

    @classmethod
    def of(cls, results: Sequence[dict[str, Any]]) -> ResultColumns:
        """Columns of a (valid) results list; raises KeyError / TypeError / ValueError."""
        n = len(results)
        return cls(np.fromiter((r["image_id"] for r in results), np.float64, n),
                   np.fromiter((r["category_id"] for r in results), np.float64, n),
                   np.fromiter((r["score"] for r in results), np.float64, n),
                   np.array([r["bbox"] for r in results], np.float64).reshape(n, -1)
                   if n else np.zeros((0, 4)))


def validate_results(results: Any, image_ids: Sequence[int], cat_ids: Sequence[int],
                     path: str | Path | None = None) -> ResultColumns:
    """Check a COCO results list against the ground truth's images and categories.

    Args:
        results: The parsed results (must be a list of objects).
        image_ids: Image ids of the ground truth.
        cat_ids: Category ids of the ground truth.
        path: The results file, named in errors.

    Returns:
        The results' columns, for :func:`~detforge.evaluate.metrics.evaluate_coco`.

    Raises:
        DatasetError: The results are not a list, an entry lacks a key, a bbox is not four
            finite numbers with non-negative width and height, a score is not a number, or
            an image or category id is not in the ground truth. The message names the
            entry index and the value.
    """
    if not isinstance(results, list):
        raise DatasetError(
            f"COCO results must be a JSON list of detections, got {type(results).__name__}"
            f"{' (this looks like a ground-truth file)' if isinstance(results, dict) else ''}"
            f"; pass the detections file to --predictions and the annotations to --gt",
            path=path)
    try:
        cols = ResultColumns.of(results)
    except (KeyError, TypeError, ValueError):
        _raise_first_bad_entry(results, path)
    if cols.bbox.shape != (len(results), 4):
        _raise_first_bad_entry(results, path)
    bbox = cols.bbox
    checks = (
        (~np.isin(cols.image_id, np.asarray(image_ids, np.float64)), "image_id",
         "is not an image id of the ground truth; results must use the GT file's image ids"),
        (~np.isin(cols.category_id, np.asarray(cat_ids, np.float64)), "category_id",
         f"is not a category id of the ground truth (valid: {sorted(cat_ids)}); a 0-based "
         f"class index needs mapping to the GT category ids"),
        (~np.isfinite(cols.score), "score", "is not a finite number"),
        (~np.isfinite(bbox).all(axis=1) | (bbox[:, 2] < 0) | (bbox[:, 3] < 0), "bbox",
         "is not [x, y, w, h] with finite values and w, h >= 0"),
    )
    for bad, key, why in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"entry {i}: {key} {results[i][key]!r} {why} "
                               f"({int(bad.sum())} entries affected)", path=path)
    return cols


def _raise_first_bad_entry(results: list[Any], path: str | Path | None) -> NoReturn:
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise DatasetError(f"entry {i} is {type(r).__name__}, expected an object with "
                               f"keys {list(_RESULT_KEYS)}", path=path)
        missing = [k for k in _RESULT_KEYS if k not in r]
        if missing:
            raise DatasetError(f"entry {i} lacks {missing}; each detection needs "
                               f"{list(_RESULT_KEYS)}", path=path)
        bb = r["bbox"]
        if not isinstance(bb, list) or len(bb) != 4 \
                or not all(isinstance(v, int | float) for v in bb):
            raise DatasetError(f"entry {i}: bbox {bb!r} is not four numbers [x, y, w, h]",
                               path=path)
        for key in ("image_id", "category_id"):
            if not isinstance(r[key], int) or isinstance(r[key], bool):
                raise DatasetError(f"entry {i}: {key} {r[key]!r} is not an integer",
                                   path=path)
        if not isinstance(r["score"], int | float) or isinstance(r["score"], bool) \
                or math.isnan(float(r["score"])):
            raise DatasetError(f"entry {i}: score {r['score']!r} is not a number", path=path)
    raise DatasetError("malformed COCO results; each detection needs "
                       f"{list(_RESULT_KEYS)}", path=path)
