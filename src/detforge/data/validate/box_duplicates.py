"""Duplicate boxes (same image, same class, IoU above a threshold) in O(n log n).

1. Boxes are grouped by (image, class) with one sort. In a group of at most
   ``_SMALL_GROUP`` boxes -- nearly all groups of real data -- every pair is compared
   (vectorised across groups): at most ``_SMALL_GROUP`` IoUs per box.
2. In a crowded group, **identical boxes** are grouped by one lexicographic sort; every
   later copy duplicates the first. 8,000 identical boxes form one group: no pair is
   ever formed.
3. The distinct boxes of crowded groups are placed on a grid. If ``IoU(a, b) > t`` then
   each box's width and height are within a factor ``1/t`` of the other's, and the
   top-left corners differ by less than ``(1 - t) * L`` in x and y, ``L`` being the
   longer side of the larger box. So boxes go into size buckets ``floor(log2 L)`` (and a
   second grid shifted by half a bucket, so that a pair straddling a power of two shares
   a bucket in one of them) and, within a bucket, into square cells of side
   ``(1 - t) * 2^(bucket + 1)``: a duplicate pair lies in the same or an adjacent cell.
   Each box scans the earlier boxes of those nine cells in index order (a sorted hash of
   (image, class, bucket, cell) finds them) and stops at its first duplicate or at an
   index above the best found so far; boxes that are not duplicates of one another are
   few in any cell (they must differ by a few per cent in size or position).

Each duplicate is reported once, against the lowest-index box it duplicates -- exactly
what comparing all pairs gives (``tests/data/validate`` checks it against brute force).
Memory is linear: no candidate list is ever built.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["duplicate_pairs"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_SMALL_GROUP = 48  # (image, class) groups up to this size are compared pair by pair
_CLIP = float(2**52)
_M1, _M2, _M3, _M4 = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F),
                      np.uint64(0x165667B19E3779F9), np.uint64(0xD6E8FEB86659FD93))


def _pair_iou(a: FloatArray, b: FloatArray) -> FloatArray:
    """Element-wise IoU of two ``[N, 4]`` xyxy arrays."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
             + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _hash(group: NDArray[np.uint64], cx: IntArray, cy: IntArray) -> NDArray[np.uint64]:
    """A 64-bit mix of (group, cell x, cell y); collisions only add candidate pairs."""
    h = group * _M1
    h ^= cx.astype(np.uint64) * _M2
    h = (h ^ (h >> np.uint64(29))) * _M3
    h ^= cy.astype(np.uint64) * _M4
    return h ^ (h >> np.uint64(32))


def _exact_groups(image_index: IntArray, class_id: IntArray, xyxy: FloatArray,
                  ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``(first, reps)``: for each box the first identical box (itself when it is first),
    and the indices of the first boxes."""
    order = np.lexsort((xyxy[:, 3], xyxy[:, 2], xyxy[:, 1], xyxy[:, 0], class_id,
                        image_index))
    rows = np.column_stack([image_index[order].astype(np.float64),
                            class_id[order].astype(np.float64), xyxy[order]])
    new = np.ones(len(order), bool)
    new[1:] = (rows[1:] != rows[:-1]).any(axis=1)
    start = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    first = np.empty(len(order), np.intp)
    first[order] = order[start]  # lexsort is stable: a group's first is its lowest index
    return first, np.sort(order[new])


def _small_groups(image_index: IntArray, class_id: IntArray, xyxy: FloatArray, iou: float,
                  best: NDArray[np.intp], limit: int) -> NDArray[np.intp]:
    """Compare every pair within each (image, class) group of at most ``limit`` boxes;
    returns the boxes of the larger groups, left to :func:`_crowded`."""
    n = len(image_index)
    ident = (image_index.astype(np.uint64) << np.uint64(32)) \
        ^ (class_id.astype(np.uint64) & np.uint64(0xFFFFFFFF))
    order = np.argsort(ident, kind="stable")  # within a group: index order
    key = ident[order]
    new = np.ones(n, bool)
    new[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, n))
    end = np.repeat(starts + sizes, sizes)
    small = np.repeat(sizes, sizes) <= limit
    pos = np.flatnonzero(small)
    step = 1
    while len(pos):
        pos = pos[pos + step < end[pos]]
        if not len(pos):
            break
        a, b = order[pos], order[pos + step]
        hit = _pair_iou(xyxy[a], xyxy[b]) > iou
        np.minimum.at(best, b[hit], a[hit])
        step += 1
    return np.sort(order[~small])


def _crowded(image_index: IntArray, class_id: IntArray, xyxy: FloatArray, iou: float,
             best: NDArray[np.intp], rows: NDArray[np.intp]) -> None:
    """Duplicates among ``rows`` (boxes of crowded groups): identical boxes by one sort,
    then the distinct ones on the grid."""
    first, reps = _exact_groups(image_index[rows], class_id[rows], xyxy[rows])
    _grid(image_index, class_id, xyxy, iou, best, rows[reps])
    members = np.flatnonzero(first != np.arange(len(rows)))
    rep_of = rows[first[members]]
    best[rows[members]] = np.minimum(rep_of, best[rep_of])


def _grid(image_index: IntArray, class_id: IntArray, xyxy: FloatArray, iou: float,
          best: NDArray[np.intp], rows: NDArray[np.intp]) -> None:
    """Near-duplicates among boxes ``rows`` (the crowded groups) on the size/position grid:
    each box looks, in index order, at the earlier boxes of its cell and the 8 around it
    and stops at the first duplicate or at an index above the best found so far."""
    side = np.maximum(xyxy[rows, 2] - xyxy[rows, 0], xyxy[rows, 3] - xyxy[rows, 1])
    level = np.log2(np.maximum(side, np.finfo(np.float64).tiny))
    ident = (image_index[rows].astype(np.uint64) << np.uint64(32)) \
        ^ class_id[rows].astype(np.uint64)
    for shift in (0.0, 0.5):
        bucket = np.floor(level + shift)
        cell = (1.0 - iou) * np.exp2(bucket + 1 - shift)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            cx = np.clip(np.floor(xyxy[rows, 0] / cell), -_CLIP, _CLIP).astype(np.int64)
            cy = np.clip(np.floor(xyxy[rows, 1] / cell), -_CLIP, _CLIP).astype(np.int64)
        group = (ident * _M3) ^ bucket.astype(np.int64).astype(np.uint64)
        key = _hash(group, cx, cy)
        order = np.argsort(key, kind="stable")  # within a cell: index order
        sorted_key = key[order]
        for ox in (-1, 0, 1):
            for oy in (-1, 0, 1):
                want = _hash(group, cx + ox, cy + oy)
                lo = np.searchsorted(sorted_key, want, "left")
                hi = np.searchsorted(sorted_key, want, "right")
                _scan(rows, order, lo, hi, xyxy, iou, best)


def _scan(rows: NDArray[np.intp], order: NDArray[np.intp], lo: NDArray[np.intp],
          hi: NDArray[np.intp], xyxy: FloatArray, iou: float, best: NDArray[np.intp]) -> None:
    """For each box ``rows[i]``, scan ``rows[order[lo[i]:hi[i]]]`` in index order."""
    b = np.arange(len(rows))
    live = hi > lo
    b, lo, hi = b[live], lo[live], hi[live]
    while len(b):
        a = order[lo]
        ra, rb = rows[a], rows[b]
        go = ra < np.minimum(rb, best[rb])  # later entries have higher indices: stop
        b, lo, hi, ra, rb = b[go], lo[go], hi[go], ra[go], rb[go]
        hit = _pair_iou(xyxy[ra], xyxy[rb]) > iou
        best[rb[hit]] = ra[hit]
        lo = lo + 1
        more = ~hit & (lo < hi)
        b, lo, hi = b[more], lo[more], hi[more]


def duplicate_pairs(image_index: NDArray[np.integer], class_id: NDArray[np.integer],
                    xyxy: FloatArray, *, iou: float = 0.95,
                    ) -> tuple[NDArray[np.intp], NDArray[np.intp], FloatArray]:
    """For each box that duplicates an earlier one (same image and class, IoU above
    ``iou``), that earlier box.

    Args:
        image_index: ``[M]`` image of each box.
        class_id: ``[M]`` class of each box.
        xyxy: ``[M, 4]`` finite boxes with positive width and height.
        iou: IoU threshold (exclusive), in (0, 1).

    Returns:
        ``(first, second, iou)``: one row per duplicate box ``second``; ``first < second``
        is the lowest-index box it duplicates (for a box identical to an earlier one: the
        first of those identical boxes, or the box that one duplicates), and their IoU.

    Example:
        >>> duplicate_pairs(np.zeros(3, int), np.zeros(3, int),
        ...                 np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60.]]))[1]
        array([1])
    """
    m = len(image_index)
    empty = np.zeros(0, np.intp)
    if m < 2:
        return empty, empty, np.zeros(0)
    img = np.asarray(image_index, np.int64)
    cls = np.asarray(class_id, np.int64)
    boxes = np.asarray(xyxy, np.float64)
    best = np.full(m, m, np.intp)
    crowded = _small_groups(img, cls, boxes, iou, best, _SMALL_GROUP)
    if len(crowded):
        _crowded(img, cls, boxes, iou, best, crowded)
    second = np.flatnonzero(best < m)
    first_of = best[second]
    return first_of, second, _pair_iou(boxes[first_of], boxes[second])
