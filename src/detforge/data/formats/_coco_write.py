"""Writing COCO: ``annotations/instances_<split>.json`` and ``images/<split>/<key>``.

* Category ids: the source's ids (``ClassMap.source_ids``), except for a dataset not
  read from COCO whose ids include 0 (YOLO, VOC, KITTI: 0..K-1): it gets 1..K, because
  COCO reserves 0 -- Datumaro's COCO importer (and CVAT, which imports through it) gives an
  annotation with ``category_id`` 0 no label (``_get_label_id``: ``if not cat_id:
  return None``, datumaro/plugins/data_formats/coco/base.py, Datumaro 1.13).
* Image and annotation ids are kept when unique within their file, else numbered anew
  (annotations: only the missing or repeated ones, after the largest id).
* ``bbox`` width and height are rounded to 12 significant digits when that still adds
  up to the stored corner exactly (so ``x + w`` reads back bit for bit, without float
  noise such as ``29.999999999999996``); float32 flags are written as their shortest
  text (``0.37``, not ``0.3700000047683716``).
* ``area`` is the source's when it has one (COCO's area is the mask's, and recomputing
  it would move objects between the small/medium/large ranges), else w x h.
* Pass-through values (:mod:`detforge.data.formats.coco`) are written back; KITTI's 3-D
  fields and score, when set, become annotation keys of the same names.
* An image of unknown size (0) gets the size of its image file, when there is one.
* Ignore regions without a class have no category: a loss (``--allow-loss ignore``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import DatasetError
from detforge.data.dataset import Dataset
from detforge.data.formats._common import (
    clean_floats,
    destination_keys,
    float32_values,
    known_sizes,
    place_images,
    split_of,
    staged_output,
)
from detforge.data.formats._plan import FLAGS, KITTI_DEFAULTS, Holds, plan_boxes
from detforge.data.formats.policy import WriteOptions, WriteSummary

__all__ = ["category_ids", "write"]

_KITTI_KEYS = (*KITTI_DEFAULTS, "score")
HOLDS = Holds(crowd=True, classed_ignore=True, flags=frozenset(FLAGS),
              extras=frozenset({"coco", "area", *_KITTI_KEYS}), metadata=frozenset({"coco"}))


def category_ids(dataset: Dataset) -> list[int]:
    """The COCO category id of each class: the source's ids when the dataset was read from
    COCO, or when they hold no 0 (and no repeat); else 1..K (module docstring). The same
    rule as the evaluator's ground truth (``detforge.evaluate.coco.category_ids``)."""
    ids = [int(i) for i in dataset.classes.source_ids]
    if dataset.info.get("format") == "coco" or (0 not in ids and len(set(ids)) == len(ids)):
        return ids
    return list(range(1, len(ids) + 1))


def _unique_ids(ids: NDArray[np.int64], *, keep_negative: bool = False) -> NDArray[np.int64]:
    """``ids`` with missing (< 0) and repeated values replaced by new ones after the max."""
    out = ids.copy()
    if not len(out):
        return out
    _, first = np.unique(out, return_index=True)
    fresh = np.ones(len(out), bool)
    fresh[first] = False
    if not keep_negative:
        fresh |= out < 0
    if fresh.any():
        start = max(int(out[~fresh].max()) if (~fresh).any() else 0, 0) + 1
        out[fresh] = np.arange(start, start + int(fresh.sum()))
    return out


def _widths(lo: NDArray[np.float64], hi: NDArray[np.float64]) -> NDArray[np.float64]:
    """``hi - lo`` without float noise where the rounded value still adds up to ``hi``."""
    w = hi - lo
    r = clean_floats(w)
    with np.errstate(invalid="ignore"):
        return np.where(lo + r == hi, r, w)


def _extra_values(dataset: Dataset, sel: NDArray[np.intp]) -> list[dict[str, Any]]:
    """Per written box: pass-through keys and set KITTI fields."""
    b = dataset.boxes
    out: list[dict[str, Any]] = [{} for _ in range(len(sel))]
    coco = b.extra.get("coco")
    if coco is not None:
        for d, v in zip(out, coco[sel].tolist(), strict=True):
            if v:
                d.update(v)
    for name in _KITTI_KEYS:
        col = b.extra.get(name)
        if col is None:
            continue
        arr = np.asarray(col, np.float64)[sel].reshape(len(sel), -1)
        default = KITTI_DEFAULTS.get(name, np.nan)
        isset = ((arr != default) & np.isfinite(arr)).any(axis=1)
        for i in np.flatnonzero(isset).tolist():
            values = clean_floats(arr[i]).tolist()
            out[i][name] = values[0] if len(values) == 1 else values
    return out


def _annotations(dataset: Dataset, sel: NDArray[np.intp], image_ids: NDArray[np.int64],
                 cat: NDArray[np.int64]) -> list[dict[str, Any]]:
    b = dataset.boxes
    xyxy = b.xyxy[sel]
    w, h = _widths(xyxy[:, 0], xyxy[:, 2]), _widths(xyxy[:, 1], xyxy[:, 3])
    area = clean_floats(w * h)
    src_area = b.extra.get("area")
    if src_area is not None:
        orig = np.asarray(src_area, np.float64)[sel]
        area = np.where(np.isfinite(orig), orig, area)
    ann_id = b.extra.get("ann_id")
    ids = _unique_ids(np.full(len(sel), -1, np.int64) if ann_id is None
                      else np.asarray(ann_id, np.int64)[sel])
    anns = [{"id": a, "image_id": i, "category_id": c, "bbox": [x, y, ww, hh], "area": ar,
             "iscrowd": cr} for a, i, c, x, y, ww, hh, ar, cr in zip(
        ids.tolist(), image_ids[b.image_index[sel]].tolist(), cat[b.class_id[sel]].tolist(),
        xyxy[:, 0].tolist(), xyxy[:, 1].tolist(), w.tolist(), h.tolist(), area.tolist(),
        b.iscrowd[sel].astype(int).tolist(), strict=True)]
    for flag in (*FLAGS, "ignore"):
        values = getattr(b, flag)
        if not values.any():
            continue
        vals = float32_values(values[sel]) if values.dtype == np.float32 else \
            values[sel].astype(int).tolist()
        for a, v in zip(anns, vals, strict=True):
            a[flag] = v
    for a, extra in zip(anns, _extra_values(dataset, sel), strict=True):
        for key, value in extra.items():
            if key == "area" or key not in a:  # a given NaN area stays (and is refused)
                a[key] = value
    return anns


def _dump(path: Path, obj: dict[str, Any]) -> None:
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except ValueError:
        bad = next((a.get("id") for a in obj["annotations"]
                    if not _json_ok(a)), None)
        where = f"annotation id {bad}" if bad is not None else "an image or category entry"
        raise DatasetError(f"{where} holds NaN or an infinite number, which JSON cannot "
                           "store; fix the source value", path=path.name) from None
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from the source: keep it, escaped
        data = json.dumps(obj, ensure_ascii=True, allow_nan=False).encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data + b"\n")  # inside the private staging folder: no temp file needed


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


def write(dataset: Dataset, out: Path, *, copy_images: bool = True,
          options: WriteOptions | None = None) -> WriteSummary:
    """Write ``dataset`` as COCO: ``annotations/instances_<split>.json`` + ``images/``.

    Args:
        dataset: The dataset.
        out: New output folder (must not exist, or be empty).
        copy_images: Hard-link or copy the images (skipped for images whose source file
            does not exist; their entries are written anyway).
        options: Losses allowed (COCO can lose only ignore regions without a class,
            non-finite boxes and boxes of unknown classes).

    Returns:
        What was written and left out.

    Raises:
        ConfigError: ``out`` exists and is not empty.
        DatasetError: Two images would be written to the same file, or data would be
            lost that ``options`` does not allow.

    Example:
        >>> write(ds, Path("out_coco"))  # doctest: +SKIP
    """
    options = options or WriteOptions()
    keys = destination_keys(dataset)
    keep, ledger = plan_boxes(dataset, "coco", HOLDS, options)
    ledger.check()
    img, bx = dataset.images, dataset.boxes
    cat = np.asarray(category_ids(dataset) or [0], np.int64)
    names = dataset.classes.names
    cat_extra = dataset.info.get("coco_categories") or {}
    categories = [{"id": int(i), "name": n, **cat_extra.get(n, {})}
                  for i, n in zip(cat.tolist(), names, strict=False)]
    metas: dict[str, dict[str, Any]] = dataset.info.get("coco_meta") or {}
    image_extra = img.extra.get("coco")
    box_split = img.split[bx.image_index] if len(bx) else np.zeros(0, object)
    dests = [f"images/{s}/{key}" if s else f"images/{key}"
             for s, key in zip(img.split.tolist(), keys, strict=True)]
    summary = WriteSummary("coco", images=dataset.num_images)
    width, height = known_sizes(dataset, np.ones(dataset.num_images, bool))
    with staged_output(out) as stage:
        for split in split_of(dataset):
            rows = np.flatnonzero(img.split == split)
            ids = _unique_ids(img.id[rows], keep_negative=True)
            image_ids = np.zeros(dataset.num_images, np.int64)
            image_ids[rows] = ids
            images = [{"id": i, "file_name": keys[r], "width": w, "height": h}
                      for i, r, w, h in zip(ids.tolist(), rows.tolist(),
                                            width[rows].tolist(), height[rows].tolist(),
                                            strict=True)]
            if image_extra is not None:
                for entry, extra in zip(images, image_extra[rows].tolist(), strict=True):
                    for key, value in (extra or {}).items():
                        entry.setdefault(key, value)
            sel = np.flatnonzero((box_split == split) & keep)
            anns = _annotations(dataset, sel, image_ids, cat)
            summary.boxes += len(anns)
            meta = metas.get(split) or next(iter(metas.values()), {})
            name = f"instances_{split}.json" if split else "instances.json"
            _dump(stage / "annotations" / name,
                  {**meta, "images": images, "annotations": anns, "categories": categories})
        if copy_images:
            summary.image_files = place_images(dataset, stage, dests)
    return ledger.summary(summary)
