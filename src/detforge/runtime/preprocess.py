"""Pre-processing: letterbox exactly as Ultralytics' ``LetterBox(auto=False, center=True)``.

Resize with ``cv2.INTER_LINEAR`` to ``round(side * r)`` (at least 1 px), split the padding
in two with ``round(d - 0.1)`` / ``round(d + 0.1)``, pad with grey 114. Boxes go back to the
original image with the per-axis gain ``new_side / old_side``, as Ultralytics'
``scale_boxes`` does, so results match its ONNX predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.runtime.metadata import LetterboxSpec, NormalizeSpec

__all__ = ["LetterboxInfo", "letterbox", "to_input"]

Image = NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class LetterboxInfo:
    """How one image was fitted into the input, to map boxes back.

    Attributes:
        orig_h: Original height in pixels.
        orig_w: Original width in pixels.
        gain_x: Resized width / original width.
        gain_y: Resized height / original height.
        pad_x: Columns of padding on the left.
        pad_y: Rows of padding on top.
    """

    orig_h: int
    orig_w: int
    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int

    def for_original(self, height: int, width: int) -> LetterboxInfo:
        """The same letterbox seen from a ``height`` x ``width`` original of this image.

        For an image decoded at a reduced scale (:mod:`detforge.runtime.reduced_decode`):
        the gains then take the input from the full-size original, so boxes map back to it.
        """
        return replace(self, orig_h=height, orig_w=width,
                       gain_x=self.gain_x * self.orig_w / width,
                       gain_y=self.gain_y * self.orig_h / height)


def letterbox(image: Image, size: tuple[int, int],
              spec: LetterboxSpec | None = None) -> tuple[Image, LetterboxInfo]:
    """Resize ``image`` keeping its aspect ratio and pad it to ``size``.

    Args:
        image: ``[H, W, 3]`` uint8 image (any channel order; it is not changed).
        size: Target ``(height, width)``.
        spec: Centre, padding value, scale-up and stretch options (defaults: Ultralytics').

    Returns:
        The ``[size[0], size[1], 3]`` image and the :class:`LetterboxInfo` to undo it.

    Example:
        >>> img = np.zeros((480, 640, 3), np.uint8)
        >>> out, info = letterbox(img, (320, 320))
        >>> out.shape, info.pad_y
        ((320, 320, 3), 40)
    """
    import cv2

    spec = spec or LetterboxSpec()
    h, w = image.shape[:2]
    new_h, new_w = size
    if spec.scale_fill:
        unpad_w, unpad_h = new_w, new_h
        dw = dh = 0.0
    else:
        r = min(new_h / h, new_w / w)
        if not spec.scaleup:
            r = min(r, 1.0)
        unpad_w, unpad_h = max(round(w * r), 1), max(round(h * r), 1)
        dw, dh = float(new_w - unpad_w), float(new_h - unpad_h)
    if spec.center:
        dw, dh = dw / 2, dh / 2
        top, bottom = round(dh - 0.1), round(dh + 0.1)
        left, right = round(dw - 0.1), round(dw + 0.1)
    else:
        top, left = 0, 0
        bottom, right = round(dh + 0.1), round(dw + 0.1)
    out: NDArray[Any] = image
    if (w, h) != (unpad_w, unpad_h):
        out = cv2.resize(image, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    if top or bottom or left or right:
        v = spec.pad_value
        out = cv2.copyMakeBorder(out, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                   value=(v, v, v))
    info = LetterboxInfo(orig_h=h, orig_w=w, gain_x=unpad_w / w, gain_y=unpad_h / h,
                         pad_x=left, pad_y=top)
    return np.ascontiguousarray(out, dtype=np.uint8), info


def to_input(image: Image, normalize: NormalizeSpec | None = None, *,
             bgr_to_rgb: bool = False) -> NDArray[np.float32]:
    """Turn a letterboxed ``[H, W, 3]`` uint8 image into a normalised ``[3, H, W]`` float32.

    Args:
        image: The letterboxed image.
        normalize: Scale, mean and std (defaults: ``/255``, no mean or std).
        bgr_to_rgb: Reverse the channel order too.

    Returns:
        A contiguous ``[3, H, W]`` float32 array.
    """
    norm = normalize or NormalizeSpec()
    chw: NDArray[Any] = image.transpose(2, 0, 1)
    if bgr_to_rgb:
        chw = chw[::-1]
    out = np.empty(chw.shape, np.float32)
    np.multiply(chw, np.float32(norm.scale), out=out, casting="unsafe")
    if any(norm.mean) or any(s != 1 for s in norm.std):
        mean = np.asarray(norm.mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(norm.std, np.float32).reshape(3, 1, 1)
        out -= mean
        out /= std
    return out
