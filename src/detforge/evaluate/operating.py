"""Operating-point metrics: matches at one IoU, P/R/F1 at a confidence, confusion matrix.

COCO AP averages over every confidence; a deployed detector runs at one threshold. This
module answers the deployment questions, vectorised over the whole dataset:

* :func:`match_coco` -- greedy COCO matching at one IoU (0.5), identical in its rules to
  pycocotools ``evaluateImg``: per image and class, detections by descending score (stable),
  at most ``max_dets`` of them, each takes the unmatched ground truth with the highest IoU
  (ties: the later one), non-crowd before crowd; a detection matched to a crowd box is
  ignored. Greedy matching in score order means the matches of the detections above any
  confidence are the matches that confidence alone would give, so one matching serves
  every threshold.
* :func:`class_operating_points` -- per-class precision, recall and F1 at a confidence, the
  F1-versus-confidence curves and the confidence that maximises the mean F1.
* :func:`confusion_matrix` -- class-agnostic matching at IoU 0.5 above a confidence
  (the Ultralytics definition), with a background row and column.
* :func:`image_scores` -- per-image TP/FP/FN at a confidence, for the worst-images list.

Boxes are COCO ``[x, y, w, h]`` float64 and IoU uses pycocotools' arithmetic
(crowd IoU = intersection / detection area).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Boxes", "ClassOperatingPoints", "Matches", "class_operating_points",
           "confusion_matrix", "image_scores", "match_coco"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

_PAIR_CHUNK = 4_000_000  # candidate (detection, ground truth) pairs per vectorised step


@dataclass(frozen=True)
class Boxes:
    """Columnar boxes of one side (ground truth or detections).

    Attributes:
        image: ``[N]`` image index (0..I-1).
        cls: ``[N]`` class index (0..K-1).
        xywh: ``[N, 4]`` float64 COCO boxes.
        score: ``[N]`` float64 scores (ones for ground truth).
        crowd: ``[N]`` bool crowd / ignore flag (always False for detections).
    """

    image: I64
    cls: I64
    xywh: F64
    score: F64
    crowd: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.image)


@dataclass(frozen=True)
class Matches:
    """Result of :func:`match_coco`.

    Attributes:
        status: ``[D]`` int8 per detection: 1 true positive, 0 false positive, -1 ignored
            (matched to a crowd box, or beyond ``max_dets`` for its image and class).
        gt_index: ``[D]`` index of the matched ground truth, -1 when none.
    """

    status: NDArray[np.int8]
    gt_index: I64


def _iou(d: F64, g: F64, crowd: NDArray[np.bool_]) -> F64:
    """Row-wise IoU of paired boxes with pycocotools' ``bbIou`` arithmetic."""
    w = np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3]) - np.maximum(d[:, 1], g[:, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da = d[:, 2] * d[:, 3]
    union = np.where(crowd, da, da + g[:, 2] * g[:, 3] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(inter > 0, inter / union, 0.0)
    return out


def _pairs(dt_key: I64, gt_key: I64) -> Iterator[tuple[I64, I64]]:
    """All (detection, ground truth) index pairs with equal keys, in bounded chunks."""
    order = np.argsort(gt_key, kind="stable")
    sorted_key = gt_key[order]
    lo = np.searchsorted(sorted_key, dt_key, "left")
    cnt = np.searchsorted(sorted_key, dt_key, "right") - lo
    ends = np.cumsum(cnt)
    start = 0
    while start < len(dt_key):
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + _PAIR_CHUNK, "right"))
        stop = max(stop, start + 1)
        c = cnt[start:stop]
        total = int(c.sum())
        if total:
            di = np.repeat(np.arange(start, stop, dtype=np.int64), c)
            first = np.repeat(np.cumsum(c) - c, c)
            gi = order[np.repeat(lo[start:stop], c) + np.arange(total) - first]
            yield di, gi.astype(np.int64)
        start = stop


def _overlapping(dt: Boxes, gt: Boxes, dt_key: I64, gt_key: I64, thr: float,
                 ) -> tuple[I64, I64, F64]:
    """Pairs with equal keys and IoU >= ``thr``."""
    out_d, out_g, out_iou = [], [], []
    for di, gi in _pairs(dt_key, gt_key):
        iou = _iou(dt.xywh[di], gt.xywh[gi], gt.crowd[gi])
        keep = iou >= thr
        out_d.append(di[keep])
        out_g.append(gi[keep])
        out_iou.append(iou[keep])
    if not out_d:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(out_d), np.concatenate(out_g), np.concatenate(out_iou)


def score_rank(dt: Boxes, num_classes: int) -> I64:
    """Rank of each detection by descending score (stable) within its image and class."""
    key = dt.image * num_classes + dt.cls
    order = np.lexsort((np.arange(len(dt)), -dt.score, key))
    sk = key[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(sk)]))
    rank = np.empty(len(dt), np.int64)
    rank[order] = np.arange(len(dt)) - group_start
    return rank


def match_coco(dt: Boxes, gt: Boxes, num_classes: int, *, iou_thr: float = 0.5,
               max_dets: int = 100) -> Matches:
    """Match detections to ground truth with pycocotools' greedy rules at one IoU.

    Args:
        dt: Detections.
        gt: Ground truth (crowd boxes may match many detections; those are ignored).
        num_classes: K; class indices are 0..K-1.
        iou_thr: The IoU a match needs.
        max_dets: Detections per image and class that are evaluated.

    Returns:
        Per-detection status and matched ground truth.
    """
    status = np.zeros(len(dt), np.int8)
    gt_index = np.full(len(dt), -1, np.int64)
    if len(dt) == 0:
        return Matches(status, gt_index)
    rank = score_rank(dt, num_classes)
    status[rank >= max_dets] = -1
    thr = min(iou_thr, 1 - 1e-10)
    di, gi, iou = _overlapping(dt, gt, dt.image * num_classes + dt.cls,
                               gt.image * num_classes + gt.cls, thr)
    live = rank[di] < max_dets
    di, gi, iou = di[live], gi[live], iou[live]
    # Within a detection, the best candidate sorts last: non-crowd, then IoU, then order.
    order = np.lexsort((gi, iou, ~gt.crowd[gi], di, rank[di]))
    di, gi, r = di[order], gi[order], rank[di[order]]
    bounds = np.searchsorted(r, np.arange(max_dets + 1))
    taken = np.zeros(len(gt), np.bool_)
    for k in range(max_dets):
        a, b = bounds[k], bounds[k + 1]
        if a == b:
            continue
        d, g = di[a:b], gi[a:b]
        free = gt.crowd[g] | ~taken[g]
        d, g = d[free], g[free]
        if len(d) == 0:
            continue
        last = np.r_[d[1:] != d[:-1], True]
        d, g = d[last], g[last]
        gt_index[d] = g
        crowd = gt.crowd[g]
        status[d] = np.where(crowd, -1, 1)
        taken[g[~crowd]] = True
    return Matches(status, gt_index)


@dataclass(frozen=True)
class ClassOperatingPoints:
    """Per-class precision / recall / F1 at one confidence, plus F1 curves.

    Attributes:
        precision: ``[K]`` at ``conf`` (0 when the class has no detection above it).
        recall: ``[K]`` at ``conf`` (-1 when the class has no ground truth).
        f1: ``[K]`` at ``conf`` (-1 when the class has no ground truth).
        support: ``[K]`` non-crowd ground-truth boxes.
        detections: ``[K]`` evaluated detections with score >= ``conf``.
        conf_grid: ``[C]`` confidences of the curves (0..1).
        f1_curve: ``[K, C]`` F1 at each confidence of the grid.
        f1_optimal_conf: Confidence of the grid with the highest mean F1 over the classes
            that have ground truth (the lowest such confidence on ties).
    """

    precision: F64
    recall: F64
    f1: F64
    support: I64
    detections: I64
    conf_grid: F64
    f1_curve: F64
    f1_optimal_conf: float


def _prf(tp: F64, n_det: F64, n_gt: F64) -> tuple[F64, F64, F64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n_det > 0, tp / n_det, 0.0)
        r = np.where(n_gt > 0, tp / n_gt, -1.0)
        f1 = np.where(n_gt > 0, np.where(p + r > 0, 2 * p * r / (p + r), 0.0), -1.0)
    return p, r, f1


def class_operating_points(dt: Boxes, gt: Boxes, matches: Matches, num_classes: int, *,
                           conf: float, grid: int = 1001) -> ClassOperatingPoints:
    """Precision, recall and F1 per class at ``conf`` and over a confidence grid.

    Args:
        dt: Detections.
        gt: Ground truth.
        matches: :func:`match_coco` of ``dt`` against ``gt`` (ignored detections are left
            out, as COCO does).
        num_classes: K.
        conf: The operating confidence.
        grid: Number of confidences in the curves, evenly spaced in [0, 1].

    Returns:
        The per-class operating points.
    """
    k = num_classes
    support = np.bincount(gt.cls[~gt.crowd], minlength=k).astype(np.int64)[:k]
    grid_conf = np.linspace(0.0, 1.0, grid)
    thresholds = np.r_[grid_conf, conf]
    tp = np.zeros((k, len(thresholds)))
    n_det = np.zeros((k, len(thresholds)))
    live = matches.status >= 0
    for c in range(k):
        sel = live & (dt.cls == c)
        s = dt.score[sel]
        order = np.argsort(-s, kind="stable")
        s_desc = s[order]
        cum_tp = np.r_[0, np.cumsum(matches.status[sel][order] == 1)]
        n = np.searchsorted(-s_desc, -thresholds, side="right")
        n_det[c] = n
        tp[c] = cum_tp[n]
    p, r, f1 = _prf(tp, n_det, support[:, None].astype(np.float64))
    has_gt = support > 0
    mean_f1 = f1[has_gt, :grid].mean(axis=0) if has_gt.any() else np.zeros(grid)
    best = float(grid_conf[int(np.argmax(mean_f1))])
    return ClassOperatingPoints(p[:, -1], r[:, -1], f1[:, -1], support,
                                n_det[:, -1].astype(np.int64), grid_conf, f1[:, :grid], best)


def confusion_matrix(dt: Boxes, gt: Boxes, num_classes: int, *, conf: float,
                     iou_thr: float = 0.5) -> I64:
    """Class-agnostic confusion matrix at one confidence and IoU.

    Detections with score >= ``conf`` and non-crowd ground truth of the same image are
    paired at IoU >= ``iou_thr``; pairs are kept by descending IoU, one per detection and
    one per ground truth (the Ultralytics definition). Unmatched detections that lie in a
    crowd / ignore box (crowd IoU >= ``iou_thr``) are not counted.

    Args:
        dt: Detections.
        gt: Ground truth.
        num_classes: K.
        conf: Minimum detection score.
        iou_thr: Minimum IoU of a match.

    Returns:
        ``[K+1, K+1]`` counts; ``m[i, j]`` = detections of predicted class ``i`` on ground
        truth of class ``j``; row K = missed ground truth, column K = false detections.
    """
    k = num_classes
    m = np.zeros((k + 1, k + 1), np.int64)
    d_idx = np.flatnonzero(dt.score >= conf)
    g_idx = np.flatnonzero(~gt.crowd)
    c_idx = np.flatnonzero(gt.crowd)
    dsub = Boxes(dt.image[d_idx], dt.cls[d_idx], dt.xywh[d_idx], dt.score[d_idx],
                 dt.crowd[d_idx])
    gsub = Boxes(gt.image[g_idx], gt.cls[g_idx], gt.xywh[g_idx], gt.score[g_idx],
                 gt.crowd[g_idx])
    di, gi, iou = _overlapping(dsub, gsub, dsub.image, gsub.image, iou_thr)
    order = np.argsort(-iou, kind="stable")
    di, gi = di[order], gi[order]
    _, first = np.unique(di, return_index=True)
    keep = np.sort(first)
    di, gi = di[keep], gi[keep]
    _, first = np.unique(gi, return_index=True)
    keep = np.sort(first)
    di, gi = di[keep], gi[keep]
    np.add.at(m, (dsub.cls[di], gsub.cls[gi]), 1)
    missed = np.ones(len(gsub), np.bool_)
    missed[gi] = False
    m[k, :k] += np.bincount(gsub.cls[missed], minlength=k)[:k]
    extra = np.ones(len(dsub), np.bool_)
    extra[di] = False
    if len(c_idx) and extra.any():
        csub = Boxes(gt.image[c_idx], gt.cls[c_idx], gt.xywh[c_idx], gt.score[c_idx],
                     gt.crowd[c_idx])
        e_idx = np.flatnonzero(extra)
        esub = Boxes(dsub.image[e_idx], dsub.cls[e_idx], dsub.xywh[e_idx], dsub.score[e_idx],
                     dsub.crowd[e_idx])
        ci, _, _ = _overlapping(esub, csub, esub.image, csub.image, iou_thr)
        extra[e_idx[np.unique(ci)]] = False
    m[:k, k] += np.bincount(dsub.cls[extra], minlength=k)[:k]
    return m


def image_scores(dt: Boxes, gt: Boxes, matches: Matches, num_images: int, *,
                 conf: float) -> tuple[I64, I64, I64]:
    """True positives, false positives and missed ground truth per image at ``conf``.

    Args:
        dt: Detections.
        gt: Ground truth.
        matches: :func:`match_coco` of ``dt`` against ``gt``.
        num_images: Number of images I.

    Returns:
        ``(tp, fp, fn)``, each ``[I]``.
    """
    above = dt.score >= conf
    tp = np.bincount(dt.image[above & (matches.status == 1)], minlength=num_images)
    fp = np.bincount(dt.image[above & (matches.status == 0)], minlength=num_images)
    n_gt = np.bincount(gt.image[~gt.crowd], minlength=num_images)
    return tp.astype(np.int64), fp.astype(np.int64), (n_gt - tp).astype(np.int64)
