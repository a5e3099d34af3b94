"""Folder layouts shared by Pascal VOC and KITTI: split files, class lists, image lookup.

* ``ImageSets/.../<split>.txt`` list the image ids of each split (``<class>_<split>.txt``
  files are per-class lists and are skipped; lines starting with ``#`` are comments).
* ``labels.txt`` gives the class order, one name per line; a CVAT/Datumaro VOC export
  writes ``labelmap.txt`` instead (``name:color:parts:actions`` lines, ``#`` comments and a
  ``background`` entry, which is the segmentation background, not a detection class).
* Numbers are written as the shortest text that reads back to the same value.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.data.dataset import UNSET_SPLIT, Dataset
from detforge.data.formats._common import (
    check_class_names,
    destination_keys,
    normalise_split,
    read_text,
)
from detforge.data.images import IMAGE_EXTENSIONS, image_size, list_images

__all__ = ["ImageIndex", "class_order", "fmt_num", "output_ids", "put_text",
           "read_image_sets", "read_labelmap", "write_image_sets", "write_labelmap",
           "write_labels_txt"]


_SPLIT_PRIORITY = ("train", "val", "test")
_PER_CLASS_SUFFIXES = ("_train", "_val", "_trainval", "_test")


def put_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` inside a staging folder, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def fmt_num(value: float | np.floating[Any]) -> str:
    """Shortest text that reads back to exactly ``value`` (integers without decimals).

    A float32 value is written with float32 precision (``0.3``, not ``0.30000001``).

    Args:
        value: A Python float or numpy scalar.

    Returns:
        The number as text, never in scientific notation.
    """
    if not isinstance(value, np.floating) or isinstance(value, np.float64):
        v = float(value)
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        text = repr(v)
        if "e" not in text and "n" not in text:  # not scientific, inf or nan
            return text
    return np.format_float_positional(value, unique=True, trim="-")


class ImageIndex:
    """The image files under one folder, looked up by relative path or by path without suffix.

    Args:
        folder: The image folder (``JPEGImages/``, ``image_2/``); it may be missing.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        rels = [p.relative_to(folder).as_posix() for p in list_images(folder)]
        self._rels = set(rels)
        self._stems: dict[str, str] = {}
        for rel in rels:
            self._stems.setdefault(rel.rsplit(".", 1)[0], rel)

    def find(self, rel: str) -> str | None:
        """``rel`` when that file exists, else None."""
        return rel if rel in self._rels else None

    def find_stem(self, rel: str) -> str | None:
        """The image whose path without suffix is ``rel`` (an image suffix is dropped first)."""
        p = PurePosixPath(rel)
        stem = str(p.with_suffix("")) if p.suffix.lower() in IMAGE_EXTENSIONS else rel
        return self._stems.get(stem)

    def size(self, rel: str) -> tuple[int, int]:
        """(width, height) of image ``rel`` from its header."""
        return image_size(self.folder / rel)


def read_image_sets(folder: Path) -> tuple[dict[str, str], list[str], list[tuple[str, str]]]:
    """Split membership from ``<split>.txt`` files (``<class>_<split>.txt`` are skipped).

    Args:
        folder: ``ImageSets/Main`` (VOC) or ``ImageSets`` (KITTI); it may be missing.

    Returns:
        ``(split of each id, ids listed in two splits, every (split, id) listed)``. Files are
        taken in the order train, val, test, other names, then trainval, and the first
        split listing an id wins.
    """
    if not folder.is_dir():
        return {}, [], []
    files = {normalise_split(p.stem): p for p in sorted(folder.glob("*.txt"))
             if not p.stem.endswith(_PER_CLASS_SUFFIXES)}
    order = ([s for s in _SPLIT_PRIORITY if s in files]
             + sorted(set(files) - {*_SPLIT_PRIORITY, "trainval"})
             + (["trainval"] if "trainval" in files else []))
    split_of: dict[str, str] = {}
    conflicts: list[str] = []
    listed: list[tuple[str, str]] = []
    for split in order:
        for raw in read_text(files[split]).splitlines():
            ident = raw.strip()
            if ident.startswith("#"):
                continue
            parts = ident.split()
            if len(parts) == 2 and parts[1] in ("1", "0", "-1"):
                ident = parts[0]
            if not ident:
                continue
            listed.append((split, ident))
            if ident not in split_of:
                split_of[ident] = split
            elif split != "trainval" and split_of[ident] != split:
                conflicts.append(f"{ident} in {split_of[ident]} and {split}")
    return split_of, conflicts, listed


def write_image_sets(folder: Path, ids: list[str], splits: list[str]) -> None:
    """Write ``<split>.txt`` per split (and ``trainval.txt`` when train and val exist).

    Nothing is written when no image has a split.

    Args:
        folder: Where the split files go.
        ids: The id of every image.
        splits: The split of every image.
    """
    by_split: dict[str, list[str]] = {}
    for ident, split in zip(ids, splits, strict=True):
        if split != UNSET_SPLIT:
            by_split.setdefault(split, []).append(ident)
    if "train" in by_split and "val" in by_split and "trainval" not in by_split:
        by_split["trainval"] = [i for i, s in zip(ids, splits, strict=True)
                                if s in ("train", "val")]
    for split, members in by_split.items():
        put_text(folder / f"{split}.txt", "".join(f"{m}\n" for m in members))


def read_labelmap(path: Path) -> dict[str, str]:
    """A CVAT/Datumaro ``labelmap.txt``: ``{name: "color:parts:actions"}`` in file order.

    Args:
        path: The file (``name:color:parts:actions`` per line, ``#`` comments).

    Returns:
        The entries, ``background`` included.

    Raises:
        DatasetError: A line without a name, or a name given twice (file and line named).
    """
    out: dict[str, str] = {}
    for n, raw in enumerate(read_text(path).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, desc = line.partition(":")
        name = name.strip()
        if not name:
            raise DatasetError("label entry has no name; write name:color:parts:actions",
                               path=path, line=n)
        if name in out:
            raise DatasetError(f"label {name[:60]!r} is defined twice; list each label once",
                               path=path, line=n)
        out[name] = desc
    return out


def write_labelmap(path: Path, names: tuple[str, ...], labelmap: dict[str, str]) -> None:
    """Write ``labelmap.txt``: the source's entries for ``background`` and each class, and
    ``name:::`` for classes it did not list."""
    lines = ["# label:color_rgb:parts:actions"]
    if "background" in labelmap and "background" not in names:
        lines.append(f"background:{labelmap['background']}")
    lines += [f"{n}:{labelmap.get(n, '::')}" for n in names]
    put_text(path, "".join(f"{line}\n" for line in lines))


def class_order(labels_txt: Path, names: list[str], labelmap: Path | None = None,
                ) -> tuple[ClassMap, NDArray[np.int32], dict[str, str]]:
    """Classes from ``labels_txt``, else ``labelmap`` (without ``background``), else the
    names found, sorted; names found but not listed are appended, sorted.

    Args:
        labels_txt: Optional class list, one name per line.
        names: The class name of every box, in box order.
        labelmap: Optional CVAT/Datumaro ``labelmap.txt``.

    Returns:
        The class map, the class id of every box, and the labelmap entries (empty when
        there is none).

    Raises:
        DatasetError: A class list repeats a name.
    """
    listed: list[str] = []
    entries: dict[str, str] = {}
    if labelmap is not None and labelmap.is_file():
        entries = read_labelmap(labelmap)
    if labels_txt.is_file():
        listed = [s.strip() for s in read_text(labels_txt).splitlines()]
        listed = [s for s in listed if s and not s.startswith("#")]
        if len(set(listed)) != len(listed):
            dupes = sorted({s for s in listed if listed.count(s) > 1})[:5]
            raise DatasetError(f"class names repeated: {dupes}; list each class once",
                               path=labels_txt)
    elif entries:
        listed = [n for n in entries if n != "background"]
    check_class_names(listed, labels_txt if labels_txt.is_file() else labelmap)
    known = set(listed)
    extra = sorted({n for n in names if n not in known})
    check_class_names(extra, None)
    ordered = listed + extra
    index = {n: k for k, n in enumerate(ordered)}
    return ClassMap.from_names(ordered), np.asarray([index[n] for n in names], np.int32), \
        entries


def write_labels_txt(path: Path, names: tuple[str, ...]) -> None:
    """Write the class list, one name per line.

    Args:
        path: The ``labels.txt`` to write.
        names: Class names in order.

    Raises:
        DatasetError: A name is empty or holds a line break.
    """
    for n in names:
        if not n.strip() or "\n" in n or "\r" in n:
            raise DatasetError(f"class name {n!r} cannot be written to labels.txt (empty or "
                               "holds a line break); rename the class", path=path)
    put_text(path, "".join(f"{n}\n" for n in names))


def output_ids(dataset: Dataset) -> list[tuple[str, str]]:
    """(id, image key) of every image, the id being the key without its suffix.

    Keys that repeat across splits are placed under ``<split>/``.

    Args:
        dataset: The dataset being written.

    Returns:
        One ``(id, key)`` per image row; the image goes to ``<image dir>/<key>``.

    Raises:
        DatasetError: Two images still share an id (e.g. ``a.jpg`` and ``a.png``).
    """
    keys = destination_keys(dataset)
    stems = [str(PurePosixPath(k).with_suffix("")) for k in keys]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    splits = dataset.images.split.tolist()
    result: list[tuple[str, str]] = []
    for k, s, split in zip(keys, stems, splits, strict=True):
        if seen[s] > 1 and split != UNSET_SPLIT:
            k, s = f"{split}/{k}", f"{split}/{s}"
        result.append((s, k))
    owner: dict[str, str] = {}
    for (s, _), f in zip(result, dataset.images.file, strict=True):
        if s in owner:
            raise DatasetError(f"images {owner[s]!r} and {f!r} would both be written as "
                               f"{s!r}; rename one of them")
        owner[s] = str(f)
    return result
