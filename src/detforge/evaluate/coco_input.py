"""COCO ground truth and results, checked and put in the form pycocotools reads them.

pycocotools scores some inputs in ways that are easy to get wrong when they are copied
into arrays; this module reproduces each of them, so that every evaluation path (one
process or several, see :mod:`detforge.evaluate.sharded`) gives pycocotools' numbers:

=====================================  ================================================
input                                  pycocotools (``COCOeval``), and so detforge
=====================================  ================================================
image ids                              ``np.unique``: sorted by value, strings as
                                       strings ("10" before "9"); the order breaks
                                       score ties. Ids >= 2**53 stay exact.
a category listed twice (same entry)   ``np.unique``: counted once
annotation id listed twice             ``loadAnns`` takes the last annotation with that
                                       id for every occurrence
annotation id 0                        a detection matched to it counts as a false
                                       positive (``dtm`` stores the id; 0 is "none")
detection in a category not listed     ignored (``getAnnIds`` filters by category)
detection on an image not listed       refused (``loadRes`` asserts)
=====================================  ================================================

Everything is then renumbered densely (images ``1..I`` in pycocotools' order, categories
``1..K`` in sorted order, annotations ``1..M`` with id 0 kept), which faster-coco-eval and
the category shards handle without any of the above.

Inputs pycocotools cannot score get a one-line :class:`~detforge.core.errors.DatasetError`
naming the entry: a category id with two names, ids that are neither integers nor strings
(or mix both), a bbox that is not four finite numbers, a score or bbox given as strings.
Deviations, each warned (:class:`EvaluationWarning`) and kept in ``notes``: a missing
``area`` is the box area and a missing ``iscrowd`` is 0 (pycocotools raises KeyError).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from detforge.core.errors import DatasetError
from detforge.evaluate.operating import Boxes

__all__ = ["EvaluationWarning", "GroundTruth", "Results", "check_gt", "check_results"]

_RESULT_KEYS = ("image_id", "category_id", "bbox", "score")
_INT64 = (-(2**63), 2**63 - 1)


class EvaluationWarning(UserWarning):
    """The input was scored as pycocotools scores it, in a way worth knowing about."""


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Checked COCO ground truth, renumbered densely in pycocotools' order.

    Attributes:
        coco: The renumbered COCO dict for the evaluator (image ``i`` has id ``i + 1``,
            category ``k`` has id ``k + 1``).
        image_ids: Original id of each image, in pycocotools' order.
        files: ``file_name`` of each image ("" when absent).
        cat_ids: Original id of each category, sorted.
        class_names: A unique label per category: its name, or ``name (id N)`` where two
            categories share a name.
        boxes: The annotations as columns (image and class as indices).
        notes: What was scored as pycocotools scores it, and any deviation.
    """

    coco: dict[str, Any]
    image_ids: tuple[Any, ...]
    files: tuple[str, ...]
    cat_ids: tuple[Any, ...]
    class_names: tuple[str, ...]
    boxes: Boxes
    notes: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Results:
    """Checked COCO results, renumbered to a :class:`GroundTruth`.

    Attributes:
        coco: Results for the evaluator (dense ids, ``id``, ``area`` and ``iscrowd`` set as
            ``COCO.loadRes`` sets them), without the ignored detections.
        boxes: The same detections as columns.
        ignored: Detections in categories the ground truth does not list (not scored).
        notes: Warnings, as in :class:`GroundTruth`.
    """

    coco: list[dict[str, Any]]
    boxes: Boxes
    ignored: int
    notes: tuple[str, ...]


def _fail(message: str, path: str | Path | None) -> NoReturn:
    raise DatasetError(message, path=path)


def _note(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, EvaluationWarning, stacklevel=4)


def _is_real(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _check_ids(values: list[Any], where: str, path: str | Path | None) -> list[Any]:
    """Sorted distinct ids, as ``np.unique`` orders them; refuses what it cannot order."""
    kinds = set()
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | str):
            _fail(f"{where}[{i}] has id {v!r} ({type(v).__name__}); COCO ids are integers "
                  f"(or strings), e.g. 1", path)
        if isinstance(v, int) and not _INT64[0] <= v <= _INT64[1]:
            _fail(f"{where}[{i}] has id {v}, outside the 64-bit range COCO tools hold; "
                  f"renumber the ids", path)
        kinds.add(type(v))
    if len(kinds) > 1:
        j = next(i for i, v in enumerate(values) if isinstance(v, str))
        _fail(f"{where} mixes integer and string ids ({where}[{j}] is {values[j]!r}); "
              f"pycocotools orders them as strings and loses the integer ones: use one type",
              path)
    return sorted(set(values))


def _number_list(v: Any) -> bool:
    return (isinstance(v, list | tuple) and len(v) == 4 and all(_is_real(x) for x in v)
            and all(math.isfinite(x) for x in v))


def _categories(cats: list[Any], path: str | Path | None, notes: list[str],
                ) -> tuple[list[Any], list[str]]:
    ids = _check_ids([c["id"] for c in cats], "categories", path)
    name_of: dict[Any, tuple[int, str]] = {}
    repeated = 0
    for i, c in enumerate(cats):
        name = str(c["name"])
        if c["id"] in name_of:
            j, other = name_of[c["id"]]
            if other != name:
                _fail(f"categories[{j}] and categories[{i}] share id {c['id']!r} with "
                      f"different names ({other!r}, {name!r}); give each category its own "
                      f"id", path)
            repeated += 1
            continue
        name_of[c["id"]] = (i, name)
    if repeated:
        _note(notes, f"{repeated} category entries repeat an earlier one; each category is "
                     f"counted once, as pycocotools does")
    names = [name_of[cid][1] for cid in ids]
    shared = {n for n in names if names.count(n) > 1}
    if shared:
        _note(notes, f"categories with different ids share the names {sorted(shared)}; "
                     f"they are told apart as 'name (id N)' in per-class tables")
    labels = [f"{n} (id {cid})" if n in shared else n for n, cid in zip(names, ids,
                                                                         strict=True)]
    return ids, labels


def check_gt(gt: Any, path: str | Path | None = None) -> GroundTruth:
    """Check a COCO ground-truth dict and renumber it the way pycocotools reads it.

    Args:
        gt: The parsed ground truth (left unchanged).
        path: Its file, named in errors.

    Returns:
        The checked ground truth.

    Raises:
        DatasetError: A key is missing or malformed, ids cannot be ordered, a category id
            has two names, or an annotation names an image or category not listed.

    Example:
        >>> g = check_gt({"images": [{"id": "10"}, {"id": "9"}], "annotations": [],
        ...               "categories": [{"id": 1, "name": "cat"}]})
        >>> g.image_ids
        ('10', '9')
    """
    _validate_layout(gt, path)
    notes: list[str] = []
    images, anns = gt["images"], gt.get("annotations", [])
    image_ids = _check_ids([im["id"] for im in images], "images", path)
    image_index = {v: i for i, v in enumerate(image_ids)}
    files = [""] * len(image_ids)
    for im in images:  # the last entry of an id wins, as in COCO.imgs
        files[image_index[im["id"]]] = str(im.get("file_name", ""))
    cat_ids, labels = _categories(gt["categories"], path, notes)
    cat_index = {v: i for i, v in enumerate(cat_ids)}

    last: dict[Any, int] = {}
    img_col = np.empty(len(anns), np.int64)
    for i, ann in enumerate(anns):
        aid = ann["id"]
        if isinstance(aid, bool) or not isinstance(aid, int):
            _fail(f"annotations[{i}] has id {aid!r}; annotation ids are integers", path)
        img = image_index.get(_hashable(ann["image_id"], i, path))
        if img is None or _hashable(ann["category_id"], i, path) not in cat_index:
            _fail(f"annotations[{i}] refers to image_id {ann['image_id']!r} / category_id "
                  f"{ann['category_id']!r}, which 'images' / 'categories' do not list", path)
        if not _number_list(ann["bbox"]):
            _fail(f"annotations[{i}] has bbox {ann['bbox']!r}; expected [x, y, w, h] as four "
                  f"finite numbers", path)
        for key in ("area", "iscrowd"):
            if key in ann and not (_is_real(ann[key]) or key == "iscrowd"
                                   and isinstance(ann[key], bool)):
                _fail(f"annotations[{i}] has {key} {ann[key]!r}; expected a number", path)
        last[aid] = i
        img_col[i] = img
    if len(last) < len(anns):
        _note(notes, f"{len(anns) - len(last)} annotations repeat the id of another; every "
                     f"occurrence of an id is scored as the last annotation with it, as "
                     f"pycocotools does (its ids must be unique)")
    zero = 0 in last
    if zero:
        _note(notes, "an annotation has id 0: pycocotools counts a detection matched to it "
                     "as a false positive, and so do these stats (P/R/F1 and the confusion "
                     "matrix match it normally); number annotations from 1")
    no_area = sum("area" not in a for a in anns)
    if no_area:
        _note(notes, f"{no_area} annotations lack 'area' (pycocotools needs it); their box "
                     f"area w*h is used")

    # pycocotools visits images in id order and each image's annotations in file order;
    # the content of every occurrence is the last annotation with its id.
    order = np.argsort(img_col, kind="stable")
    out: list[dict[str, Any]] = []
    crowd = np.empty(len(anns), np.bool_)
    img_out = np.empty(len(anns), np.int64)
    cls_out = np.empty(len(anns), np.int64)
    bbox = np.empty((len(anns), 4), np.float64)
    for n, j in enumerate(order.tolist()):
        a = anns[last[anns[j]["id"]]]
        x, y, w, h = (float(v) for v in a["bbox"])
        img, cls = image_index[a["image_id"]], cat_index[a["category_id"]]
        crowd[n] = bool(a.get("iscrowd", 0))
        img_out[n], cls_out[n] = img, cls
        bbox[n] = (x, y, w, h)
        out.append({"id": 0 if a["id"] == 0 else n + 1, "image_id": img + 1,
                    "category_id": cls + 1, "bbox": [x, y, w, h],
                    "area": float(a["area"]) if "area" in a else w * h,
                    "iscrowd": int(crowd[n])})
    coco = {"images": [{"id": i + 1} for i in range(len(image_ids))],
            "categories": [{"id": k + 1, "name": name} for k, name in enumerate(labels)],
            "annotations": out}
    boxes = Boxes(image=img_out, cls=cls_out, xywh=bbox, score=np.ones(len(out)), crowd=crowd)
    return GroundTruth(coco, tuple(image_ids), tuple(files), tuple(cat_ids), tuple(labels),
                       boxes, tuple(notes))


def _hashable(v: Any, i: int, path: str | Path | None) -> Any:
    try:
        hash(v)
    except TypeError:
        _fail(f"annotations[{i}] refers to {v!r}; image and category ids are integers or "
              f"strings", path)
    return v


def _validate_layout(gt: Any, path: str | Path | None = None) -> None:
    """Check the top-level layout and required keys of a COCO ground-truth dict.

    Raises:
        DatasetError: Not an object with ``images``, ``annotations`` and ``categories``
            lists whose entries carry the required keys.
    """
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) \
            or not isinstance(gt.get("categories"), list) \
            or not isinstance(gt.get("annotations", []), list):
        _fail("not a COCO ground-truth file: expected an object with 'images', "
              "'annotations' and 'categories' lists (a results file goes to --predictions)",
              path)
    for key, need in (("images", ("id",)), ("categories", ("id", "name")),
                      ("annotations", ("id", "image_id", "category_id", "bbox"))):
        for i, item in enumerate(gt.get(key, [])):
            missing = [k for k in need if not isinstance(item, dict) or k not in item]
            if missing:
                _fail(f"{key}[{i}] lacks {missing}; every entry of {key!r} needs "
                      f"{list(need)}", path)


def check_results(results: Any, gt: GroundTruth, path: str | Path | None = None) -> Results:
    """Check COCO results against checked ground truth and renumber them to it.

    Args:
        results: The parsed results (a list of objects; left unchanged).
        gt: The ground truth from :func:`check_gt`.
        path: The results file, named in errors.

    Returns:
        The results to score; detections in categories the ground truth does not list are
        left out and counted (pycocotools ignores them too), with a warning.

    Raises:
        DatasetError: Not a list, an entry lacks a key, an image id is not in the ground
            truth, a bbox is not four finite numbers with w, h >= 0, or a score is not a
            finite number (strings of digits included). The message names the entry.
    """
    if not isinstance(results, list):
        _fail(f"COCO results must be a JSON list of detections, got {type(results).__name__}"
              f"{' (this looks like a ground-truth file)' if isinstance(results, dict) else ''}"
              f"; pass the detections file to --predictions and the annotations to --gt", path)
    image_index = {v: i for i, v in enumerate(gt.image_ids)}
    cat_index = {v: i for i, v in enumerate(gt.cat_ids)}
    n = len(results)
    try:
        img = [image_index.get(r["image_id"], -1) for r in results]
        cls = [cat_index.get(r["category_id"], -1) for r in results]
        bbox = np.array([r["bbox"] for r in results]) if n else np.zeros((0, 4))
        score = np.array([r["score"] for r in results]) if n else np.zeros(0)
    except (KeyError, TypeError, ValueError):
        _first_bad_entry(results, gt, path)
    if bbox.shape != (n, 4) or bbox.dtype.kind not in "iuf" or score.shape != (n,) \
            or score.dtype.kind not in "iuf":
        _first_bad_entry(results, gt, path)
    bbox = bbox.astype(np.float64)
    score = score.astype(np.float64)
    img_a, cls_a = np.asarray(img, np.int64), np.asarray(cls, np.int64)
    checks = (
        (img_a < 0, "image_id", "is not an image id of the ground truth; results must use "
                                "the GT file's image ids (same type: 1 and \"1\" differ)"),
        (~np.isfinite(score), "score", "is not a finite number"),
        (~np.isfinite(bbox).all(axis=1) | (bbox[:, 2] < 0) | (bbox[:, 3] < 0), "bbox",
         "is not [x, y, w, h] with finite values and w, h >= 0"),
    )
    for bad, key, why in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            _fail(f"entry {i}: {key} {results[i][key]!r} {why} ({int(bad.sum())} entries "
                  f"affected)", path)
    notes: list[str] = []
    keep = cls_a >= 0
    ignored = int(n - keep.sum())
    if ignored:
        first = results[int(np.flatnonzero(~keep)[0])]["category_id"]
        _note(notes, f"{ignored} detections are in categories the ground truth does not "
                     f"list (e.g. category_id {first!r}); they are ignored, as pycocotools "
                     f"ignores them")
        img_a, cls_a, bbox, score = img_a[keep], cls_a[keep], bbox[keep], score[keep]
    area = (bbox[:, 2] * bbox[:, 3]).tolist()
    coco = [{"id": i + 1, "image_id": im + 1, "category_id": c + 1, "bbox": b, "score": s,
             "area": a, "iscrowd": 0}
            for i, (im, c, b, s, a) in enumerate(zip(img_a.tolist(), cls_a.tolist(),
                                                     bbox.tolist(), score.tolist(), area,
                                                     strict=True))]
    boxes = Boxes(image=img_a, cls=cls_a, xywh=bbox, score=score,
                  crowd=np.zeros(len(coco), np.bool_))
    return Results(coco, boxes, ignored, tuple(notes))


def _first_bad_entry(results: list[Any], gt: GroundTruth, path: str | Path | None) -> NoReturn:
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            _fail(f"entry {i} is {type(r).__name__}, expected an object with keys "
                  f"{list(_RESULT_KEYS)}", path)
        missing = [k for k in _RESULT_KEYS if k not in r]
        if missing:
            _fail(f"entry {i} lacks {missing}; each detection needs {list(_RESULT_KEYS)}",
                  path)
        for key in ("image_id", "category_id"):
            try:
                hash(r[key])
            except TypeError:
                _fail(f"entry {i}: {key} {r[key]!r} is not an id (an integer or string)",
                      path)
        bb = r["bbox"]
        if not isinstance(bb, list | tuple) or len(bb) != 4 or not all(_is_real(v)
                                                                       for v in bb):
            _fail(f"entry {i}: bbox {bb!r} is not four numbers [x, y, w, h] (numbers, not "
                  f"strings)", path)
        if not _is_real(r["score"]):
            _fail(f"entry {i}: score {r['score']!r} is not a number (a number, not a "
                  f"string)", path)
    _fail(f"malformed COCO results; each detection needs {list(_RESULT_KEYS)}", path)

