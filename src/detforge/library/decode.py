"""Decode any supported still image to RGB, once, at no more than the size the analysis needs.

* JPEG, PNG, WebP, TIFF, BMP: detforge's checked opener (:mod:`detforge.core.imageio`:
  format told by the magic bytes, header capped before decoding, OpenCV with the EXIF
  orientation applied). A JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale when that
  still covers ``min_side`` (DCT-domain scaling): a 12-megapixel photo analysed at 640
  pixels costs about a tenth of a full decode.
* HEIC / HEIF / AVIF: Pillow with the pillow-heif plug-in (``library`` extra).
* DNG and camera RAW: rawpy (LibRaw, ``library`` extra): the embedded JPEG preview when it
  covers ``min_side``, else a half-size demosaic with the camera's white balance.

Every decoder first reads the pixel size from the header and refuses images over
``max_pixels`` (a decompression bomb would otherwise take all the memory).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import MissingExtraError
from detforge.core.imageio import MAX_PIXELS_ENV, resolve_max_pixels
from detforge.library.formats import Kind

__all__ = ["DEFAULT_MAX_PIXELS", "Decoded", "UndecodableError", "decode_still",
           "library_max_pixels", "register_heif"]

DEFAULT_MAX_PIXELS = 250_000_000  # above core's 64 MP: a camera roll holds panoramas


def library_max_pixels(value: int | None = None) -> int:
    """The library's pixel cap: ``value``, else ``$DETFORGE_MAX_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS`; checked as everywhere else in detforge.

    Raises:
        ConfigError: Not a positive integer, or over OpenCV's limit.
    """
    if value is None and not os.environ.get(MAX_PIXELS_ENV, "").strip():
        return DEFAULT_MAX_PIXELS
    return resolve_max_pixels(value)


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
                               f"(a decompression bomb, or raise --max-pixels or "
                               f"${MAX_PIXELS_ENV})")


def _decode_cv2(data: bytes, min_side: int, max_pixels: int) -> Decoded:
    """JPEG, PNG, WebP, TIFF, BMP through detforge's checked opener (known formats by their
    magic bytes, header parsed and capped before decoding; :mod:`detforge.core.imageio`)."""
    from detforge.core.imageio import ImageError, decode_image, read_header

    try:
        header = read_header(data)
        _check_pixels(header.width, header.height, max_pixels)
        factor = 1
        if header.format == "JPEG" and min_side > 0:
            factor = next((f for f in (8, 4, 2)
                           if min(header.width, header.height) // f >= min_side), 1)
        rgb = decode_image(data, max_pixels=max_pixels, reduce=factor)
    except ImageError as exc:
        raise UndecodableError(exc.reason) from exc
    if factor == 1:  # the decoded image is the upright original
        return Decoded(rgb, rgb.shape[1], rgb.shape[0])
    height, width = header.displayed_hw
    return Decoded(rgb, width, height)


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
