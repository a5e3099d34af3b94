"""Helpers shared by the format readers and writers.

Writers never write into ``out`` directly: :func:`staged_output` gives them a private
staging folder beside ``out`` and moves it into place only when everything was written,
so an interrupted conversion leaves no half-written dataset behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from detforge.core.atomic import link_or_copy, stage_dir
from detforge.core.errors import ConfigError, DatasetError
from detforge.data.dataset import UNSET_SPLIT, Dataset
from detforge.data.images import image_key, image_size

__all__ = ["as_column", "bad_text", "check_class_names", "clean_floats",
           "destination_keys", "exists_dir", "exists_file", "first_bad", "float32_values",
           "known_sizes", "normalise_split", "place_images", "progress", "read_text",
           "split_of", "staged_output"]

T = TypeVar("T")

_OUTPUT_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})

_SPLIT_RE = re.compile(r"(train|val|valid|validation|test)[-_]?\d*", re.IGNORECASE)
_SPLIT_CANON = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test"}


NO_SUBSET = "default"
"""The subset name CVAT and Datumaro give data that belongs to no subset."""


def normalise_split(name: str) -> str:
    """Canonical split name: ``train2017`` -> ``train``, ``valid`` -> ``val``, and
    ``default`` (CVAT's and Datumaro's "no subset") -> ``""`` (unsplit).

    Other names are returned unchanged.

    Args:
        name: Split name as found in a file or folder name.

    Returns:
        ``"train"``, ``"val"``, ``"test"``, ``""`` or ``name`` itself.
    """
    if name == NO_SUBSET:
        return UNSET_SPLIT
    m = _SPLIT_RE.fullmatch(name)
    return _SPLIT_CANON[m.group(1).lower()] if m else name


def progress(items: Iterable[T], *, total: int, desc: str) -> Iterator[T]:
    """Wrap a long loop in a tqdm bar (on stderr, hidden when stderr is not a terminal).

    Args:
        items: The iterable.
        total: Number of items.
        desc: Short label shown before the bar.

    Returns:
        An iterator over ``items``.
    """
    return iter(tqdm(items, total=total, desc=desc, unit="it", leave=False, disable=None,
                     mininterval=0.5))


def read_text(path: Path) -> str:
    """Read a UTF-8 text file (BOM allowed).

    Args:
        path: The file.

    Returns:
        Its text.

    Raises:
        DatasetError: The file is missing, unreadable or not UTF-8.
    """
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text (byte {exc.start}); save the file as UTF-8",
                           path=path) from exc
    except OSError as exc:
        raise DatasetError(f"cannot read file ({exc.strerror}); check that it exists and "
                           "is readable", path=path) from exc


def exists_file(path: Path) -> bool:
    """``path.is_file()``, False (not an exception) for names the OS cannot take.

    Args:
        path: Any path, e.g. built from a name found in an annotation file.

    Returns:
        Whether a regular file (or a link to one) is there.
    """
    try:
        return path.is_file()
    except (OSError, ValueError, UnicodeError):  # NUL byte, name too long, lone surrogate
        return False


def exists_dir(path: Path) -> bool:
    """``path.is_dir()``, False (not an exception) for names the OS cannot take."""
    try:
        return path.is_dir()
    except (OSError, ValueError, UnicodeError):
        return False


_MAX_NAME_BYTES = 255


def _safe_key(key: str) -> str:
    parts = [p for p in PurePosixPath(key.replace("\\", "/")).parts
             if p not in ("/", "", ".", "..")]
    return "/".join(parts)


def bad_text(text: str) -> str | None:
    """Why ``text`` cannot be a file or class name (a NUL, a lone surrogate), or None.

    Args:
        text: A name read from a dataset.

    Returns:
        The reason, to go in an error message, or None when the name is fine.
    """
    if "\0" in text:
        return "holds a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate escape)"
    return None


def check_class_names(names: Sequence[str], path: Path | None) -> None:
    """Refuse class names no format can store.

    Raises:
        DatasetError: The first bad name, why, and the file.
    """
    for name in names:
        if (why := bad_text(name)) is not None:
            raise DatasetError(f"class name {name[:60]!r} {why}; rename the class", path=path)


def _bad_name(key: str) -> str | None:
    """Why ``key`` cannot be a file name on this system, or None."""
    if "\0" in key:
        return "holds a NUL character"
    try:
        parts = [p.encode("utf-8") for p in key.split("/")]
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    if any(len(p) > _MAX_NAME_BYTES for p in parts):
        return f"has a path component longer than {_MAX_NAME_BYTES} bytes"
    return None


def destination_keys(dataset: Dataset) -> list[str]:
    """The key under which each image is written: ``image_key`` without ``..`` or ``/``.

    Args:
        dataset: The dataset being written.

    Returns:
        One relative POSIX key per image row.

    Raises:
        DatasetError: Two images of the same split would be written to the same key.
    """
    keys = [_safe_key(image_key(str(f))) for f in dataset.images.file.tolist()]
    seen: dict[tuple[str, str], int] = {}
    for i, (split, key) in enumerate(zip(dataset.images.split.tolist(), keys, strict=True)):
        if not key:
            raise DatasetError(f"image row {i} has an empty file name; give it a file name",
                               path=dataset.root)
        if (why := _bad_name(key)) is not None:
            raise DatasetError(f"image file name {key[:80]!r} {why}; rename the image",
                               path=dataset.root)
        first = seen.setdefault((split, key), i)
        if first != i:
            raise DatasetError(
                f"images {dataset.images.file[first]!r} and {dataset.images.file[i]!r} would "
                f"both be written as {key!r} in split {split or '(none)'!r}; rename one of "
                "them or remove the duplicate row", path=dataset.root)
    return keys


def known_sizes(dataset: Dataset, need: NDArray[np.bool_]) -> tuple[NDArray[np.int64],
                                                                   NDArray[np.int64]]:
    """Image widths and heights, unknown ones (0) of the rows in ``need`` read from the
    image files where they exist (a bad image stays unknown).

    Args:
        dataset: The dataset.
        need: Mask of the image rows whose size matters.

    Returns:
        ``(width, height)`` as int64 arrays.
    """
    width = dataset.images.width.astype(np.int64)
    height = dataset.images.height.astype(np.int64)
    if dataset.root is None:
        return width, height
    for i in np.flatnonzero(need & ((width <= 0) | (height <= 0))).tolist():
        p = dataset.image_path(i)
        if exists_file(p):
            try:
                width[i], height[i] = image_size(p)
            except DatasetError:
                pass
    return width, height


def place_images(dataset: Dataset, stage: Path, dests: Sequence[str]) -> int:
    """Hard-link (or copy) each existing source image to ``stage / dests[i]``.

    Images whose source file does not exist are skipped (their labels are still written).

    Args:
        dataset: The dataset; images are found under ``dataset.root``.
        stage: The output (staging) folder.
        dests: Destination path of each image relative to ``stage``.

    Returns:
        The number of images placed.
    """
    if dataset.root is None:
        return 0
    placed = 0
    for i in progress(range(dataset.num_images), total=dataset.num_images, desc="images"):
        src = dataset.image_path(i)
        if exists_file(src):
            try:
                link_or_copy(src, stage / dests[i])
            except OSError as exc:
                if exc.errno in _OUTPUT_FULL:  # the output's disk: StorageError upstream
                    raise
                raise DatasetError(f"cannot copy the image to {dests[i]!r} ({exc.strerror}); "
                                   "check free space and permissions", path=src) from exc
            placed += 1
    return placed


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """A private folder to write a dataset into, moved to ``out`` when the block succeeds.

    Args:
        out: The final dataset folder; it must not exist or be empty.

    Yields:
        The staging folder (beside ``out``, so hard links and renames stay cheap).

    Raises:
        ConfigError: ``out`` is a file or a folder that is not empty.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: output exists and is not an empty folder; choose a new "
                          "folder or remove it first (detforge never overwrites a dataset)")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = stage_dir(out)  # removes the stages killed runs left beside out
    try:
        yield stage
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def split_of(dataset: Dataset) -> list[str]:
    """Split values present in the image table, train/val/test first, then unsplit.

    Args:
        dataset: The dataset.

    Returns:
        Split names; ``""`` (unsplit) last, when any image has no split.
    """
    names = dataset.split_names()
    if (dataset.images.split == UNSET_SPLIT).any() or not names:
        names.append(UNSET_SPLIT)
    return names


def first_bad(values: Sequence[object], ok: type | tuple[type, ...]) -> int:
    """Index of the first value that is not an instance of ``ok`` (bools never count).

    Args:
        values: Values parsed from a file.
        ok: Accepted type(s).

    Returns:
        The index, or -1 when every value is accepted.
    """
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, ok):
            return i
    return -1


def clean_floats(values: NDArray[np.floating[Any]], digits: int = 12) -> NDArray[np.float64]:
    """``values`` rounded to ``digits`` significant digits (float noise such as
    ``29.999999999999996`` from a subtraction becomes ``30.0``); non-finite values and
    values too small to scale are returned unchanged.

    Args:
        values: Any float array.
        digits: Significant digits kept.

    Returns:
        A float64 array of the same shape.
    """
    v = np.asarray(values, np.float64)
    out = v.copy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mag = np.floor(np.log10(np.abs(v)))
        scale = 10.0 ** (digits - 1 - mag)
        ok = np.isfinite(v) & (v != 0) & np.isfinite(scale) & (scale <= 1e22) & (scale >= 1)
        out[ok] = np.round(v[ok] * scale[ok]) / scale[ok]
    return out


def float32_values(values: NDArray[Any]) -> list[float]:
    """Float32 values as the Python floats their shortest text means (``0.37``, not
    ``0.3700000047683716``), for JSON.

    Args:
        values: A float32 (or any float) array.

    Returns:
        A list of floats.
    """
    arr = np.asarray(values)
    if arr.dtype == np.float32:
        return [float(str(v)) for v in arr]
    return [float(v) for v in arr.tolist()]


def as_column(values: Sequence[object], kinds: str) -> np.ndarray | None:
    """``values`` as a 1-D array if numpy infers one of the dtype ``kinds``, else None.

    Args:
        values: Values parsed from a file (e.g. one JSON key of every entry).
        kinds: Accepted numpy dtype kinds, e.g. ``"iu"`` for integers, ``"iuf"`` numbers.

    Returns:
        The array, or None when a value is of another type (the caller then finds it
        and raises an error naming it).
    """
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.ndim != 1 or (len(arr) and arr.dtype.kind not in kinds):
        return None
    return arr
