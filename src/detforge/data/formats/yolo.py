"""YOLO (Ultralytics, Darknet "YOLO 1.1", classes.txt): read, and write the Ultralytics layout.

Layouts read: see :mod:`detforge.data.formats._yolo_layouts`. Label files hold one
``class cx cy w h`` line (normalised to the image size) per box.

Reading:

* Image sizes come from the image headers. An image that cannot be read keeps
  ``width = height = 0``.
* An image without a label file, or with an empty one, is an empty image.
* A label file without an image (found in the labels folder of a split) becomes an image
  row with ``width = height = 0``, the guessed image path ``images/<split>/<stem>.jpg``
  and ``label_file`` set. Its boxes are kept (with their ``line``) but their pixel
  coordinates are NaN, since normalised coordinates cannot be turned into pixels without
  the image size; the normalised values are kept in ``BoxTable.extra["yolo_norm"]`` so a
  YOLO -> YOLO copy writes them back unchanged. ``validate`` reports the image as missing.
* Class ids outside ``names`` are kept as read (``validate`` reports them, writers refuse
  them); an id outside the 32-bit range is an error naming the file and line.
* When every split key points at the same images, the dataset is read as unsplit
  (``train: images``, ``val: images``) or as the train split (``train: images/train``,
  ``val: images/train``), with ``info["val_split"] = "train"``: written back, its
  ``data.yaml`` validates on the training images again, as the source did.

Writing: see :mod:`detforge.data.formats._yolo_write`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from detforge.core.errors import DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats._common import exists_file, progress, read_text
from detforge.data.formats._yolo_layouts import SPLIT_KEYS, find_layout, has_layout, label_path
from detforge.data.formats._yolo_write import write
from detforge.data.images import image_size

__all__ = ["SPLIT_KEYS", "detect", "label_path", "read", "write"]

_CLASS_RANGE = (-2**31, 2**31)


def detect(path: Path) -> bool:
    """True for a ``data.yaml`` (or a folder with one), a Darknet folder (``obj.data`` or
    ``obj.names``) or a folder with ``classes.txt``."""
    return has_layout(Path(path))


def _parse(text: str, path: Path) -> tuple[list[int], list[list[float]], list[int]]:
    cls: list[int] = []
    rows: list[list[float]] = []
    lines: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DatasetError(f"expected 5 fields 'class cx cy w h', got {len(parts)}: "
                               f"{line.strip()[:60]!r}; fix or delete the line",
                               path=path, line=n)
        try:
            c = float(parts[0])
            vals = [float(v) for v in parts[1:]]
        except ValueError:
            raise DatasetError(f"non-numeric value in {line.strip()[:60]!r}; fields are "
                               "'class cx cy w h' numbers", path=path, line=n) from None
        if not c.is_integer():
            raise DatasetError(f"class id {parts[0][:30]!r} is not an integer; use the 0-based "
                               "index into names", path=path, line=n)
        if not _CLASS_RANGE[0] <= c < _CLASS_RANGE[1]:
            raise DatasetError(f"class id {parts[0][:30]!r} is outside the 32-bit range; use "
                               "the 0-based index into names", path=path, line=n)
        cls.append(int(c))
        rows.append(vals)
        lines.append(n)
    return cls, rows, lines


def read(path: Path, *, allow_outside_root: bool = False) -> Dataset:
    """Read a YOLO dataset (Ultralytics, Darknet or classes.txt layout).

    Args:
        path: The dataset folder, or its ``data.yaml``.
        allow_outside_root: Let the dataset name folders and images outside its folder.

    Returns:
        The dataset, boxes converted to pixel xyxy with each image's size.

    Raises:
        DatasetError: Bad YAML, a split path outside the folder or missing, or a malformed
            label line (the message names the file and line).

    Example:
        >>> ds = read(Path("my_yolo_dataset"))  # doctest: +SKIP
    """
    layout = find_layout(Path(path), allow_outside_root=allow_outside_root)
    root = layout.root
    n = len(layout.rows)
    files, labels, splits = [], [], []
    width = np.zeros(n, np.int32)
    height = np.zeros(n, np.int32)
    cls: list[int] = []
    rows: list[list[float]] = []
    lines: list[int] = []
    index: list[int] = []
    for i, (im, lab, split) in enumerate(progress(layout.rows, total=n, desc="yolo labels")):
        files.append(os.path.relpath(im, root).replace(os.sep, "/"))
        splits.append(split)
        if exists_file(im):
            try:
                width[i], height[i] = image_size(im)
            except DatasetError:
                pass  # unreadable image: size unknown, reported by validate
        if exists_file(lab):
            labels.append(os.path.relpath(lab, root).replace(os.sep, "/"))
            c, r, ln = _parse(read_text(lab), lab)
            cls += c
            rows += r
            lines += ln
            index += [i] * len(c)
        else:
            labels.append("")
    images = ImageTable.build(files, width, height, split=splits, label_file=labels)
    norm = np.asarray(rows, np.float64).reshape(-1, 4)
    idx = np.asarray(index, np.int64)
    wh = np.stack([width, height], 1).astype(np.float64)[idx]
    unsized = (wh == 0).any(1)
    wh[unsized] = np.nan
    with np.errstate(over="ignore", invalid="ignore"):
        xyxy = np.concatenate([(norm[:, :2] - norm[:, 2:] / 2) * wh,
                               (norm[:, :2] + norm[:, 2:] / 2) * wh], 1)
    extra = {"yolo_norm": norm} if unsized.any() else {}
    boxes = BoxTable.build(idx, xyxy, cls, line=lines, extra=extra)
    info = {"format": "yolo", "source": str(path), "layout": layout.kind, **layout.info}
    return Dataset(layout.classes, images, boxes, root=root, info=info)
