"""What the monitor measures on each image and its detections.

Signals (the ``signal`` label of the drift metrics)::

    brightness       mean luma of the image, 0..1                     per image
    contrast         standard deviation of the luma, 0..1             per image
    sharpness        log10(1 + variance of the Laplacian of the luma)  per image
    resolution       log2(width x height)                              per image
    boxes_per_image  detections kept                                   per image
    score            confidence                                        per detection
    box_area         box area / image area, 0..1                       per detection
    box_aspect       log2(box width / box height)                      per detection
    class            class id (categorical)                            per detection

The image signals are computed on a strided sample of at most about 128 x 128 pixels, so
they cost microseconds per image whatever its size; the reference is computed by the same
function, so the sampling is the same on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections

__all__ = ["CATEGORICAL", "CONTINUOUS", "DETECTION_SIGNALS", "IMAGE_SIGNALS", "SIGNALS",
           "DetectionStats", "ImageStats", "detection_stats", "image_stats"]

IMAGE_SIGNALS = ("brightness", "contrast", "sharpness", "resolution")
DETECTION_SIGNALS = ("boxes_per_image", "score", "box_area", "box_aspect")
CATEGORICAL = ("class",)
CONTINUOUS = IMAGE_SIGNALS + DETECTION_SIGNALS
SIGNALS = CONTINUOUS + CATEGORICAL
"""Every signal, in the order reports list them."""

_SAMPLE_SIDE = 128
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True, slots=True)
class ImageStats:
    """The image signals of one image (see the module docstring)."""

    brightness: float
    contrast: float
    sharpness: float
    resolution: float


@dataclass(frozen=True, slots=True)
class DetectionStats:
    """The detection signals of one image: per-detection arrays and the count."""

    count: int
    scores: NDArray[np.float32]
    class_ids: NDArray[np.int32]
    box_area: NDArray[np.float32]
    box_aspect: NDArray[np.float32]


def image_stats(image: NDArray[np.uint8]) -> ImageStats:
    """Brightness, contrast, sharpness and resolution of an RGB ``[H, W, 3]`` uint8 image.

    Example:
        >>> s = image_stats(np.full((64, 64, 3), 255, np.uint8))
        >>> (round(s.brightness, 3), s.contrast, s.resolution)
        (1.0, 0.0, 12.0)
    """
    import cv2

    h, w = image.shape[:2]
    step = max(1, math.ceil(max(h, w) / _SAMPLE_SIDE))
    sample = np.ascontiguousarray(image[::step, ::step, :3], dtype=np.float32)
    # element-wise, not ``sample @ _LUMA``: a BLAS call may wake BLAS threads that compete
    # with inference for the cores
    grey = sample[..., 0] * _LUMA[0] + sample[..., 1] * _LUMA[1] + sample[..., 2] * _LUMA[2]
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)
    return ImageStats(brightness=float(grey.mean()) / 255.0,
                      contrast=float(grey.std()) / 255.0,
                      sharpness=math.log10(1.0 + float(lap.var())),
                      resolution=math.log2(max(1, h * w)))


def detection_stats(det: Detections, width: int, height: int) -> DetectionStats:
    """The detection signals of one image's detections (boxes in its pixels)."""
    xyxy = det.xyxy
    bw = np.maximum(xyxy[:, 2] - xyxy[:, 0], 1e-3)
    bh = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1e-3)
    area = (bw * bh / max(1.0, float(width) * float(height))).astype(np.float32)
    aspect = np.log2(bw / bh).astype(np.float32)
    return DetectionStats(len(det), det.scores.astype(np.float32, copy=False),
                          det.class_ids.astype(np.int32, copy=False), area, aspect)
