"""Decode any supported still image to RGB, once, at no more than the size the analysis needs.

* JPEG, PNG, WebP, TIFF, BMP: OpenCV (EXIF orientation applied). A JPEG is decoded by
  libjpeg at 1/2, 1/4 or 1/8 scale when that still covers ``min_side`` (the DCT-domain
  scaling OpenCV exposes as ``IMREAD_REDUCED_COLOR_*``): a 12-megapixel photo analysed at
  640 pixels costs about a tenth of a full decode.
* HEIC / HEIF / AVIF: Pillow with the pillow-heif plug-in (``library`` extra).
* DNG and camera RAW: rawpy (LibRaw, ``library`` extra): the embedded JPEG preview when it
  covers ``min_side``, else a half-size demosaic with the camera's white balance.

Every decoder first reads the pixel size from the header and refuses images over
``max_pixels`` (a decompression bomb would otherwise take all the memory).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import MissingExtraError
from detforge.library.formats import Kind

__all__ = ["DEFAULT_MAX_PIXELS", "Decoded", "UndecodableError", "decode_still",
           "register_heif"]

DEFAULT_MAX_PIXELS = 250_000_000
_REDUCED = ((8, "IMREAD_REDUCED_COLOR_8"), (4, "IMREAD_REDUCED_COLOR_4"),
            (2, "IMREAD_REDUCED_COLOR_2"))


class UndecodableError(Exception):
    """A file could not be decoded; the message says why (it is stored with the file)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded still image.

    Attributes:
        rgb: ``[H, W, 3]`` uint8, upright (orientation applied), possibly reduced.
        width: Full upright width of the original, in pixels.
        height: Full upright height of the original, in pixels.
    """

    rgb: NDArray[np.uint8]
    width: int
    height: int


def register_heif() -> None:
    """Make Pillow open HEIC/HEIF/AVIF files through pillow-heif.

    Raises:
        MissingExtraError: pillow-heif is not installed.
    """
    try:
        import pillow_heif
    except ImportError as exc:
        raise MissingExtraError("HEIC/HEIF files need pillow-heif: pip install "
                                "'detforge[library]'") from exc
    pillow_heif.register_heif_opener()
    if hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()


def decode_still(data: bytes, kind: Kind, *, min_side: int = 0,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode the encoded bytes of a still image.

    Args:
        data: The file's bytes.
        kind: ``image``, ``heif`` or ``raw`` (:func:`~detforge.library.formats.kind_of`).
        min_side: Smallest short side the caller needs; lets JPEG and RAW decode smaller.
        max_pixels: Refuse images with more pixels than this.

    Returns:
        The :class:`Decoded` image.

    Raises:
        UndecodableError: Corrupt, truncated, over ``max_pixels`` or of an unknown format.
        MissingExtraError: The decoder's package (pillow-heif, rawpy) is not installed.
    """
    if not data:
        raise UndecodableError("empty file")
    if kind == "raw":
        return _decode_raw(data, min_side, max_pixels)
    if kind == "heif":
        return _decode_pillow(data, max_pixels, heif=True)
    return _decode_cv2(data, min_side, max_pixels)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise UndecodableError(f"{width}x{height} pixels is over the {max_pixels:,}-pixel cap "
                               f"(a decompression bomb, or raise --max-pixels)")


def _decode_cv2(data: bytes, min_side: int, max_pixels: int) -> Decoded:
    import cv2

    width, height = _header_size(data)
    _check_pixels(width, height, max_pixels)
    flag = cv2.IMREAD_COLOR
    if data[:2] == b"\xff\xd8" and min_side > 0:
        for factor, name in _REDUCED:
            if min(width, height) // factor >= min_side:
                flag = getattr(cv2, name)
                break
    buf = np.frombuffer(data, np.uint8)
    bgr = cv2.imdecode(buf, flag)
    if bgr is None:
        raise UndecodableError("not a decodable image (corrupt, truncated or unknown format)")
    h, w = bgr.shape[:2]
    if flag == cv2.IMREAD_COLOR:
        width, height = w, h
    elif (h > w) != (height > width) and h != w:  # OpenCV turned it upright (EXIF)
        width, height = height, width
    return Decoded(np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8), width, height)


@contextlib.contextmanager
def _pillow_errors(what: str) -> Iterator[None]:
    """Turn Pillow's ways of failing on bad input into :class:`UndecodableError`."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except Image.DecompressionBombError as exc:
        raise UndecodableError(f"too many pixels to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise UndecodableError(f"not a decodable {what} (unknown format or corrupt "
                               f"header)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UndecodableError(f"not a decodable {what} ({exc})") from exc


def _header_size(data: bytes) -> tuple[int, int]:
    """Stored (not upright) width and height from the header, through Pillow."""
    from PIL import Image

    with _pillow_errors("image"), Image.open(io.BytesIO(data)) as im:
        return int(im.size[0]), int(im.size[1])


def _decode_pillow(data: bytes, max_pixels: int, *, heif: bool) -> Decoded:
    from PIL import Image, ImageOps

    if heif:
        register_heif()
    with _pillow_errors("HEIF image" if heif else "image"), Image.open(io.BytesIO(data)) as im:
        _check_pixels(im.size[0], im.size[1], max_pixels)
        upright: Any = ImageOps.exif_transpose(im)
        rgb = np.asarray(upright.convert("RGB"), np.uint8)
    return Decoded(rgb, rgb.shape[1], rgb.shape[0])


def _decode_raw(data: bytes, min_side: int, max_pixels: int) -> Decoded:
    try:
        import rawpy
    except ImportError as exc:
        raise MissingExtraError("DNG and camera RAW files need rawpy: pip install "
                                "'detforge[library]'") from exc
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            width, height = int(sizes.width), int(sizes.height)
            _check_pixels(width, height, max_pixels)
            if sizes.flip in (5, 6):
                width, height = height, width
            preview = _raw_preview(raw, min_side)
            if preview is not None:
                return Decoded(preview, width, height)
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise UndecodableError(f"not a decodable RAW image ({type(exc).__name__}: "
                               f"{exc})") from exc
    return Decoded(np.ascontiguousarray(rgb, np.uint8), width, height)


def _raw_preview(raw: Any, min_side: int) -> NDArray[np.uint8] | None:
    """The embedded JPEG preview when it is large enough, else None."""
    import cv2
    import rawpy

    if min_side <= 0:
        return None
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except rawpy.LibRawError:
        return None
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    bgr = cv2.imdecode(np.frombuffer(thumb.data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or min(bgr.shape[:2]) < min_side:
        return None
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)
