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

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from detforge.core.imageio import (
    ImageError,
    decode_image,
    read_file,
    read_header,
    resolve_max_pixels,
)

__all__ = ["REDUCTIONS", "decode_reduced", "jpeg_size", "reduction_for"]

REDUCTIONS = (8, 4, 2)


def jpeg_size(data: bytes | NDArray[np.uint8]) -> tuple[int, int] | None:
    """``(height, width)`` of a JPEG as displayed (EXIF orientation applied), from its header.

    Returns None for anything that is not a readable JPEG.
    """
    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    if raw[:2] != b"\xff\xd8":
        return None
    try:
        header = read_header(raw)
    except ImageError:
        return None
    return header.displayed_hw if header.format == "JPEG" else None


def reduction_for(orig_hw: tuple[int, int], size: tuple[int, int]) -> int:
    """The largest libjpeg scale denominator (8, 4, 2, else 1) the letterbox would undo anyway.

    Example:
        >>> reduction_for((480, 640), (320, 320)), reduction_for((3000, 4000), (640, 640))
        (2, 4)
    """
    h, w = orig_hw
    shrink = max(h / size[0], w / size[1])  # 1 / letterbox gain
    return next((f for f in REDUCTIONS if f <= shrink), 1)


def decode_reduced(path: str | Path, size: tuple[int, int], *, max_pixels: int | None = None,
                   ) -> tuple[NDArray[np.uint8], tuple[int, int]]:
    """Read an image as RGB, at a reduced JPEG scale when ``size`` allows it.

    The file is opened through :mod:`detforge.core.imageio`, so the pixel cap applies to
    the JPEG's full size (the decoder's working memory scales with it) before libjpeg runs.

    Args:
        path: Image file.
        size: The model input ``(height, width)`` the image will be letterboxed into.
        max_pixels: Pixel cap (default: :func:`~detforge.core.imageio.resolve_max_pixels`).

    Returns:
        The RGB ``[h, w, 3]`` image (possibly smaller than the file) and the file's full
        ``(height, width)`` as displayed.

    Raises:
        ImageError: The file is refused, missing, empty, over the cap or not decodable.
    """
    cap = resolve_max_pixels(max_pixels)
    data = read_file(path, max_pixels=cap)
    header = read_header(data, name=path)
    full = header.displayed_hw
    factor = reduction_for(full, size) if header.format == "JPEG" else 1
    if factor > 1:
        try:
            img = decode_image(data, name=path, max_pixels=cap, reduce=factor)
        except ImageError:
            img = None  # the full decode below says what is wrong, or succeeds
        expect = (-(-full[0] // factor), -(-full[1] // factor))
        if img is not None and img.shape[:2] == expect:
            return img, full
    image = decode_image(data, name=path, max_pixels=cap)
    return image, (image.shape[0], image.shape[1])
