"""Dataset versions: a content hash that survives format conversion and file order.

The hash (SHA-256) covers, in a canonical order:

* the class names, in class-id order (source-format ids are ignored, so COCO's 1-based
  category ids and YOLO's 0-based ones give the same version);
* the image table, sorted by :func:`~detforge.data.images.image_key` so the layout
  folders of a format and the order files are listed in do not matter: key, width,
  height, split and group;
* the boxes of each image, sorted, with coordinates rounded to 1e-6 px (so a lossless
  round trip keeps the version) and the class id and flags (iscrowd, difficult,
  truncated, occluded, ignore);
* with ``include_images=True``, the SHA-256 of every image file's bytes (read in
  parallel threads, streamed in 1 MiB chunks).

Any changed box, class, split or image byte gives a different version. The version is
the first 16 hex characters of the digest; :func:`dataset_digest` returns all 64.

Example:
    >>> from detforge.data.formats import read_dataset
    >>> dataset_version(read_dataset("ds"))  # doctest: +SKIP
    '3f9c0a1b2d4e5f60'
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from detforge.core.errors import DatasetError
from detforge.data.dataset import Dataset
from detforge.data.images import image_key

__all__ = ["VERSION_LENGTH", "dataset_digest", "dataset_version", "file_sha256"]

VERSION_LENGTH = 16
_SCHEME = b"detforge-dataset-version/1\n"
_CHUNK = 1 << 20
_QUANTUM = 1e6  # coordinates are hashed as integers in units of 1e-6 px


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB chunks.

    Raises:
        DatasetError: The file is missing or unreadable.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except FileNotFoundError as exc:
        raise DatasetError("image file not found while hashing the dataset; restore it, "
                           "or drop the image (detforge data validate --fix)",
                           path=path) from exc
    except OSError as exc:
        raise DatasetError(f"cannot read image file while hashing the dataset ({exc}); "
                           "check its permissions", path=path) from exc
    return h.hexdigest()


def _image_hashes(dataset: Dataset, rows: list[int]) -> list[str]:
    """SHA-256 of the image files of ``rows``, computed in threads (hashlib frees the GIL)."""
    if dataset.root is None:
        raise DatasetError("the dataset has no root folder, so its images cannot be hashed; "
                           "read it from disk or pass include_images=False")
    paths = [dataset.image_path(i) for i in rows]
    workers = min(16, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(file_sha256, paths), total=len(paths), desc="hash images",
                         unit="img", disable=None, leave=False))


def dataset_digest(dataset: Dataset, *, include_images: bool = True) -> str:
    """Full SHA-256 hex digest of the dataset's content (see the module docstring).

    Args:
        dataset: The dataset.
        include_images: Also hash every image file's bytes.

    Returns:
        64 hex characters.

    Raises:
        DatasetError: Two images have the same key, or (with ``include_images``) an image
            is missing or unreadable, or the dataset has no root.
    """
    h = hashlib.sha256(_SCHEME)
    h.update(json.dumps(list(dataset.classes.names), ensure_ascii=False).encode())
    keys = [image_key(str(f)) for f in dataset.images.file.tolist()]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    for a, b in zip(order, order[1:], strict=False):
        if keys[a] == keys[b]:
            raise DatasetError(
                f"two images have the same key {keys[a]!r} ({dataset.images.file[a]} and "
                f"{dataset.images.file[b]}); rename one so each image is identified once",
                path=dataset.root)
    files = _image_hashes(dataset, order) if include_images else [""] * len(order)
    img = dataset.images
    h.update(b"\nimages\n")
    for rank, i in enumerate(order):
        row = [keys[i], int(img.width[i]), int(img.height[i]), str(img.split[i]),
               str(img.group[i]), files[rank]]
        h.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    h.update(b"boxes\n")
    h.update(_box_bytes(dataset, order))
    return h.hexdigest()


def _box_bytes(dataset: Dataset, order: list[int]) -> bytes:
    """Boxes as one canonical little-endian int64 matrix, sorted by image rank then value."""
    b = dataset.boxes
    if not len(b):
        return b""
    rank = np.empty(dataset.num_images, np.int64)
    rank[np.asarray(order, np.int64)] = np.arange(dataset.num_images)
    cols = np.column_stack([
        rank[b.image_index],
        b.class_id.astype(np.int64),
        _quantise(b.xyxy),
        b.iscrowd, b.difficult,
        np.rint(b.truncated.astype(np.float64) * _QUANTUM).astype(np.int64),
        b.occluded, b.ignore,
    ]).astype("<i8")
    cols = cols[np.lexsort(cols.T[::-1])]
    return cols.tobytes()


def _quantise(values: NDArray[np.float64]) -> NDArray[np.int64]:
    """Values in units of 1e-6 px as int64; NaN and infinities map to distinct sentinels."""
    big = float(np.iinfo(np.int64).max // 2)
    finite = np.isfinite(values)
    q = np.rint(np.clip(np.where(finite, values, 0.0) * _QUANTUM, -big, big)).astype(np.int64)
    q[np.isnan(values)] = np.iinfo(np.int64).min
    q[np.isposinf(values)] = np.iinfo(np.int64).max
    q[np.isneginf(values)] = np.iinfo(np.int64).min + 1
    return q


def dataset_version(dataset: Dataset, *, include_images: bool = True) -> str:
    """Short content version of a dataset: the first 16 hex characters of its digest.

    Args:
        dataset: The dataset.
        include_images: Also hash every image file's bytes (slower, but catches edits).

    Returns:
        16 hex characters; :func:`dataset_digest` gives the full 64.

    Raises:
        DatasetError: As :func:`dataset_digest`.

    Example:
        >>> dataset_version(ds, include_images=False)  # doctest: +SKIP
        'a41c09e6f2b57d13'
    """
    return dataset_digest(dataset, include_images=include_images)[:VERSION_LENGTH]
