"""Which boxes and values a writer can keep: the loss checks every writer shares.

Each writer states what its format holds (:class:`Holds`); :func:`plan_boxes` returns
the boxes to write and a :class:`~detforge.data.formats.policy.LossLedger` that has
recorded everything else. The writer calls ``ledger.check()`` before it writes anything,
so a refused write leaves no output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.data.dataset import Dataset
from detforge.data.formats.policy import LossLedger, WriteOptions

__all__ = ["FLAGS", "INTERNAL_EXTRAS", "KITTI_DEFAULTS", "Holds", "plan_boxes"]

FLAGS = ("difficult", "truncated", "occluded")
"""Per-box flags besides ``iscrowd`` and ``ignore``."""

KITTI_DEFAULTS: dict[str, float] = {"alpha": -10.0, "dimensions": -1.0, "location": -1000.0,
                                    "rotation_y": -10.0}
"""KITTI's 3-D fields and the devkit's "unknown" value of each (a value lost only if set)."""

INTERNAL_EXTRAS = frozenset({"ann_id", "yolo_norm"})
"""Extra box columns that are identifiers or caches, not data a format must keep."""


@dataclass(frozen=True)
class Holds:
    """What a format can store.

    Attributes:
        crowd: Crowd regions (``iscrowd``).
        classless_ignore: Ignore regions without a class (KITTI ``DontCare``).
        classed_ignore: Ignore regions of a class (COCO's non-standard ``ignore`` key).
        flags: Which of :data:`FLAGS` it keeps.
        extras: Extra box columns it writes (``coco`` pass-through, KITTI fields...).
        metadata: Metadata families it keeps: ``coco`` (info, licenses, category and image
            keys), ``voc_labelmap`` (CVAT/Datumaro label colours, parts, actions).
        normalised: Boxes kept only as normalised coordinates (``extra["yolo_norm"]``, a
            YOLO label of an image of unknown size): YOLO writes them as they are; other
            formats need pixels, so for them such a box is the ``unsized`` loss.
    """

    crowd: bool = False
    classless_ignore: bool = False
    classed_ignore: bool = False
    flags: frozenset[str] = frozenset()
    extras: frozenset[str] = frozenset()
    metadata: frozenset[str] = frozenset()
    normalised: bool = False


def _first(ds: Dataset, mask: NDArray[np.bool_]) -> str:
    hit = np.flatnonzero(mask)
    return ds.box_ref(int(hit[0])) if len(hit) else ""


def _set_values(name: str, col: NDArray[Any]) -> NDArray[np.bool_]:
    """Rows of extra column ``name`` that hold a value (not the column's "unknown")."""
    if name in KITTI_DEFAULTS:
        arr = np.asarray(col, np.float64).reshape(len(col), -1)
        return np.asarray(((arr != KITTI_DEFAULTS[name]) & ~np.isnan(arr)).any(axis=1))
    if col.dtype.kind == "f":
        return np.asarray(np.isfinite(col.reshape(len(col), -1)).any(axis=1))
    if col.dtype.kind == "O":
        return np.asarray([v is not None and v != {} for v in col.tolist()], bool)
    return np.ones(len(col), bool)


def _area_differs(xyxy: NDArray[np.float64], area: NDArray[Any]) -> NDArray[np.bool_]:
    """COCO ``area`` values that are not just the box's width x height."""
    with np.errstate(invalid="ignore", over="ignore"):
        wh = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
        a = np.asarray(area, np.float64)
        return np.asarray(np.isfinite(a) & ~(np.abs(a - wh) <= 1e-6 * np.maximum(1.0, wh)))


def plan_boxes(ds: Dataset, fmt: str, holds: Holds, options: WriteOptions,
               ) -> tuple[NDArray[np.bool_], LossLedger]:
    """The boxes ``fmt`` can write, and the losses the others would be.

    Boxes left out: non-finite coordinates, a class id outside the class list, ignore
    regions and crowd regions the format cannot hold. Values dropped from written boxes:
    flags and extra columns the format has no place for. Metadata: COCO pass-through.

    Args:
        ds: The dataset being written.
        fmt: Format name (for messages).
        holds: What the format stores.
        options: The writer options.

    Returns:
        ``(keep, ledger)``: a mask over the box table and the losses recorded (not yet
        checked: call ``ledger.check()``).
    """
    b = ds.boxes
    ledger = LossLedger(fmt, options)
    k = len(ds.classes)
    finite = np.isfinite(b.xyxy).all(axis=1)
    classed = (b.class_id >= 0) & (b.class_id < k)
    norm = b.extra.get("yolo_norm")
    from_norm = ~finite & (np.isfinite(np.asarray(norm, np.float64)).all(axis=1)
                           if norm is not None else False)
    unsized: NDArray[np.bool_] = np.asarray(from_norm & (not holds.normalised))
    finite |= from_norm & holds.normalised
    nonfinite = ~finite & ~unsized
    ignore_out = b.ignore & ~(classed & holds.classed_ignore) & ~(~classed
                                                                 & holds.classless_ignore)
    unknown = finite & ~b.ignore & ~classed
    crowd: NDArray[np.bool_] = np.asarray(finite & classed & b.iscrowd & ~b.ignore
                                          & (not holds.crowd))
    ignore_out &= finite
    ledger.skip("nonfinite", int(nonfinite.sum()), _first(ds, nonfinite))
    ledger.skip("unsized", int(unsized.sum()), _first(ds, unsized))
    ledger.skip("unknown-class", int(unknown.sum()), _first(ds, unknown))
    ledger.skip("ignore", int(ignore_out.sum()), _first(ds, ignore_out))
    ledger.skip("crowd", int(crowd.sum()), _first(ds, crowd))
    keep = ~(nonfinite | unsized | unknown | ignore_out | crowd)
    for flag in FLAGS:
        if flag not in holds.flags:
            lost = keep & (getattr(b, flag) != 0)
            ledger.drop("attributes", flag, int(lost.sum()), _first(ds, lost))
    for name, col in b.extra.items():
        if name in INTERNAL_EXTRAS or name in holds.extras:
            continue
        if name == "coco":
            _coco_fields(ds, col, keep, ledger)
            continue
        lost = keep & (_area_differs(b.xyxy, col) if name == "area" else _set_values(name, col))
        ledger.drop("attributes", name, int(lost.sum()), _first(ds, lost))
    _metadata(ds, ledger, holds.metadata)
    return keep, ledger


def _coco_fields(ds: Dataset, col: NDArray[Any], keep: NDArray[np.bool_],
                 ledger: LossLedger) -> None:
    """Count, per key, the boxes whose COCO pass-through values would be lost."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i in np.flatnonzero(keep).tolist():
        values = col[i]
        if not values:
            continue
        for key in values:
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, i)
    for key in sorted(counts):
        ledger.drop("attributes", key, counts[key], ds.box_ref(first[key]))


def _metadata(ds: Dataset, ledger: LossLedger, kept: frozenset[str]) -> None:
    where = str(ds.info.get("source", ""))
    labelmap = ds.info.get("voc_labelmap") or {}
    if "voc_labelmap" not in kept:
        described = [n for n, desc in labelmap.items() if desc.strip(":").strip()]
        ledger.drop("metadata", "VOC labelmap colours/parts/actions", len(described),
                    "labelmap.txt")
    if "coco" in kept:
        return
    for split, meta in (ds.info.get("coco_meta") or {}).items():
        for key in meta:
            ledger.drop("metadata", f"COCO {key}", 1, where or split)
    cats = ds.info.get("coco_categories") or {}
    keys = sorted({k for extra in cats.values() for k in extra})
    for key in keys:
        n = sum(1 for extra in cats.values() if key in extra)
        ledger.drop("metadata", f"category {key}", n, where)
    col = ds.images.extra.get("coco")
    if col is not None:
        counts: dict[str, int] = {}
        for values in col.tolist():
            for key in values or ():
                counts[key] = counts.get(key, 0) + 1
        for key in sorted(counts):
            ledger.drop("metadata", f"image {key}", counts[key], where)
