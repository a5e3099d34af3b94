"""KITTI object detection (``label_2``): one text label file per image.

Layout read (``training/`` is optional) and written::

    root/[training/ | <split>/]
      image_2/<id>.<ext>
      label_2/<id>.txt          one object per line
      ImageSets/<split>.txt     optional: image ids of each split
      labels.txt                optional class order, one name per line

Each label line has 15 fields and an optional score (results files)::

    type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]

Conventions:

* ``DontCare`` lines are ignore regions (``ignore=True``, ``class_id=-1``), never a class,
  and are written back as ``DontCare`` lines.
* ``truncated`` is kept as a float and ``occluded`` as an integer (0..3).
* ``alpha``, ``dimensions`` (h, w, l), ``location`` (x, y, z), ``rotation_y`` and, when any
  line has one, ``score`` (NaN where absent) are kept in ``BoxTable.extra`` so a
  KITTI -> KITTI round trip is lossless. Data without them (read from another format) is
  written with the devkit's "unknown" values: alpha -10, dimensions -1, location -1000,
  rotation_y -10.
* ``BoxTable.line`` is the 1-based line of each box and ``ImageTable.label_file`` the label
  file relative to the root, so findings name both.
* Classes come from ``labels.txt`` when present (names found but not listed are appended,
  sorted), else the names found, sorted; ``DontCare`` is never a class.
* Image sizes come from the image headers (0 x 0 when the image is missing or unreadable).
* KITTI has no ``difficult`` or ``iscrowd`` flag (the devkit derives difficulty from box
  height, occlusion and truncation), so those flags are not written.
* Splits follow ``ImageSets/<split>.txt`` (see
  :func:`detforge.data.formats._folders.read_image_sets`). A dataset with one folder per
  split (``train/label_2``, ``val/label_2``..., as Datumaro exports KITTI) takes each
  folder's name as the split (``training`` -> train, ``default`` -> unsplit); a lone
  ``training/`` folder is the unsplit KITTI layout. ``testing/`` without ``label_2`` (the
  official test images, which have no labels) is not read.
* The writer writes one flat ``label_2`` with ``ImageSets``; it cannot hold crowd regions,
  ``difficult`` or COCO's pass-through values (a loss unless allowed: ``--allow-loss``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import DatasetError
from detforge.data.dataset import UNSET_SPLIT, BoxTable, Dataset, ImageTable
from detforge.data.formats._common import (
    bad_text,
    exists_dir,
    normalise_split,
    place_images,
    progress,
    read_text,
    staged_output,
)
from detforge.data.formats._folders import (
    ImageIndex,
    class_order,
    fmt_num,
    output_ids,
    put_text,
    read_image_sets,
    write_image_sets,
    write_labels_txt,
)
from detforge.data.formats._plan import Holds, plan_boxes
from detforge.data.formats.policy import WriteOptions, WriteSummary

__all__ = ["DONTCARE", "FIELDS", "detect", "read", "write"]

DONTCARE = "DontCare"
"""The KITTI type of an ignore region."""

FIELDS = ("type", "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2", "h", "w", "l",
          "x", "y", "z", "rotation_y")
"""The 15 fields of a KITTI label line (a 16th, ``score``, is optional)."""

_EXPECTED = " ".join(FIELDS) + " [score]"
_DEFAULTS: dict[str, tuple[float, ...]] = {
    "alpha": (-10.0,), "dimensions": (-1.0, -1.0, -1.0),
    "location": (-1000.0, -1000.0, -1000.0), "rotation_y": (-10.0,)}


HOLDS = Holds(classless_ignore=True, flags=frozenset({"truncated", "occluded"}),
              extras=frozenset({*_DEFAULTS, "score"}))
_FOLDER_SPLITS = {"training": "train", "testing": "test"}


def _bases(path: Path) -> list[tuple[Path, str]]:
    """The folders holding ``label_2/`` and the split each one stands for."""
    if exists_dir(path / "label_2"):
        return [(path, UNSET_SPLIT)]
    try:
        subs = sorted(d for d in path.iterdir() if exists_dir(d / "label_2"))
    except OSError:
        return []
    if [d.name for d in subs] == ["training"]:
        return [(subs[0], UNSET_SPLIT)]
    return [(d, _FOLDER_SPLITS.get(d.name, normalise_split(d.name))) for d in subs]


def detect(path: Path) -> bool:
    """True when ``path`` holds ``label_2/``, ``training/label_2/`` or ``<split>/label_2/``.

    Args:
        path: Candidate dataset root.

    Returns:
        Whether ``path`` looks like a KITTI object dataset.
    """
    path = Path(path)
    return path.is_dir() and bool(_bases(path))


class _Columns:
    """Box columns accumulated while reading."""

    def __init__(self) -> None:
        self.image: list[int] = []
        self.names: list[str] = []
        self.truncated: list[float] = []
        self.occluded: list[int] = []
        self.nums: list[list[float]] = []  # alpha, x1..y2, h w l, x y z, rotation_y, score
        self.line: list[int] = []
        self.has_score = False


def _parse_line(fields: list[str], path: Path, line: int) -> tuple[str, float, int, list[float]]:
    if len(fields) not in (15, 16):
        raise DatasetError(f"{len(fields)} fields, expected 15 or 16: {_EXPECTED}",
                           path=path, line=line)
    if (why := bad_text(fields[0])) is not None:
        raise DatasetError(f"type {fields[0][:40]!r} {why}; fix the line", path=path, line=line)
    names = (*FIELDS, "score")
    values: list[float] = []
    for k in range(1, len(fields)):
        try:
            values.append(float(fields[k]))
        except ValueError:
            raise DatasetError(f"{names[k]} = {fields[k]!r} is not a number; expected fields: "
                               f"{_EXPECTED}", path=path, line=line) from None
    occluded = values[1]
    if not (occluded.is_integer() and -128 <= occluded <= 127):
        raise DatasetError(f"occluded = {fields[2]!r} is not an integer (0..3, -1 for "
                           f"DontCare); expected fields: {_EXPECTED}", path=path, line=line)
    return fields[0], values[0], int(occluded), values[2:]


def _read_labels(path: Path, image: int, cols: _Columns) -> None:
    for line, raw in enumerate(read_text(path).splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        name, truncated, occluded, nums = _parse_line(fields, path, line)
        if len(nums) == 13:
            cols.has_score = True
        else:
            nums.append(float("nan"))
        cols.image.append(image)
        cols.names.append(name)
        cols.truncated.append(truncated)
        cols.occluded.append(occluded)
        cols.nums.append(nums)
        cols.line.append(line)


def _size(images: ImageIndex, rel: str) -> tuple[int, int]:
    if not images.find(rel):
        return 0, 0
    try:
        return images.size(rel)
    except DatasetError:
        return 0, 0


def read(path: Path) -> Dataset:
    """Read a KITTI object (``label_2``) dataset.

    Args:
        path: The dataset root (holding ``label_2/`` or ``training/label_2/``).

    Returns:
        The dataset; image and label paths are relative to ``path``.

    Raises:
        DatasetError: No ``label_2/`` folder, or a malformed line (the message names the
            file, the 1-based line, the offending value and the expected fields).

    Example:
        >>> ds = read(Path("kitti"))  # doctest: +SKIP
    """
    path = Path(path)
    bases = _bases(path)
    if not bases:
        raise DatasetError("no label_2/ folder; a KITTI dataset has image_2/ and label_2/ "
                           "(optionally under training/ or one folder per split)", path=path)
    files: list[str] = []
    sizes: list[tuple[int, int]] = []
    splits: list[str] = []
    label_files: list[str] = []
    cols = _Columns()
    info: dict[str, Any] = {"format": "kitti", "name": path.name}
    for base, folder_split in bases:
        _read_base(path, base, folder_split, (files, sizes, splits, label_files), cols, info)

    ignore = np.asarray([n.lower() == DONTCARE.lower() for n in cols.names], bool)
    base0 = bases[0][0]
    classes, class_id, _ = class_order(
        base0 / "labels.txt" if (base0 / "labels.txt").is_file() else path / "labels.txt",
        [n for n, ig in zip(cols.names, ignore, strict=True) if not ig])
    ids_all = np.full(len(cols.names), -1, np.int32)
    ids_all[~ignore] = class_id
    nums = np.asarray(cols.nums, np.float64).reshape(-1, 13)
    extra: dict[str, NDArray[Any]] = {
        "alpha": nums[:, 0], "dimensions": nums[:, 5:8], "location": nums[:, 8:11],
        "rotation_y": nums[:, 11]}
    if cols.has_score:
        extra["score"] = nums[:, 12]
    table = ImageTable.build(files, [w for w, _ in sizes], [h for _, h in sizes],
                             split=splits, label_file=label_files)
    with np.errstate(over="ignore"):  # a truncated beyond float32 is kept as inf
        boxes = BoxTable.build(cols.image, nums[:, 1:5], ids_all, truncated=cols.truncated,
                               occluded=cols.occluded, ignore=ignore, line=cols.line,
                               extra=extra)
    return Dataset(classes, table, boxes, root=path, info=info)


def _read_base(path: Path, base: Path, folder_split: str,
               out: tuple[list[str], list[tuple[int, int]], list[str], list[str]],
               cols: _Columns, info: dict[str, Any]) -> None:
    """Read the images and labels of one folder holding ``label_2/``."""
    files, sizes, splits, label_files = out
    labels = base / "label_2"
    prefix = base.relative_to(path).as_posix()
    prefix = "" if prefix == "." else f"{prefix}/"
    label_ids = {p.relative_to(labels).with_suffix("").as_posix(): p
                 for p in sorted(labels.rglob("*.txt"))}
    images = ImageIndex(base / "image_2")
    sets = base / "ImageSets" if (base / "ImageSets").is_dir() else path / "ImageSets"
    split_of, conflicts, listed = read_image_sets(sets)
    dangling = [(s, i) for s, i in listed if i not in label_ids and not images.find_stem(i)]
    gone = {i for _, i in dangling}
    ids = sorted(set(label_ids) | {i for _, i in listed if i not in gone})
    offset = len(files)
    for n, ident in enumerate(progress(ids, total=len(ids), desc="kitti labels")):
        rel = images.find_stem(ident) or f"{ident}.png"
        files.append(f"{prefix}image_2/{rel}")
        sizes.append(_size(images, rel))
        splits.append(split_of.get(ident, folder_split))
        label_files.append(f"{prefix}label_2/{ident}.txt" if ident in label_ids else "")
        if ident in label_ids:
            _read_labels(label_ids[ident], offset + n, cols)
    if conflicts:
        info.setdefault("split_conflicts", []).extend(conflicts)
    if dangling:
        info.setdefault("dangling_split_ids", []).extend(dangling)


def _extra(boxes: BoxTable, name: str) -> NDArray[np.float64]:
    """Extra column ``name`` as ``[M, k]`` float64, or the devkit default when absent."""
    default = _DEFAULTS[name]
    m = len(boxes)
    if name not in boxes.extra:
        return np.tile(np.asarray(default, np.float64), (m, 1))
    try:
        return np.asarray(boxes.extra[name], np.float64).reshape(m, len(default))
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"extra box column {name!r} has shape "
                           f"{np.shape(boxes.extra[name])}, expected ({m}, {len(default)}) "
                           "numbers; drop or fix the column before writing KITTI") from exc


def _type_names(dataset: Dataset) -> list[str]:
    for n in dataset.classes.names:
        if not n or len(n.split()) != 1 or n != n.strip() or n.lower() == DONTCARE.lower():
            raise DatasetError(f"class name {n!r} cannot be a KITTI type (it must be one word "
                               f"and not {DONTCARE!r}); rename the class")
    return list(dataset.classes.names)


def _lines(dataset: Dataset, keep: NDArray[np.bool_]) -> list[str]:
    """One KITTI label line per box written (``""`` for the others), in box order."""
    b = dataset.boxes
    names = _type_names(dataset)
    cols = {n: _extra(b, n) for n in _DEFAULTS}
    nums = np.hstack([cols["alpha"], b.xyxy, cols["dimensions"], cols["location"],
                      cols["rotation_y"]]).tolist()
    score = b.extra.get("score")
    scores = [None] * len(b) if score is None else np.asarray(score, np.float64).tolist()
    out: list[str] = []
    for c, kept, ignore, tr, occ, row, sc in zip(
            b.class_id.tolist(), keep.tolist(), b.ignore.tolist(), b.truncated,
            b.occluded.tolist(), nums, scores, strict=True):
        if not kept:
            out.append("")
            continue
        kind = DONTCARE if ignore else names[c]
        text = " ".join([kind, fmt_num(tr), str(occ), *(fmt_num(v) for v in row)])
        if sc is not None and np.isfinite(sc):
            text += " " + fmt_num(sc)
        out.append(text)
    return out


def write(dataset: Dataset, out: Path, *, options: WriteOptions | None = None) -> WriteSummary:
    """Write ``dataset`` in the KITTI object layout under ``out``.

    Writes ``label_2/<id>.txt`` (one per image, empty images included; ignore regions as
    ``DontCare`` lines), ``image_2/<key>`` (hard link or copy of each existing source
    image), ``ImageSets/<split>.txt`` and ``labels.txt``.

    Args:
        dataset: The dataset to write.
        out: New output folder (must not exist, or be empty); it appears only once
            everything was written.
        options: Losses allowed (see the module docstring).

    Returns:
        What was written and left out.

    Raises:
        ConfigError: ``out`` exists and is not empty.
        DatasetError: A class name is not a single word (or is ``DontCare``), two images
            map to the same id, or data would be lost that ``options`` does not allow.

    Example:
        >>> write(ds, Path("out/kitti"))  # doctest: +SKIP
    """
    ids = output_ids(dataset)
    keep, ledger = plan_boxes(dataset, "kitti", HOLDS, options or WriteOptions())
    ledger.check()
    lines = _lines(dataset, keep)
    per_image = dataset.boxes_per_image()
    summary = WriteSummary("kitti", images=dataset.num_images, boxes=int(keep.sum()))
    with staged_output(Path(out)) as stage:
        write_labels_txt(stage / "labels.txt", dataset.classes.names)
        for i in progress(range(dataset.num_images), total=dataset.num_images,
                          desc="kitti labels"):
            text = "".join(f"{lines[r]}\n" for r in per_image[i] if keep[r])
            put_text(stage / "label_2" / f"{ids[i][0]}.txt", text)
        write_image_sets(stage / "ImageSets", [ident for ident, _ in ids],
                         dataset.images.split.tolist())
        summary.image_files = place_images(dataset, stage,
                                           [f"image_2/{key}" for _, key in ids])
    return ledger.summary(summary)
