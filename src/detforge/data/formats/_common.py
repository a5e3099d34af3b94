"""Helpers shared by the format readers and writers, and :func:`convert`.

Writers never write into ``out`` directly: :func:`staged_output` gives them a private
staging folder beside ``out`` and moves it into place only when everything was written,
so an interrupted conversion leaves no half-written dataset behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from detforge.core.atomic import link_or_copy, stage_dir
from detforge.core.errors import ConfigError, DatasetError
from detforge.data.dataset import UNSET_SPLIT, Dataset
from detforge.data.images import image_key

__all__ = ["ConvertResult", "as_column", "convert", "destination_keys", "first_bad",
           "normalise_split", "place_images", "progress", "read_text", "split_of",
           "staged_output"]

T = TypeVar("T")

_SPLIT_RE = re.compile(r"(train|val|valid|validation|test)[-_]?\d*", re.IGNORECASE)
_SPLIT_CANON = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test"}


def normalise_split(name: str) -> str:
    """Canonical split name: ``train2017`` -> ``train``, ``valid`` -> ``val``.

    Names that are not a train/val/test variant are returned unchanged.

    Args:
        name: Split name as found in a file or folder name.

    Returns:
        ``"train"``, ``"val"``, ``"test"`` or ``name`` itself.
    """
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


def _safe_key(key: str) -> str:
    parts = [p for p in PurePosixPath(key.replace("\\", "/")).parts
             if p not in ("/", "", ".", "..")]
    return "/".join(parts)


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
        first = seen.setdefault((split, key), i)
        if first != i:
            raise DatasetError(
                f"images {dataset.images.file[first]!r} and {dataset.images.file[i]!r} would "
                f"both be written as {key!r} in split {split or '(none)'!r}; rename one of "
                "them or remove the duplicate row", path=dataset.root)
    return keys


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
        if src.is_file():
            link_or_copy(src, stage / dests[i])
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


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert` did.

    Attributes:
        src_format: Format the source was read as.
        dst_format: Format written.
        out: The output folder.
        images: Images written.
        boxes: Boxes in the dataset.
        classes: Classes in the dataset.
    """

    src_format: str
    dst_format: str
    out: Path
    images: int
    boxes: int
    classes: int


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def convert(src: str | Path, out: str | Path, *, to: str,
            source_format: str | None = None) -> ConvertResult:
    """Read the dataset at ``src`` and write it to ``out`` in format ``to``.

    Args:
        src: Source dataset (file or folder).
        out: New output folder (must not exist, or be empty).
        to: Output format name (a key of ``FORMATS``).
        source_format: Source format; detected from ``src`` when None.

    Returns:
        A :class:`ConvertResult` summary.

    Raises:
        ConfigError: Unknown format, or ``out`` is ``src`` or lies inside it.
        DatasetError: The source is unreadable or malformed.

    Example:
        >>> convert("voc_ds", "coco_ds", to="coco")  # doctest: +SKIP
    """
    from detforge.data.formats import get_format, read_dataset, write_dataset

    src_p, out_p = Path(src).resolve(), Path(out).resolve()
    get_format(to)
    src_dir = src_p.parent if src_p.is_file() else src_p
    if _inside(out_p, src_dir):
        raise ConfigError(f"output {out} is the source or lies inside it ({src_dir}); "
                          "write the converted dataset to a folder outside the source")
    ds = read_dataset(src_p, source_format)
    if ds.root is not None and _inside(out_p, ds.root.resolve()):
        raise ConfigError(f"output {out} lies inside the source dataset root {ds.root}; "
                          "write the converted dataset to a folder outside it")
    write_dataset(ds, out_p, to)
    return ConvertResult(src_format=str(ds.info.get("format", source_format)), dst_format=to,
                         out=out_p, images=ds.num_images, boxes=int(ds.num_boxes),
                         classes=len(ds.classes))


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
