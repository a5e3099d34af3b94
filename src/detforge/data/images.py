"""Image file helpers shared by the format readers and writers."""

from __future__ import annotations

from pathlib import Path

from detforge.core.imageio import read_header

__all__ = ["IMAGE_EXTENSIONS", "image_key", "image_size", "list_images"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# Folder names that belong to a format's layout, not to the image's identity.
_LAYOUT_DIRS = frozenset({"images", "jpegimages", "image_2", "training", "testing", "train",
                          "val", "valid", "test"})


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image, read from its header only (EXIF rotation ignored).

    The file is opened as :mod:`detforge.core.imageio` opens every image: a FIFO or a device
    is refused unread, and only the formats detforge decodes are accepted. No pixel cap
    applies here (nothing is decoded).

    Raises:
        DatasetError: The file is missing, not a regular file, or not a readable image
            (an :class:`~detforge.core.imageio.ImageError`).
    """
    header = read_header(path)
    return header.width, header.height


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted.

    Every entry with an image suffix that is not a folder is listed, including a FIFO, a
    device or a dangling symlink under an image name, so that ``validate`` reports it
    (opening it is refused, never attempted) instead of the dataset silently losing it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir())


def image_key(file: str) -> str:
    """An image's identity inside a dataset, free of format layout folders.

    ``images/train/cam1/0001.jpg`` -> ``cam1/0001.jpg``; ``JPEGImages/a.jpg`` -> ``a.jpg``.
    Writers place images at ``<format image dir>/[<split>/]<key>``, so converting between
    formats keeps sub-folders but never nests layout folders.
    """
    parts = [p for p in file.split("/") if p and p != "."]
    start = 0
    while start < len(parts) - 1 and parts[start].lower() in _LAYOUT_DIRS:
        start += 1
    return "/".join(parts[start:])
