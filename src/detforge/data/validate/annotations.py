"""Box checks, vectorised over the columns of a :class:`~detforge.data.dataset.BoxTable`.

Each box gets at most one of the "drop" verdicts, in this order: non-finite coordinates,
unknown class id, width or height under one pixel, (almost) wholly outside the image.
Boxes that survive may be partly outside the image (clipped by ``--fix``), a duplicate of
another box of the same class in the same image (IoU above a threshold, found in
O(n log n) by :mod:`.box_duplicates`; dropped), or far from their class's size
distribution (reported only). Messages about a COCO box name its annotation id and image.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detforge.data.dataset import Dataset
from detforge.data.validate.box_duplicates import duplicate_pairs
from detforge.data.validate.report import Finding, box_label, box_location, other_box

__all__ = ["DUPLICATE_IOU", "MIN_BOX_SIZE", "SIZE_OUTLIER_Z", "box_findings",
           "duplicate_pairs"]  # duplicate_pairs: re-exported from .box_duplicates

MIN_BOX_SIZE = 1.0
"""Boxes narrower or lower than this many pixels are dropped."""

DUPLICATE_IOU = 0.95
"""Two boxes of one class in one image with an IoU above this are duplicates."""

SIZE_OUTLIER_Z = 4.0
"""|robust z-score| of log box area above which a box is reported as a size outlier."""

_MIN_BOXES_FOR_SIZE_STATS = 30
_EPS = 1e-3  # pixels of slack before a box counts as outside the image

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]


def _fmt_box(b: NDArray[np.float64]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b.tolist()) + ")"


def box_findings(ds: Dataset, width: NDArray[np.integer], height: NDArray[np.integer],
                 ) -> list[Finding]:
    """All box findings of ``ds``.

    Args:
        ds: The dataset.
        width: Width of each image in pixels (0 when unknown: bounds are not checked).
        height: Height of each image in pixels.

    Returns:
        Findings with ``box_index`` set, in box order within each check.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # huge coordinates: inf, reported
        return _box_findings(ds, width, height)


def _box_findings(ds: Dataset, width: NDArray[np.integer], height: NDArray[np.integer],
                  ) -> list[Finding]:
    b = ds.boxes
    if len(b) == 0:
        return []
    xyxy = b.xyxy
    finite: BoolArray = np.asarray(np.isfinite(xyxy).all(axis=1))
    safe = np.where(finite[:, None], xyxy, 0.0)
    x1, y1, x2, y2 = safe.T
    w, h = x2 - x1, y2 - y1
    k = len(ds.classes)
    class_ok: BoolArray = b.ignore | ((b.class_id >= 0) & (b.class_id < k))
    img_w = width[b.image_index].astype(np.float64)
    img_h = height[b.image_index].astype(np.float64)
    known: BoolArray = (img_w > 0) & (img_h > 0)
    cw = np.clip(x2, 0, img_w) - np.clip(x1, 0, img_w)
    ch = np.clip(y2, 0, img_h) - np.clip(y1, 0, img_h)

    not_finite: BoolArray = ~finite
    unknown: BoolArray = finite & ~class_ok
    too_small = finite & class_ok & ((w < MIN_BOX_SIZE) | (h < MIN_BOX_SIZE))
    ok = finite & class_ok & ~too_small
    outside = ok & known & ((cw < MIN_BOX_SIZE) | (ch < MIN_BOX_SIZE))
    ok &= ~outside
    partly = ok & known & ((x1 < -_EPS) | (y1 < -_EPS) | (x2 > img_w + _EPS)
                           | (y2 > img_h + _EPS))

    out: list[Finding] = []

    def add(mask: BoolArray, severity: str, check: str, message: str, fix: str) -> None:
        for i in np.flatnonzero(mask).tolist():
            file, line = box_location(ds, i)
            ctx = {"ref": box_label(ds, i), "box": _fmt_box(xyxy[i]),
                   "w": float(w[i]), "h": float(h[i]),
                   "cls": int(b.class_id[i]), "k": k, "iw": int(img_w[i]), "ih": int(img_h[i]),
                   "image": ds.images.file[int(b.image_index[i])]}
            out.append(Finding(severity, check, file, line,  # type: ignore[arg-type]
                               message.format(**ctx), fix.format(**ctx),
                               image_index=int(b.image_index[i]), box_index=i))

    add(not_finite, "error", "box_not_finite",
        "{ref}box {box} of image {image} has NaN or infinite coordinates",
        "re-label the box or delete it (--fix drops it)")
    add(unknown, "error", "unknown_class",
        "{ref}box {box} has class id {cls}, but only {k} classes are defined (ids 0..{k}-1)",
        "add the class to the class list or correct the id (--fix drops the box)")
    add(too_small, "error", "box_too_small",
        "{ref}box {box} is {w:.3g} x {h:.3g} px; width and height must be at least 1 px",
        "re-draw the box or delete it (--fix drops it)")
    add(outside, "error", "box_outside_image",
        "{ref}box {box} lies (almost) wholly outside the {iw}x{ih} image",
        "check the image size and the coordinate format (--fix drops the box)")
    add(partly, "warning", "box_partly_outside",
        "{ref}box {box} extends outside the {iw}x{ih} image",
        "clip it to the image (--fix clips it to [0, {iw}] x [0, {ih}])")
    out.extend(_duplicate_findings(ds, ok & ~b.ignore))
    out.extend(_size_outlier_findings(ds, ok & ~b.ignore, w * h))
    return out


def _duplicate_findings(ds: Dataset, candidates: BoolArray) -> list[Finding]:
    rows = np.flatnonzero(candidates)
    b = ds.boxes
    first, second, iou = duplicate_pairs(b.image_index[rows], b.class_id[rows], b.xyxy[rows],
                                         iou=DUPLICATE_IOU)
    out = []
    for a, d, v in zip(rows[first].tolist(), rows[second].tolist(), iou.tolist(),
                       strict=True):
        file, line = box_location(ds, d)
        name = _class_name(ds, int(b.class_id[d]))
        out.append(Finding("warning", "duplicate_box", file, line,
                           f"{box_label(ds, d)}box {_fmt_box(b.xyxy[d])} of class {name!r} "
                           f"duplicates {other_box(ds, a)} {_fmt_box(b.xyxy[a])} (IoU {v:.3f})",
                           "delete one of the two boxes (--fix keeps the first)",
                           image_index=int(b.image_index[d]), box_index=d))
    return out


def _class_name(ds: Dataset, cid: int) -> str:
    return ds.classes.names[cid] if 0 <= cid < len(ds.classes) else str(cid)


def _size_outlier_findings(ds: Dataset, candidates: BoolArray, area: FloatArray,
                           ) -> list[Finding]:
    b = ds.boxes
    rows = np.flatnonzero(candidates & (area > 0))
    if not len(rows):
        return []
    order = np.argsort(b.class_id[rows], kind="stable")
    rows = rows[order]
    cls = b.class_id[rows]
    log_area = np.log(area[rows])
    starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    out = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        cid = int(cls[start])
        sel, la = rows[start:end], log_area[start:end]
        if len(la) < _MIN_BOXES_FOR_SIZE_STATS:
            continue
        median = float(np.median(la))
        mad = float(np.median(np.abs(la - median))) * 1.4826
        if mad <= 0:
            continue
        z = (la - median) / mad
        name = _class_name(ds, cid)
        typical = float(np.exp(median))
        for i, zi in zip(sel[np.abs(z) > SIZE_OUTLIER_Z].tolist(),
                         z[np.abs(z) > SIZE_OUTLIER_Z].tolist(), strict=True):
            file, line = box_location(ds, i)
            out.append(Finding(
                "info", "box_size_outlier", file, line,
                f"{box_label(ds, i)}box {_fmt_box(b.xyxy[i])} of class {name!r} has area "
                f"{area[i]:.4g} px^2, "
                f"far from the class's typical {typical:.4g} px^2 (robust z-score {zi:+.1f})",
                "check that the box and its class are right",
                image_index=int(b.image_index[i]), box_index=i))
    return out
