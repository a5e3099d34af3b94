"""Image file checks: missing, unreadable, truncated, size mismatch; content hashes.

Every image is read once (in a thread pool, with a progress bar): its bytes give the
SHA-256 (exact duplicates) and, decoded, its size and perceptual hash (near duplicates).
Files are opened through :mod:`detforge.core.imageio`: a FIFO, a device (``/dev/zero``) or a
symlink to one is reported unread, and an image whose header declares more pixels than the
cap (64 MP, ``$DETFORGE_MAX_PIXELS``) is reported without being decoded.

Truncation is detected deterministically, whatever ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
is set to by other code: a JPEG must end with its EOI marker and a PNG with its IEND
chunk, and the pixel data must decode.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from detforge.core.imageio import ImageError, open_image, read_file
from detforge.data.dataset import Dataset
from detforge.data.validate.report import Finding, image_label_file

__all__ = ["ImageProbe", "check_sizes", "image_findings", "probe_image", "probe_images"]

Status = Literal["ok", "missing", "unreadable", "truncated"]

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
_HASH_SIZE = 8  # 8x8 DCT bits = a 64-bit perceptual hash
# EXIF orientations that swap width and height.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True, slots=True)
class ImageProbe:
    """What reading one image file told us.

    Attributes:
        status: ``ok``, ``missing``, ``unreadable`` or ``truncated``.
        width: Stored width in pixels (0 unless ``ok``).
        height: Stored height in pixels (0 unless ``ok``).
        sha256: Hex SHA-256 of the file bytes ("" when missing).
        phash: 64-bit perceptual hash (0 unless ``ok``).
        transposed: The EXIF orientation rotates the image by 90 degrees.
        error: Why the image could not be read ("" when ``ok``).
    """

    status: Status
    width: int = 0
    height: int = 0
    sha256: str = ""
    phash: int = 0
    transposed: bool = False
    error: str = ""


def _truncation(data: bytes) -> str:
    """Why ``data`` looks cut short, or "" if its container ends properly."""
    if data.startswith(_JPEG_SOI):
        if not data.rstrip(b"\x00\r\n ").endswith(_JPEG_EOI):
            return "JPEG data ends without its end-of-image marker (FFD9)"
    elif data.startswith(_PNG_MAGIC) and _PNG_IEND not in data[-64:]:
        return "PNG data ends without its IEND chunk"
    return ""


def probe_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> ImageProbe:
    """Read, decode and hash one image.

    Args:
        path: The image file.
        max_pixels: Pixel cap checked on the header before decoding (default: 64 MP or
            ``$DETFORGE_MAX_PIXELS``).

    Returns:
        The probe; never raises for a bad image (the status says what is wrong).
    """
    import imagehash

    path = Path(path)
    try:
        data = read_file(path, max_pixels=max_pixels)
    except ImageError as exc:
        if exc.kind == "missing":
            return ImageProbe("missing", error="file not found")
        if exc.kind == "not_a_file" and path.is_dir():
            return ImageProbe("missing", error="path is a directory, not an image")
        sha = hashlib.sha256(b"").hexdigest() if exc.kind == "empty" else ""
        return ImageProbe("unreadable", sha256=sha, error=exc.reason)
    sha = hashlib.sha256(data).hexdigest()
    truncated = _truncation(data)
    try:
        with open_image(data, max_pixels=max_pixels, name=path) as im:  # header checks first
            if truncated:
                return ImageProbe("truncated", sha256=sha, error=truncated)
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
            if im.format == "JPEG":
                im.draft("L", (4 * _HASH_SIZE * 2, 4 * _HASH_SIZE * 2))
            im.load()
            phash = imagehash.phash(im, hash_size=_HASH_SIZE)
    except ImageError as exc:
        cause = exc.__cause__
        kind: Status = "truncated" if "truncated" in str(cause or exc).lower() else "unreadable"
        return ImageProbe(kind, sha256=sha, error=exc.reason)
    bits = np.packbits(phash.hash.reshape(-1).astype(np.uint8))
    return ImageProbe("ok", int(width), int(height), sha,
                      int.from_bytes(bits.tobytes(), "big"),
                      transposed=orientation in _TRANSPOSING_ORIENTATIONS)


def probe_images(ds: Dataset, *, progress: bool = True,
                 workers: int | None = None) -> list[ImageProbe]:
    """Probe every image of ``ds`` in a thread pool, with a progress bar.

    Args:
        ds: The dataset; image paths are resolved against ``ds.root``.
        progress: Show a tqdm progress bar.
        workers: Threads (default: the CPU count, at most 8).

    Returns:
        One probe per image row, in table order.
    """
    from tqdm import tqdm

    n = ds.num_images
    workers = workers or min(8, os.cpu_count() or 1)
    paths = [ds.image_path(i) for i in range(n)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(probe_image, paths, chunksize=16)
        return list(tqdm(results, total=n, desc="checking images", unit="img",
                         disable=not progress, leave=False))


def image_findings(ds: Dataset, probes: list[ImageProbe]) -> list[Finding]:
    """Findings for missing, unreadable and truncated images and size mismatches.

    Args:
        ds: The dataset.
        probes: One probe per image, from :func:`probe_images`.

    Returns:
        The findings, with ``image_index`` set.
    """
    out: list[Finding] = []
    for i, p in enumerate(probes):
        image = str(ds.images.file[i])
        if p.status == "missing":
            out.append(Finding("error", "missing_image", image, None,
                               f"image {ds.image_path(i)} is listed in the labels but "
                               f"{p.error}",
                               "restore the image file or delete its labels (--fix drops "
                               "the image)", image_index=i))
        elif p.status == "unreadable":
            out.append(Finding("error", "unreadable_image", image, None,
                               f"image cannot be decoded: {p.error}",
                               "re-export or re-download the image (--fix drops it)",
                               image_index=i))
        elif p.status == "truncated":
            out.append(Finding("error", "truncated_image", image, None,
                               f"image file is truncated: {p.error}",
                               "re-copy the complete file (--fix drops the image)",
                               image_index=i))
        else:
            mismatch = _size_mismatch(ds, i, p)
            if mismatch is not None:
                out.append(mismatch)
    return out


def _size_mismatch(ds: Dataset, i: int, p: ImageProbe) -> Finding | None:
    lw, lh = int(ds.images.width[i]), int(ds.images.height[i])
    if lw <= 0 or lh <= 0 or (lw, lh) == (p.width, p.height):
        return None
    why = ""
    if p.transposed and (lw, lh) == (p.height, p.width):
        why = " (the labels use the EXIF-rotated size; detforge uses the stored pixels)"
    return Finding("error", "size_mismatch", image_label_file(ds, i), None,
                   f"labels say image {ds.images.file[i]} is {lw}x{lh}, the file is "
                   f"{p.width}x{p.height}{why}",
                   "correct the size in the labels (--fix uses the file's size and rescales "
                   "the boxes when the aspect ratio matches)",
                   image_index=i, value=(p.width, p.height))


def check_sizes(ds: Dataset, probes: list[ImageProbe] | None,
                ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Image sizes to check boxes against: the labels' size, or the file's when unknown.

    Boxes are drawn in the labels' frame, so a size mismatch is reported on its own
    (``size_mismatch``) rather than as many out-of-bounds boxes.
    """
    width = ds.images.width.astype(np.int64)
    height = ds.images.height.astype(np.int64)
    if probes is not None:
        for i, p in enumerate(probes):
            if p.status == "ok" and (width[i] <= 0 or height[i] <= 0):
                width[i], height[i] = p.width, p.height
    return width, height
