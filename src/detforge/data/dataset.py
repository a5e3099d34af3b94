"""The in-memory dataset model: an image table plus columnar box arrays.

A :class:`Dataset` holds

* ``images`` -- an :class:`ImageTable`: one row per image (relative file path, size,
  source id, split, group, label file);
* ``boxes`` -- a :class:`BoxTable`: one row per box, with ``image_index`` pointing into
  the image table, ``xyxy`` in **pixels** (float64, so format round trips are lossless),
  ``class_id`` (index into ``classes``; may be out of range in a malformed source, which
  ``validate`` reports), and the flags ``iscrowd``, ``difficult``, ``truncated``,
  ``occluded``, ``ignore``;
* ``classes`` -- a :class:`~detforge.core.classes.ClassMap`.

Columns are numpy arrays, so a COCO-size dataset (120k images, 900k boxes) fits in
a few hundred MB and most operations are vectorised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError

__all__ = ["BoxTable", "Dataset", "ImageTable", "UNSET_SPLIT", "concat_extra"]

UNSET_SPLIT = ""
"""Split value of an image that belongs to no split."""

ObjArray = NDArray[np.object_]


def _obj(values: Sequence[Any] | NDArray[Any] | None, n: int, default: Any = "") -> ObjArray:
    if values is None:
        arr = np.empty(n, dtype=object)
        arr[:] = default
        return arr
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


@dataclass(eq=False)
class ImageTable:
    """One row per image.

    Attributes:
        file: Path of the image relative to the dataset root, POSIX separators.
        width: Width in pixels (0 when unknown, e.g. a label whose image is missing).
        height: Height in pixels (0 when unknown).
        id: Image id in the source format (COCO ``id``; 0-based order otherwise).
        split: ``"train"``, ``"val"``, ``"test"`` or ``""`` (unassigned).
        group: Group key (e.g. the video a frame came from), ``""`` when none.
        label_file: The annotation file the image's boxes came from (the label file of
            text formats, the JSON file of COCO), or ``""``.
        extra: Format-specific per-image columns kept for lossless round trips (e.g.
            ``coco``: the COCO image record's other keys, such as ``license``).
    """

    file: ObjArray
    width: NDArray[np.int32]
    height: NDArray[np.int32]
    id: NDArray[np.int64]
    split: ObjArray
    group: ObjArray
    label_file: ObjArray
    extra: dict[str, NDArray[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.file)
        for name in ("width", "height", "id", "split", "group", "label_file"):
            if len(getattr(self, name)) != n:
                raise DatasetError(f"image column {name!r} has {len(getattr(self, name))} rows, "
                                   f"expected {n}")
        for name, col in self.extra.items():
            if len(col) != n:
                raise DatasetError(f"extra image column {name!r} has {len(col)} rows, "
                                   f"expected {n}")

    @classmethod
    def build(cls, file: Sequence[str], width: ArrayLike | None = None,
              height: ArrayLike | None = None, *, id: ArrayLike | None = None,
              split: Sequence[str] | None = None, group: Sequence[str] | None = None,
              label_file: Sequence[str] | None = None) -> ImageTable:
        """Build from sequences, filling defaults for columns not given."""
        n = len(file)
        return cls(
            file=_obj(file, n),
            width=np.zeros(n, np.int32) if width is None else np.asarray(width, np.int32),
            height=np.zeros(n, np.int32) if height is None else np.asarray(height, np.int32),
            id=np.arange(n, dtype=np.int64) if id is None else np.asarray(id, np.int64),
            split=_obj(split, n), group=_obj(group, n), label_file=_obj(label_file, n))

    def __len__(self) -> int:
        return len(self.file)

    def take(self, index: NDArray[np.intp]) -> ImageTable:
        """Rows ``index``, in that order."""
        return ImageTable(self.file[index], self.width[index], self.height[index],
                          self.id[index], self.split[index], self.group[index],
                          self.label_file[index], {k: v[index] for k, v in self.extra.items()})

    @classmethod
    def concat(cls, tables: Sequence[ImageTable]) -> ImageTable:
        """Concatenate tables; an extra column missing from some is filled (see
        :func:`concat_extra`)."""
        if not tables:
            return cls.build([])
        cols: dict[str, Any] = {n: np.concatenate([getattr(t, n) for t in tables])
                                for n in _IMAGE_COLUMNS}
        return cls(**cols, extra=concat_extra([t.extra for t in tables],
                                              [len(t) for t in tables]))


_IMAGE_COLUMNS = ("file", "width", "height", "id", "split", "group", "label_file")


def concat_extra(extras: Sequence[Mapping[str, NDArray[Any]]], lengths: Sequence[int],
                 ) -> dict[str, NDArray[Any]]:
    """Concatenate extra columns; where a table lacks one, it is filled with NaN (floats),
    -1 (integers) or None (anything else), so no column is dropped."""
    keys = sorted(set().union(*(set(e) for e in extras))) if extras else []
    out: dict[str, NDArray[Any]] = {}
    for k in keys:
        model = next(e[k] for e in extras if k in e)
        parts = []
        for e, n in zip(extras, lengths, strict=True):
            if k in e:
                parts.append(e[k])
                continue
            fill = np.nan if model.dtype.kind == "f" else -1 if model.dtype.kind in "iu" \
                else None
            part = np.empty((n, *model.shape[1:]), model.dtype if fill is not None else object)
            part[...] = fill
            parts.append(part)
        out[k] = np.concatenate(parts)
    return out


BOX_FLAGS = ("iscrowd", "difficult", "truncated", "occluded", "ignore")
_BOX_COLUMNS = ("image_index", "xyxy", "class_id", *BOX_FLAGS, "line")


@dataclass(eq=False)
class BoxTable:
    """One row per box.

    Attributes:
        image_index: Row of the image in the :class:`ImageTable`.
        xyxy: ``[M, 4]`` float64 boxes in pixels of the image.
        class_id: Index into ``Dataset.classes`` (out of range in malformed data).
        iscrowd: COCO crowd region.
        difficult: VOC ``difficult``.
        truncated: Truncation in [0, 1] (VOC 0/1, KITTI float).
        occluded: Occlusion level (VOC 0/1, KITTI 0..3).
        ignore: An ignore region (KITTI ``DontCare``), not an object of any class.
        line: 1-based line of the box in its label file (0 when not from a text file).
        extra: Format-specific per-box columns kept for lossless round trips
            (e.g. KITTI ``alpha``, ``dimensions``, ``location``, ``rotation_y``).
    """

    image_index: NDArray[np.int32]
    xyxy: NDArray[np.float64]
    class_id: NDArray[np.int32]
    iscrowd: NDArray[np.bool_]
    difficult: NDArray[np.bool_]
    truncated: NDArray[np.float32]
    occluded: NDArray[np.int8]
    ignore: NDArray[np.bool_]
    line: NDArray[np.int32]
    extra: dict[str, NDArray[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(self.image_index)
        if self.xyxy.shape != (m, 4):
            raise DatasetError(f"box xyxy must have shape ({m}, 4), got {self.xyxy.shape}")
        for name in ("class_id", *BOX_FLAGS, "line"):
            if len(getattr(self, name)) != m:
                raise DatasetError(f"box column {name!r} has {len(getattr(self, name))} rows, "
                                   f"expected {m}")
        for name, col in self.extra.items():
            if len(col) != m:
                raise DatasetError(f"extra box column {name!r} has {len(col)} rows, expected {m}")

    @classmethod
    def build(cls, image_index: ArrayLike, xyxy: ArrayLike, class_id: ArrayLike, *,
              iscrowd: ArrayLike | None = None, difficult: ArrayLike | None = None,
              truncated: ArrayLike | None = None, occluded: ArrayLike | None = None,
              ignore: ArrayLike | None = None, line: ArrayLike | None = None,
              extra: Mapping[str, ArrayLike] | None = None) -> BoxTable:
        """Build from array-likes, filling zeros for flags not given."""
        idx = np.asarray(image_index, np.int32).reshape(-1)
        m = len(idx)

        def col(v: ArrayLike | None, dtype: Any) -> NDArray[Any]:
            return np.zeros(m, dtype) if v is None else np.asarray(v, dtype).reshape(-1)

        return cls(idx, np.asarray(xyxy, np.float64).reshape(m, 4),
                   col(class_id, np.int32), col(iscrowd, np.bool_), col(difficult, np.bool_),
                   col(truncated, np.float32), col(occluded, np.int8), col(ignore, np.bool_),
                   col(line, np.int32), {k: np.asarray(v) for k, v in (extra or {}).items()})

    @classmethod
    def empty(cls) -> BoxTable:
        """No boxes."""
        return cls.build(np.zeros(0, np.int32), np.zeros((0, 4)), np.zeros(0, np.int32))

    @classmethod
    def concat(cls, tables: Sequence[BoxTable]) -> BoxTable:
        """Concatenate tables; an extra column missing from some is filled (see
        :func:`concat_extra`)."""
        if not tables:
            return cls.empty()
        cols: dict[str, Any] = {n: np.concatenate([getattr(t, n) for t in tables])
                                for n in _BOX_COLUMNS}
        return cls(**cols, extra=concat_extra([t.extra for t in tables],
                                              [len(t) for t in tables]))

    def __len__(self) -> int:
        return len(self.image_index)

    def take(self, index: NDArray[Any]) -> BoxTable:
        """Rows ``index`` (integer indices or boolean mask)."""
        cols: dict[str, Any] = {n: getattr(self, n)[index] for n in _BOX_COLUMNS}
        return BoxTable(**cols, extra={k: v[index] for k, v in self.extra.items()})


@dataclass(eq=False)
class Dataset:
    """A detection dataset: classes, an image table and a box table.

    Attributes:
        classes: Class names (and their ids in the source format).
        images: The image table.
        boxes: The box table.
        root: Directory that image paths are relative to (None for annotation-only data).
        info: Free metadata (name, source, licence, format it was read from...).

    Example:
        >>> ds = Dataset(ClassMap.from_names(["cat"]), ImageTable.build(["a.jpg"], [10], [10]),
        ...              BoxTable.build([0], [[1, 1, 5, 5]], [0]))
        >>> ds.num_images, ds.num_boxes
        (1, 1)
    """

    classes: ClassMap
    images: ImageTable
    boxes: BoxTable
    root: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.boxes) and (self.boxes.image_index.min() < 0
                                or self.boxes.image_index.max() >= len(self.images)):
            raise DatasetError("box image_index points outside the image table")

    @property
    def num_images(self) -> int:
        return len(self.images)

    @property
    def num_boxes(self) -> int:
        return len(self.boxes)

    def image_path(self, i: int) -> Path:
        """Absolute path of image ``i`` (relative to ``root``)."""
        rel = Path(self.images.file[i])
        return rel if self.root is None else self.root / rel

    def box_ref(self, box: int) -> str:
        """Where box ``box`` comes from, for messages.

        ``labels/train/a.txt:3``, ``annotations/instances_val.json annotation id 17 (image
        a.jpg)``, ``Annotations/a.xml (image JPEGImages/a.jpg)`` or ``image a.jpg``.
        """
        img = int(self.boxes.image_index[box])
        label = str(self.images.label_file[img] or "")
        line = int(self.boxes.line[box])
        image = str(self.images.file[img])
        if label and line > 0:
            return f"{label}:{line} (image {image})"
        ann = self.boxes.extra.get("ann_id")
        ident = f" annotation id {int(ann[box])}" if ann is not None and ann[box] >= 0 else ""
        if label:
            return f"{label}{ident} (image {image})"
        return f"{ident.strip()} image {image}".strip() if ident else f"image {image}"

    def boxes_per_image(self) -> list[NDArray[np.intp]]:
        """For each image, the row indices of its boxes (in table order)."""
        order = np.argsort(self.boxes.image_index, kind="stable")
        counts = np.bincount(self.boxes.image_index, minlength=self.num_images)
        return np.split(order, np.cumsum(counts)[:-1])

    def split_names(self) -> list[str]:
        """Split names present, in train/val/test order then others."""
        present = set(self.images.split.tolist()) - {UNSET_SPLIT}
        known = [s for s in ("train", "val", "test") if s in present]
        return known + sorted(present - set(known))

    def subset(self, image_rows: NDArray[Any]) -> Dataset:
        """A dataset with only the given image rows (indices or mask), boxes renumbered."""
        rows = np.flatnonzero(image_rows) if np.asarray(image_rows).dtype == bool else \
            np.asarray(image_rows, np.intp)
        remap = np.full(self.num_images, -1, np.int64)
        remap[rows] = np.arange(len(rows))
        keep = remap[self.boxes.image_index] >= 0
        boxes = self.boxes.take(keep)
        boxes.image_index = remap[boxes.image_index].astype(np.int32)
        return replace(self, images=self.images.take(rows), boxes=boxes, info=dict(self.info))

    def with_split(self, split: Sequence[str] | NDArray[Any]) -> Dataset:
        """A copy with the per-image split column replaced."""
        images = replace(self.images, split=_obj(split, self.num_images))
        return replace(self, images=images, info=dict(self.info))

    def class_counts(self) -> NDArray[np.int64]:
        """Boxes per class (ignore regions and out-of-range ids excluded)."""
        k = len(self.classes)
        ids = self.boxes.class_id[(~self.boxes.ignore) & (self.boxes.class_id >= 0)
                                  & (self.boxes.class_id < k)]
        return np.bincount(ids, minlength=k).astype(np.int64)
