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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.core.errors import DatasetError
from detforge.core.jsonfile import parse_json
from detforge.data.dataset import Dataset
from detforge.evaluate.coco_input import check_gt

__all__ = ["CocoGroundTruth", "category_ids", "dataset_to_coco", "detections_to_coco",
           "load_json", "validate_gt"]


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
    """Check a COCO ground-truth dict as the evaluator checks it (left unchanged).

    Args:
        gt: The parsed ground truth.
        path: Its file, named in errors.

    Returns:
        ``gt`` itself.

    Raises:
        DatasetError: An input the evaluator refuses (see
            :func:`~detforge.evaluate.coco_input.check_gt`).
    """
    check_gt(gt, path)
    return dict(gt)
