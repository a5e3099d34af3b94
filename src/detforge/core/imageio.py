"""The one way detforge opens image files: regular files only, header checked before decoding.

Every image that data, runtime, evaluation, export and serve read goes through here:

1. **Regular files only.** The path is ``stat``-ed before it is opened: a FIFO, a socket, a
   character or block device (``/dev/zero``), or a symlink to one, is refused without
   reading a byte. It is opened non-blocking and checked again, so a file swapped for a FIFO
   in between cannot block either. Files over ``max_bytes`` (16 bytes per allowed pixel) are
   refused before they are read.
2. **Known formats only**, told by their magic bytes: JPEG, PNG, BMP, TIFF, WebP and PNM
   (PBM/PGM/PPM). Anything else that OpenCV or Pillow would decode (Radiance HDR, PFM, PAM,
   OpenEXR, JPEG 2000, GIF, AVIF, Sun raster, ...) is refused as ``unsupported``: those
   headers are not all readable by Pillow, and an unchecked header is how a 300-byte file
   asks a decoder for gigabytes.
3. **A pixel cap from the header**, before any decoder allocates: the header is parsed by
   Pillow's plugin for the format the magic bytes named (Pillow's own decompression-bomb
   check is not involved, so its warning and error never escape), and ``width x height`` must
   be at most ``max_pixels`` (default 64,000,000, as ``detforge serve``; ``$DETFORGE_MAX_PIXELS``
   or each command's ``--max-pixels`` changes it, up to OpenCV's own limit of 2^30).
4. **Decoding** is OpenCV's (EXIF orientation applied, as ``cv2.imread``) for inference and
   Pillow's for dataset checks and references; any decoder failure is an :class:`ImageError`.

Every refusal is an :class:`ImageError` whose ``kind`` says why and whose message names the
file and the fix; callers report, count and skip it. See docs/decisions/0026-image-opening.md.

Example:
    >>> rgb = read_image("photo.jpg")  # doctest: +SKIP
    >>> with open_image("photo.jpg") as im:  # doctest: +SKIP
    ...     im.size
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ConfigError, DatasetError
from detforge.core.storage import format_bytes

if TYPE_CHECKING:
    from PIL import Image, ImageFile

__all__ = ["DEFAULT_MAX_PIXELS", "FORMATS", "MAX_PIXELS_ENV", "OPENCV_MAX_PIXELS", "ImageError",
           "ImageHeader", "decode_image", "open_image", "read_file", "read_header",
           "read_image", "read_image_bgr", "resolve_max_pixels"]

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest ``width x height`` decoded unless configured otherwise (as ``serve --max-pixels``)."""
OPENCV_MAX_PIXELS = 1 << 30
"""OpenCV's own decode limit (``CV_IO_MAX_IMAGE_PIXELS``); the cap cannot exceed it."""
MAX_PIXELS_ENV = "DETFORGE_MAX_PIXELS"
"""Environment variable that sets the default pixel cap of every command."""
BYTES_PER_PIXEL = 16
"""Largest file accepted, in bytes per allowed pixel (uncompressed 32-bit RGBA is 16)."""
_MIN_MAX_BYTES = 64 * 2**20

Kind = Literal["missing", "not_a_file", "unreadable", "empty", "too_large", "unsupported",
               "corrupt"]

# Magic bytes -> Pillow format name; the only formats detforge decodes.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"),
    *((b"P" + bytes([c]), "PPM") for c in b"123456"),
)
FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "PPM")
"""Formats detforge opens (Pillow's names; ``PPM`` covers PBM, PGM and PPM)."""
# Formats we recognise only to name them in the refusal.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"#?RADIANCE", "Radiance HDR"), (b"#?RGBE", "Radiance HDR"), (b"PF", "PFM"),
    (b"Pf", "PFM"), (b"P7", "PAM"), (b"v/1\x01", "OpenEXR"), (b"GIF8", "GIF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"),
    (b"Y\xa6j\x95", "Sun raster"), (b"8BPS", "PSD"), (b"\xff\x0a", "JPEG XL"),
)
_SUPPORTED = "JPEG, PNG, BMP, TIFF, WebP or PNM"


class ImageError(DatasetError, OSError):
    """An image file was refused or could not be decoded.

    It is a :class:`DatasetError` (it names the file) and an ``OSError`` (code that already
    treats an unreadable file as an ``OSError`` keeps doing so).

    Attributes:
        kind: ``missing``, ``not_a_file`` (FIFO, device, directory...), ``unreadable``
            (permissions, I/O error), ``empty``, ``too_large`` (pixels or bytes over the cap),
            ``unsupported`` (a format detforge does not open) or ``corrupt``.
        reason: The message without the file name (what went wrong and the fix).
    """

    def __init__(self, message: str, *, path: str | Path | None = None,
                 kind: Kind = "corrupt") -> None:
        super().__init__(message, path=path)
        self.kind: Kind = kind
        self.reason = message


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What an image's header says, before any pixel is decoded.

    Attributes:
        format: Pillow's format name (one of :data:`FORMATS`).
        width: Stored width in pixels.
        height: Stored height in pixels.
        orientation: EXIF orientation (1 = as stored; 5-8 swap width and height).
    """

    format: str
    width: int
    height: int
    orientation: int = 1

    @property
    def pixels(self) -> int:
        """``width x height``."""
        return self.width * self.height

    @property
    def displayed_hw(self) -> tuple[int, int]:
        """``(height, width)`` as displayed, with the EXIF orientation applied."""
        if self.orientation in (5, 6, 7, 8):
            return self.width, self.height
        return self.height, self.width


def resolve_max_pixels(value: int | None = None) -> int:
    """The pixel cap: ``value``, else ``$DETFORGE_MAX_PIXELS``, else 64,000,000.

    Raises:
        ConfigError: Not a positive integer, or over OpenCV's 2^30 limit.
    """
    source = "--max-pixels"
    if value is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
        if not text:
            return DEFAULT_MAX_PIXELS
        source = f"${MAX_PIXELS_ENV}"
        if not text.isdigit():
            raise ConfigError(f"{source}={text!r}: expected a pixel count such as 64000000")
        value = int(text)
    if not 1 <= value <= OPENCV_MAX_PIXELS:
        raise ConfigError(f"{source} {value}: must be between 1 and {OPENCV_MAX_PIXELS} "
                          f"(OpenCV decodes nothing larger)")
    return value


def _max_bytes(max_pixels: int | None) -> int:
    return max(_MIN_MAX_BYTES, BYTES_PER_PIXEL * resolve_max_pixels(max_pixels))


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _os_error(path: str | Path, exc: OSError) -> ImageError:
    if isinstance(exc, FileNotFoundError):
        return ImageError("image file not found", path=path, kind="missing")
    return ImageError(f"cannot read the file ({exc.strerror or exc}); check its permissions",
                      path=path, kind="unreadable")


@contextlib.contextmanager
def _open_regular(path: str | Path) -> Iterator[tuple[io.BufferedReader, int]]:
    """The open file and its size; a FIFO, device or socket is refused before it is opened."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, info.st_mode)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
    except ImageError:
        raise
    except OSError as exc:
        raise _os_error(path, exc) from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped after the first check
            raise _not_regular(path, info.st_mode)
        if info.st_size == 0:
            raise ImageError("file is empty (0 bytes); re-copy the image", path=path,
                             kind="empty")
        yield fh, info.st_size


def read_file(path: str | Path, *, max_bytes: int | None = None,
              max_pixels: int | None = None) -> bytes:
    """The bytes of an image file, refusing anything that is not a regular file.

    Args:
        path: The file (a symlink to a regular file is fine).
        max_bytes: Largest size read; default 16 bytes per pixel of the cap (1 GB at 64 MP).
        max_pixels: The pixel cap ``max_bytes`` derives from (default: :func:`resolve_max_pixels`).

    Returns:
        The file's bytes.

    Raises:
        ImageError: ``missing``, ``not_a_file`` (nothing was read), ``unreadable``, ``empty``
            or ``too_large`` (over ``max_bytes``).
    """
    limit = max_bytes if max_bytes is not None else _max_bytes(max_pixels)
    with _open_regular(path) as (fh, size):
        if size > limit:
            raise ImageError(f"file is {format_bytes(size)}, over the {format_bytes(limit)} "
                             f"limit for one image (16 bytes per pixel of --max-pixels); "
                             f"downscale or recompress it", path=path, kind="too_large")
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise _os_error(path, exc) from exc
    if len(data) > limit:
        raise ImageError(f"file grew past the {format_bytes(limit)} limit while it was read",
                         path=path, kind="too_large")
    if not data:
        raise ImageError("file is empty (0 bytes); re-copy the image", path=path, kind="empty")
    return data


def _not_regular(path: str | Path, mode: int) -> ImageError:
    return ImageError(f"not a regular file ({_file_kind(mode)}); images must be regular files "
                      f"(a symlink to one is fine); remove it or point it at an image file",
                      path=path, kind="not_a_file")


def _sniff(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def _plugin(fmt: str) -> type[ImageFile.ImageFile]:
    if fmt == "JPEG":
        from PIL import JpegImagePlugin
        return JpegImagePlugin.JpegImageFile
    if fmt == "PNG":
        from PIL import PngImagePlugin
        return PngImagePlugin.PngImageFile
    if fmt == "BMP":
        from PIL import BmpImagePlugin
        return BmpImagePlugin.BmpImageFile
    if fmt == "TIFF":
        from PIL import TiffImagePlugin
        return TiffImagePlugin.TiffImageFile
    if fmt == "WEBP":
        from PIL import WebPImagePlugin
        return WebPImagePlugin.WebPImageFile
    from PIL import PpmImagePlugin
    return PpmImagePlugin.PpmImageFile


def _parse(fh: io.BufferedReader | io.BytesIO, name: str | Path) -> Image.Image:
    """The Pillow image for ``fh`` (header parsed, no pixel decoded), by the magic bytes.

    The format's plugin class is built directly, which parses the header exactly as
    ``Image.open`` does but without Pillow's decompression-bomb check: detforge applies its
    own cap, to every decoder, right after.
    """
    head = fh.read(16)
    fh.seek(0)
    fmt = _sniff(head)
    if fmt is None:
        other = next((label for magic, label in _OTHER_MAGIC if head.startswith(magic)), None)
        if other is not None:
            raise ImageError(f"{other} images are not supported (their header cannot be "
                             f"checked before decoding); convert it to {_SUPPORTED}",
                             path=name, kind="unsupported")
        raise ImageError(f"not a decodable image (unknown format, or corrupt); expected "
                         f"{_SUPPORTED}", path=name, kind="corrupt")
    try:
        im = _plugin(fmt)(fh)
    except Exception as exc:  # Pillow raises SyntaxError, OSError, ValueError, struct.error...
        raise ImageError(f"not a decodable image (corrupt {fmt} header: "
                         f"{type(exc).__name__}: {exc})", path=name, kind="corrupt") from exc
    if im.width <= 0 or im.height <= 0:
        im.close()
        raise ImageError(f"not a decodable image ({fmt} header declares {im.width}x{im.height} "
                         f"pixels)", path=name, kind="corrupt")
    return im


def _header(im: Image.Image) -> ImageHeader:
    orientation = 1
    if im.format == "JPEG":
        with contextlib.suppress(Exception):  # a broken EXIF block leaves the image as stored
            orientation = int(im.getexif().get(0x0112, 1))
    return ImageHeader(str(im.format), int(im.width), int(im.height), orientation)


def _check_pixels(header: ImageHeader, max_pixels: int, name: str | Path) -> None:
    if header.pixels > max_pixels:
        raise ImageError(f"{header.format} header declares {header.width}x{header.height} = "
                         f"{header.pixels:,} pixels, over the {max_pixels:,}-pixel cap "
                         f"(--max-pixels or ${MAX_PIXELS_ENV}); downscale it",
                         path=name, kind="too_large")


def read_header(source: str | Path | bytes, *, name: str | Path | None = None) -> ImageHeader:
    """Format, size and EXIF orientation of an image, from its header only (no cap applied).

    Only the bytes the header needs are read from a file.

    Args:
        source: A file path (refused unless a regular file) or encoded bytes.
        name: Names the image in errors (default: the path).

    Raises:
        ImageError: The file is refused, of an unsupported format, or its header is corrupt.
    """
    if isinstance(source, str | Path):
        with _open_regular(source) as (fh, _), _parse(fh, name or source) as im:
            return _header(im)
    with _parse(io.BytesIO(bytes(source)), name or "<bytes>") as im:
        return _header(im)


@contextlib.contextmanager
def open_image(source: str | Path | bytes, *, max_pixels: int | None = None,
               name: str | Path | None = None) -> Iterator[Image.Image]:
    """A Pillow image whose header passed the checks; decode it inside the block.

    Args:
        source: A file path or encoded bytes.
        max_pixels: Pixel cap (default: :func:`resolve_max_pixels`).
        name: Names the image in errors (default: the path).

    Yields:
        The lazily-decoded Pillow image (``im.load()``, ``im.convert("RGB")``... decode it).

    Raises:
        ImageError: Refused before decoding (see the module docstring), or, for errors Pillow
            raises while decoding inside the block, ``corrupt``.
    """
    cap = resolve_max_pixels(max_pixels)
    with contextlib.ExitStack() as stack:
        if isinstance(source, str | Path):
            fh: io.BufferedReader | io.BytesIO = stack.enter_context(_open_regular(source))[0]
            label = name or source
        else:
            fh, label = io.BytesIO(bytes(source)), name or "<bytes>"
        im = stack.enter_context(_parse(fh, label))
        _check_pixels(_header(im), cap, label)
        try:
            yield im
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            if isinstance(exc, ImageError):
                raise
            raise ImageError(f"not a decodable image ({type(exc).__name__}: {exc}); re-copy "
                             f"or re-export it", path=label, kind="corrupt") from exc


def decode_image(data: bytes | NDArray[np.uint8], *, name: str | Path = "<bytes>",
                 max_pixels: int | None = None, reduce: int = 1, bgr: bool = False,
                 ) -> NDArray[np.uint8]:
    """Decode encoded image bytes with OpenCV (EXIF orientation applied), header checked first.

    Args:
        data: The encoded image.
        name: Names the image in errors.
        max_pixels: Pixel cap on the header's ``width x height`` (default:
            :func:`resolve_max_pixels`).
        reduce: 2, 4 or 8 decodes a JPEG at that fraction of its size (libjpeg's DCT
            scaling); other formats ignore it. The cap applies to the full size.
        bgr: Return BGR (as ``cv2.imread``) instead of RGB.

    Returns:
        ``[H, W, 3]`` uint8.

    Raises:
        ImageError: Refused before decoding, or the decoder failed (``corrupt``).
    """
    import cv2

    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if not raw:
        raise ImageError("file is empty (0 bytes); re-copy the image", path=name, kind="empty")
    cap = resolve_max_pixels(max_pixels)
    with _parse(io.BytesIO(raw), name) as im:
        header = _header(im)
    _check_pixels(header, cap, name)
    flag = cv2.IMREAD_COLOR
    if header.format == "JPEG" and reduce in (2, 4, 8):
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
    try:
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), flag)
    except cv2.error as exc:
        raise ImageError(f"not a decodable image (OpenCV: {str(exc).strip().splitlines()[-1]})",
                         path=name, kind="corrupt") from exc
    if img is None or img.ndim != 3 or img.shape[0] * img.shape[1] > cap:
        raise ImageError("not a decodable image (corrupt, truncated or unknown format)",
                         path=name, kind="corrupt")
    if bgr:
        return np.asarray(img, dtype=np.uint8)
    return np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def read_image(path: str | Path, *, max_pixels: int | None = None,
               reduce: int = 1) -> NDArray[np.uint8]:
    """Read an image file as RGB ``[H, W, 3]`` uint8 (OpenCV, EXIF orientation applied).

    Raises:
        ImageError: The file is refused or cannot be decoded; ``kind`` says why.
    """
    cap = resolve_max_pixels(max_pixels)
    return decode_image(read_file(path, max_pixels=cap), name=path, max_pixels=cap,
                        reduce=reduce)


def read_image_bgr(path: str | Path, *, max_pixels: int | None = None) -> NDArray[np.uint8]:
    """:func:`read_image` in BGR order, a checked stand-in for ``cv2.imread(path)``."""
    cap = resolve_max_pixels(max_pixels)
    return decode_image(read_file(path, max_pixels=cap), name=path, max_pixels=cap, bgr=True)
