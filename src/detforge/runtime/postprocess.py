"""Decoding of every output layout and class-aware NMS, vectorised in numpy.

Layouts (``B`` batch, ``K`` classes):

* ``raw``        ``[B, 4+K, N]``: YOLOv8/11 head, cx, cy, w, h in input pixels, then K scores.
* ``rtdetr``     ``[B, Q, 6]``: x1, y1, x2, y2 in input pixels, score, class: detforge's RT-DETR
  export, the decoder's top Q by score (no NMS).
* ``rtdetr-normalized`` ``[B, Q, 6]``: normalised cx, cy, w, h, score, class (Ultralytics' own
  RT-DETR export and ``.pt`` output; no NMS); an older ``[B, Q, 4+K]`` (K class scores) too.
* ``deepstream`` ``[B, N, 6]``: x1, y1, x2, y2, score, class in input pixels (NMS needed).
* ``end2end``    ``[B, K, 6]``: same columns after NMS, padded with score-0 rows (no NMS).

The NMS reproduces Ultralytics' ``non_max_suppression``: candidates whose best class score is
``> conf``, at most ``max_nms`` by score, boxes offset by ``class * max_wh`` so classes never
suppress each other, suppression when IoU ``> iou``, then the first ``max_det``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.boxes import cxcywh_to_xyxy
from detforge.core.detections import Detections
from detforge.core.errors import BackendError
from detforge.runtime.metadata import LAYOUTS
from detforge.runtime.preprocess import LetterboxInfo

__all__ = ["MAX_NMS", "MAX_WH", "batched_nms", "decode_batch", "nms", "scale_to_original",
           "to_detections"]

MAX_WH = 7680
MAX_NMS = 30000

F32 = NDArray[np.float32]
Decoded = tuple[F32, F32, NDArray[np.int32]]  # xyxy in input pixels, scores, class ids


def nms(boxes: NDArray[Any], scores: NDArray[Any], iou: float) -> NDArray[np.int64]:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        scores: ``[N]`` scores.
        iou: Boxes overlapping a kept box with IoU strictly above this are dropped.

    Returns:
        Indices of the kept boxes, by decreasing score.

    Example:
        >>> b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
        >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
        [0, 2]
    """
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    b = boxes.astype(np.float32, copy=False)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if not rest.size:
            break
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            ious = np.where(union > 0, inter / union, 0.0)
        order = rest[ious <= iou]
    return np.asarray(keep, np.int64)


def batched_nms(boxes: NDArray[Any], scores: NDArray[Any], class_ids: NDArray[Any],
                iou: float, *, max_wh: int = MAX_WH) -> NDArray[np.int64]:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        scores: ``[N]`` scores.
        class_ids: ``[N]`` class ids.
        iou: IoU threshold.
        max_wh: Per-class coordinate offset (larger than any image side).

    Returns:
        Indices of the kept boxes, by decreasing score.
    """
    offsets = class_ids.astype(np.float32)[:, None] * np.float32(max_wh)
    return nms(boxes.astype(np.float32) + offsets, scores, iou)


def _select(xyxy: F32, scores: F32, cls: NDArray[Any], *, conf: float, iou: float | None,
            max_det: int) -> Decoded:
    """Threshold, optionally NMS, and cap one image's candidates."""
    keep = scores > conf
    xyxy, scores, cls = xyxy[keep], scores[keep], cls[keep]
    if iou is not None:
        if len(scores) > MAX_NMS:
            top = np.argsort(-scores, kind="stable")[:MAX_NMS]
            xyxy, scores, cls = xyxy[top], scores[top], cls[top]
        idx = batched_nms(xyxy, scores, cls, iou)[:max_det]
    else:
        idx = np.arange(min(len(scores), max_det))
    return (xyxy[idx].astype(np.float32), scores[idx].astype(np.float32),
            cls[idx].astype(np.int32))


def decode_batch(outputs: Sequence[NDArray[Any]], *, layout: str, num_classes: int,
                 input_hw: tuple[int, int], conf: float = 0.25, iou: float = 0.7,
                 max_det: int = 300) -> list[Decoded]:
    """Decode one batch of raw outputs into per-image boxes in input pixels.

    Args:
        outputs: The backend's outputs; the first is the detection tensor.
        layout: One of :data:`~detforge.runtime.metadata.LAYOUTS` (see the module docstring).
        num_classes: Number of classes K.
        input_hw: Network input ``(height, width)`` (to scale normalised boxes).
        conf: Keep scores strictly above this.
        iou: NMS IoU threshold (layouts that need NMS).
        max_det: Most detections per image.

    Returns:
        Per image: ``(xyxy [M, 4], scores [M], class_ids [M])`` in input pixels.

    Raises:
        BackendError: The output's shape does not fit the layout.
    """
    if not outputs:
        raise BackendError("the model returned no outputs; check that it is a detector")
    out = np.asarray(outputs[0])
    if out.ndim != 3:
        raise BackendError(f"expected a [B, ., .] detection output for layout {layout!r}, got "
                           f"shape {out.shape}; check the model's layout metadata")
    out = out.astype(np.float32, copy=False)
    results: list[Decoded] = []
    if layout == "raw":
        if out.shape[1] != 4 + num_classes:
            raise BackendError(f"layout 'raw' expects [B, 4+{num_classes}, N], got {out.shape}; "
                               f"the class list in the metadata does not match the model")
        for pred in out:
            cls_scores = pred[4:]
            cls = cls_scores.argmax(0)
            scores = np.take_along_axis(cls_scores, cls[None], 0)[0]
            cand = scores > conf
            xyxy = cxcywh_to_xyxy(pred[:4, cand].T)
            results.append(_select(xyxy, scores[cand], cls[cand], conf=conf, iou=iou,
                                   max_det=max_det))
    elif layout == "rtdetr-normalized":
        h, w = input_hw
        scale = np.array([w, h, w, h], np.float32)
        for pred in out:
            if pred.shape[1] == 6:
                scores, cls = pred[:, 4], pred[:, 5].astype(np.int64)
            elif pred.shape[1] == 4 + num_classes:
                cls = pred[:, 4:].argmax(1)
                scores = pred[np.arange(len(pred)), 4 + cls]
            else:
                raise BackendError(f"layout 'rtdetr-normalized' expects [B, Q, 6] or "
                                   f"[B, Q, 4+{num_classes}], got {out.shape}")
            xyxy = cxcywh_to_xyxy(pred[:, :4]) * scale
            results.append(_select(xyxy, scores, cls, conf=conf, iou=None, max_det=max_det))
    elif layout in ("deepstream", "end2end", "rtdetr"):
        if out.shape[2] != 6:
            raise BackendError(f"layout {layout!r} expects [B, N, 6] (x1, y1, x2, y2, score, "
                               f"class), got {out.shape}")
        for pred in out:
            results.append(_select(pred[:, :4], pred[:, 4], pred[:, 5].astype(np.int64),
                                   conf=conf, iou=iou if layout == "deepstream" else None,
                                   max_det=max_det))
    else:
        raise BackendError(f"unknown output layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    return results


def scale_to_original(xyxy: F32, info: LetterboxInfo) -> F32:
    """Map ``xyxy`` boxes from the letterboxed input back to original pixels, clipped.

    Args:
        xyxy: ``[N, 4]`` boxes in input pixels.
        info: The letterbox that produced the input.

    Returns:
        ``[N, 4]`` float32 boxes in the original image.
    """
    out = xyxy.astype(np.float32, copy=True)
    out[:, 0::2] = (out[:, 0::2] - info.pad_x) / info.gain_x
    out[:, 1::2] = (out[:, 1::2] - info.pad_y) / info.gain_y
    out[:, 0::2] = np.clip(out[:, 0::2], 0, info.orig_w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, info.orig_h)
    return out


def to_detections(decoded: Decoded, info: LetterboxInfo) -> Detections:
    """One image's decoded boxes as :class:`Detections` in original pixels."""
    xyxy, scores, cls = decoded
    return Detections(scale_to_original(xyxy, info), scores, cls)
