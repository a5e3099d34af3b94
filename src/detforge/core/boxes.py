"""Box format conversions and IoU, vectorised over ``[N, 4]`` arrays.

Formats: ``xyxy`` (x1, y1, x2, y2), ``xywh`` (x, y, w, h; top-left corner, as COCO),
``cxcywh`` (centre x, centre y, w, h; as YOLO). All in the same unit as the input.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["box_area", "box_iou", "clip_xyxy", "cxcywh_to_xyxy", "xywh_to_xyxy",
           "xyxy_to_cxcywh", "xyxy_to_xywh"]

FloatArray = NDArray[np.floating]


def xyxy_to_xywh(b: FloatArray) -> FloatArray:
    """(x1, y1, x2, y2) -> (x, y, w, h)."""
    out = np.array(b, copy=True)
    out[..., 2:] = b[..., 2:] - b[..., :2]
    return out


def xywh_to_xyxy(b: FloatArray) -> FloatArray:
    """(x, y, w, h) -> (x1, y1, x2, y2)."""
    out = np.array(b, copy=True)
    out[..., 2:] = b[..., :2] + b[..., 2:]
    return out


def xyxy_to_cxcywh(b: FloatArray) -> FloatArray:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    out = np.empty_like(b)
    out[..., :2] = (b[..., :2] + b[..., 2:]) / 2
    out[..., 2:] = b[..., 2:] - b[..., :2]
    return out


def cxcywh_to_xyxy(b: FloatArray) -> FloatArray:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    out = np.empty_like(b)
    half = b[..., 2:] / 2
    out[..., :2] = b[..., :2] - half
    out[..., 2:] = b[..., :2] + half
    return out


def box_area(b: FloatArray) -> FloatArray:
    """Area of ``xyxy`` boxes; negative extents count as zero."""
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def box_iou(a: FloatArray, b: FloatArray) -> NDArray[np.float64]:
    """Pairwise IoU of ``xyxy`` boxes.

    Args:
        a: ``[N, 4]`` boxes.
        b: ``[M, 4]`` boxes.

    Returns:
        ``[N, M]`` IoU matrix (0 where the union is empty).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def clip_xyxy(b: FloatArray, width: float, height: float) -> FloatArray:
    """Clip ``xyxy`` boxes to the image ``[0, width] x [0, height]``."""
    out = np.array(b, copy=True)
    out[..., 0::2] = np.clip(out[..., 0::2], 0, width)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, height)
    return out
