"""Decode a JPEG straight at 1/2, 1/4 or 1/8 of its size when the model input is that small.

libjpeg can skip most of the inverse DCT work and decode a JPEG at a reduced scale
(OpenCV's ``IMREAD_REDUCED_COLOR_2/4/8``, Pillow's ``draft``). A 640x480 photo going into a
320x320 input then costs about 40 % of a full decode, a 12-megapixel photo going into a
640x640 input about a tenth. The picked scale never goes below what the letterbox keeps,
so the image is still only ever shrunk, never enlarged; the remaining shrink is done by the
letterbox as usual. Boxes are mapped back to the full-size original through
:meth:`LetterboxInfo.for_original <detforge.runtime.preprocess.LetterboxInfo.for_original>`.

Pixels differ slightly from a full decode followed by a bilinear resize (libjpeg scales
in the DCT domain), so results are not bit-identical to Ultralytics' preprocessing; hence
it is opt-in (``detforge predict --fast-decode``). See docs/decisions/0008-fast-decode.md.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["REDUCTIONS", "decode_reduced", "jpeg_size", "reduction_for"]

REDUCTIONS = (8, 4, 2)
_ORIENTATION_TAG = 0x0112
_TRANSPOSED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


def jpeg_size(data: bytes | NDArray[np.uint8]) -> tuple[int, int] | None:
    """``(height, width)`` of a JPEG as displayed (EXIF orientation applied), from its header.

    Returns None for anything that is not a readable JPEG.
    """
    from PIL import Image, UnidentifiedImageError

    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    if raw[:2] != b"\xff\xd8":
        return None
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.format != "JPEG":
                return None
            w, h = im.size
            orientation = im.getexif().get(_ORIENTATION_TAG, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    return (w, h) if orientation in _TRANSPOSED else (h, w)


def reduction_for(orig_hw: tuple[int, int], size: tuple[int, int]) -> int:
    """The largest libjpeg scale denominator (8, 4, 2, else 1) the letterbox would undo anyway.

    Example:
        >>> reduction_for((480, 640), (320, 320)), reduction_for((3000, 4000), (640, 640))
        (2, 4)
    """
    h, w = orig_hw
    shrink = max(h / size[0], w / size[1])  # 1 / letterbox gain
    return next((f for f in REDUCTIONS if f <= shrink), 1)


def decode_reduced(path: str | Path,
                   size: tuple[int, int]) -> tuple[NDArray[np.uint8], tuple[int, int]]:
    """Read an image as RGB, at a reduced JPEG scale when ``size`` allows it.

    Args:
        path: Image file.
        size: The model input ``(height, width)`` the image will be letterboxed into.

    Returns:
        The RGB ``[h, w, 3]`` image (possibly smaller than the file) and the file's full
        ``(height, width)`` as displayed.

    Raises:
        UnreadableError: The file is missing, empty or not a decodable image.
    """
    import cv2

    from detforge.runtime.sources import decode_bytes, read_bytes

    data = read_bytes(path)
    full = jpeg_size(data) if data.size else None
    factor = reduction_for(full, size) if full else 1
    if full and factor > 1:
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
        img = cv2.imdecode(data, flag)
        expect = (-(-full[0] // factor), -(-full[1] // factor))
        if img is not None and img.shape[:2] == expect:
            return np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), dtype=np.uint8), full
    image = decode_bytes(data)
    return image, (image.shape[0], image.shape[1])
