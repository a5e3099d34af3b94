"""Pascal VOC XML: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

Layout read and written::

    root/
      Annotations/<id>.xml        one file per image (ids may contain sub-folders)
      JPEGImages/<id>.<ext>
      ImageSets/Main/<split>.txt  image ids of each split (``<class>_<split>.txt`` ignored)
      labels.txt                  optional class order, one name per line

Conventions:

* **Coordinates are stored as written.** The original VOC devkit uses 1-based inclusive
  pixel indices, but most tools (and detforge's other formats) read ``xmin..xmax`` as plain
  pixel coordinates, so detforge neither adds nor subtracts 1: a VOC -> VOC round trip is
  lossless and float coordinates stay floats.
* Class order comes from ``labels.txt`` when present (names found in the XML but missing from
  it are appended, sorted); otherwise classes are the names found, sorted.
* A missing or zero ``<size>`` is read from the image header; when the image is missing too,
  width = height = 0 (``validate`` reports it).
* The image is found from ``<filename>``, falling back to the XML's own name when the two
  differ or ``<filename>`` lacks an extension; ``<path>`` and ``<folder>`` are ignored.
* ``difficult``, ``truncated`` and ``occluded`` are kept. Ignore regions (KITTI ``DontCare``)
  have no VOC equivalent and are **not written**; neither are ``iscrowd`` and ``group``.
* Split files are read in the order train, val, test, other names, then ``trainval`` (which
  only fills images listed in no other split). An image listed in two splits keeps the first
  and is recorded in ``Dataset.info["split_conflicts"]``; ids listed in a split file that have
  neither an XML nor an image are recorded in ``Dataset.info["dangling_split_ids"]``.

The ImageSets and number helpers here are shared with the KITTI module, which uses the
same split-file convention.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET
from numpy.typing import NDArray

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.data.dataset import UNSET_SPLIT, BoxTable, Dataset, ImageTable
from detforge.data.formats._common import (
    destination_keys,
    normalise_split,
    place_images,
    progress,
    read_text,
    staged_output,
)
from detforge.data.images import IMAGE_EXTENSIONS, image_size, list_images

__all__ = ["ImageIndex", "class_order", "detect", "fmt_num", "output_ids", "put_text", "read",
           "read_image_sets", "write", "write_image_sets", "write_labels_txt"]

_COORDS = ("xmin", "ymin", "xmax", "ymax")

# --- layout helpers shared with the KITTI module ----------------------------------------

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


def class_order(labels_txt: Path, names: list[str]) -> tuple[ClassMap, NDArray[np.int32]]:
    """Classes from ``labels_txt`` (names found but not listed appended, sorted), else sorted.

    Args:
        labels_txt: Optional class list, one name per line.
        names: The class name of every box, in box order.

    Returns:
        The class map and the class id of every box.

    Raises:
        DatasetError: ``labels_txt`` repeats a name.
    """
    listed: list[str] = []
    if labels_txt.is_file():
        listed = [s.strip() for s in read_text(labels_txt).splitlines()]
        listed = [s for s in listed if s]
        if len(set(listed)) != len(listed):
            dupes = sorted({s for s in listed if listed.count(s) > 1})
            raise DatasetError(f"class names repeated: {dupes}; list each class once",
                               path=labels_txt)
    known = set(listed)
    ordered = listed + sorted({n for n in names if n not in known})
    index = {n: k for k, n in enumerate(ordered)}
    return ClassMap.from_names(ordered), np.asarray([index[n] for n in names], np.int32)


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


# --- VOC --------------------------------------------------------------------------------


def detect(path: Path) -> bool:
    """True when ``path`` is a folder with ``Annotations/`` holding XML files or ``JPEGImages/``.

    Args:
        path: Candidate dataset root.

    Returns:
        Whether ``path`` looks like a Pascal VOC dataset.
    """
    ann = Path(path) / "Annotations"
    if not ann.is_dir():
        return False
    return next(ann.rglob("*.xml"), None) is not None or (Path(path) / "JPEGImages").is_dir()


def _number(text: str | None, *, path: Path, what: str, default: float | None = None) -> float:
    if text is None or not text.strip():
        if default is not None:
            return default
        raise DatasetError(f"{what} is missing or empty; write a number there", path=path)
    try:
        return float(text.strip())
    except ValueError:
        raise DatasetError(f"{what} = {text.strip()!r} is not a number; write a number "
                           "there", path=path) from None


def _parse_xml(path: Path) -> ET.Element:
    try:
        root: ET.Element = SafeET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"malformed XML ({exc}); fix the file or remove it", path=path) from exc
    except DefusedXmlException as exc:
        raise DatasetError(f"XML refused for safety ({exc!r}); remove entity/DTD declarations",
                           path=path) from exc
    except OSError as exc:
        raise DatasetError(f"cannot read the file ({exc})", path=path) from exc
    if root.tag != "annotation":
        raise DatasetError(f"root element is <{root.tag}>, expected <annotation>; "
                           "is this a Pascal VOC file?", path=path)
    return root


class _Boxes:
    """Box columns accumulated while reading."""

    def __init__(self) -> None:
        self.image: list[int] = []
        self.xyxy: list[tuple[float, float, float, float]] = []
        self.names: list[str] = []
        self.difficult: list[bool] = []
        self.truncated: list[float] = []
        self.occluded: list[int] = []


def _read_objects(root: ET.Element, path: Path, image: int, out: _Boxes) -> None:
    for k, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetError(f"object #{k} has no <name>; add the class name or delete the "
                               "object", path=path)
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(f"object #{k} ({name!r}) has no <bndbox>; add "
                               "xmin/ymin/xmax/ymax or delete the object", path=path)
        xyxy = tuple(_number(box.findtext(c), path=path, what=f"object #{k} ({name!r}) <{c}>")
                     for c in _COORDS)
        flags = {f: _number(obj.findtext(f), path=path, what=f"object #{k} ({name!r}) <{f}>",
                            default=0.0) for f in ("difficult", "truncated", "occluded")}
        out.image.append(image)
        out.xyxy.append((xyxy[0], xyxy[1], xyxy[2], xyxy[3]))
        out.names.append(name)
        out.difficult.append(bool(flags["difficult"]))
        out.truncated.append(flags["truncated"])
        out.occluded.append(_integer(flags["occluded"], -128, 127, path=path,
                                     what=f"object #{k} ({name!r}) <occluded>"))


def _size(root: ET.Element, path: Path) -> tuple[int, int]:
    size = root.find("size")
    if size is None:
        return 0, 0
    dims = []
    for tag in ("width", "height"):
        v = _number(size.findtext(tag), path=path, what=f"<size><{tag}>", default=0.0)
        dims.append(_integer(v, 0, 2**31 - 1, path=path, what=f"<size><{tag}>"))
    return dims[0], dims[1]


def _integer(v: float, lo: int, hi: int, *, path: Path, what: str) -> int:
    if not (v.is_integer() and lo <= v <= hi):
        raise DatasetError(f"{what} = {fmt_num(v)} is not an integer in [{lo}, {hi}]; write "
                           "a whole number in that range", path=path)
    return int(v)


def _image_of(root: ET.Element | None, xml: Path | None, ident: str,
              images: ImageIndex) -> tuple[str, tuple[int, int]]:
    """The image path relative to ``JPEGImages/`` and its (width, height).

    The image is ``<filename>`` when that file exists, else the image whose name without
    suffix is ``<filename>`` or the XML's id. The size is ``<size>`` unless missing or zero,
    then the image header's, then (0, 0).
    """
    parent = PurePosixPath(ident).parent
    raw = "" if root is None else (root.findtext("filename") or "").strip()
    filename = PurePosixPath(raw.replace("\\", "/")).name  # Windows tools write C:\dir\a.jpg
    candidate = str(parent / filename) if filename else ""
    rel = (images.find(candidate) or images.find_stem(candidate)) if candidate else None
    rel = rel or images.find_stem(ident)
    if rel is None:
        rel = candidate if PurePosixPath(filename).suffix else f"{ident}.jpg"
    w, h = (0, 0) if root is None or xml is None else _size(root, xml)
    if (w <= 0 or h <= 0) and images.find(rel):
        try:
            w, h = images.size(rel)
        except DatasetError:
            w, h = 0, 0
    return rel, (w, h)


def read(path: Path) -> Dataset:
    """Read a Pascal VOC dataset.

    Args:
        path: The dataset root (the folder holding ``Annotations/``).

    Returns:
        The dataset; image paths are relative to ``path``.

    Raises:
        DatasetError: No ``Annotations/`` folder, malformed XML, an object without
            ``<bndbox>`` or ``<name>``, or a non-numeric value (the message names the file,
            the object's 1-based index and the value).

    Example:
        >>> ds = read(Path("VOC2012"))  # doctest: +SKIP
    """
    path = Path(path)
    ann = path / "Annotations"
    if not ann.is_dir():
        raise DatasetError("no Annotations/ folder; a Pascal VOC dataset has Annotations/*.xml "
                           "and JPEGImages/", path=path)
    xml_ids = {p.relative_to(ann).with_suffix("").as_posix(): p
               for p in sorted(ann.rglob("*.xml"))}
    images = ImageIndex(path / "JPEGImages")
    split_of, conflicts, listed = read_image_sets(path / "ImageSets" / "Main")
    dangling = [(s, i) for s, i in listed if i not in xml_ids and not images.find_stem(i)]
    dangling_ids = {i for _, i in dangling}
    ids = sorted(set(xml_ids) | {i for _, i in listed if i not in dangling_ids})

    files: list[str] = []
    sizes: list[tuple[int, int]] = []
    boxes = _Boxes()
    for n, ident in enumerate(progress(ids, total=len(ids), desc="voc annotations")):
        xml = xml_ids.get(ident)
        root = None if xml is None else _parse_xml(xml)
        rel, (w, h) = _image_of(root, xml, ident, images)
        files.append(f"JPEGImages/{rel}")
        sizes.append((w, h))
        if root is not None and xml is not None:
            _read_objects(root, xml, n, boxes)

    classes, class_id = class_order(path / "labels.txt", boxes.names)
    table = ImageTable.build(
        files, [w for w, _ in sizes], [h for _, h in sizes],
        split=[split_of.get(i, UNSET_SPLIT) for i in ids],
        label_file=[f"Annotations/{i}.xml" if i in xml_ids else "" for i in ids])
    with np.errstate(over="ignore"):  # a truncated beyond float32 is kept as inf
        box_table = BoxTable.build(
            boxes.image, np.asarray(boxes.xyxy, np.float64).reshape(-1, 4), class_id,
            difficult=boxes.difficult, truncated=boxes.truncated, occluded=boxes.occluded)
    info: dict[str, Any] = {"format": "voc", "name": path.name}
    if conflicts:
        info["split_conflicts"] = conflicts
    if dangling:
        info["dangling_split_ids"] = dangling
    return Dataset(classes, table, box_table, root=path, info=info)


_HEAD = """<annotation>
  <folder>JPEGImages</folder>
  <filename>{filename}</filename>
  <size>
    <width>{width}</width>
    <height>{height}</height>
    <depth>{depth}</depth>
  </size>
  <segmented>0</segmented>
"""
_OBJECT = """  <object>
    <name>{name}</name>
    <pose>Unspecified</pose>
    <truncated>{truncated}</truncated>
    <difficult>{difficult}</difficult>
    <occluded>{occluded}</occluded>
    <bndbox>
      <xmin>{x1}</xmin>
      <ymin>{y1}</ymin>
      <xmax>{x2}</xmax>
      <ymax>{y2}</ymax>
    </bndbox>
  </object>
"""


def _objects(ds: Dataset) -> list[str]:
    """The ``<object>`` element of every box (empty for ignore regions), in box order."""
    b = ds.boxes
    names = [escape(n) for n in ds.classes.names]
    out: list[str] = []
    for r, (c, ignore, xyxy, tr, diff, occ) in enumerate(zip(
            b.class_id.tolist(), b.ignore.tolist(), b.xyxy.tolist(), b.truncated,
            b.difficult.tolist(), b.occluded.tolist(), strict=True)):
        if ignore:
            out.append("")
            continue
        if not 0 <= c < len(names):
            img = ds.images.file[int(b.image_index[r])]
            raise DatasetError(
                f"box with class id {c} in image {img!r} is not one of the {len(names)} "
                "classes; fix it (detforge data validate --fix) first")
        x1, y1, x2, y2 = (fmt_num(v) for v in xyxy)
        out.append(_OBJECT.format(name=names[c], truncated=fmt_num(tr), difficult=int(diff),
                                  occluded=occ, x1=x1, y1=y1, x2=x2, y2=y2))
    return out


def _depth(src: Path | None) -> int:
    if src is None or not src.is_file():
        return 3
    from detforge.core.imageio import open_image

    try:
        with open_image(src) as im:
            return len(im.getbands())
    except OSError:
        return 3


def write(dataset: Dataset, out: Path) -> None:
    """Write ``dataset`` as Pascal VOC under ``out``.

    Writes ``Annotations/<id>.xml`` (one per image, empty images included),
    ``JPEGImages/<key>`` (hard link or copy of each existing source image),
    ``ImageSets/Main/<split>.txt`` (plus ``trainval.txt`` when train and val exist) and
    ``labels.txt``. Ignore regions are skipped: VOC has none.

    Args:
        dataset: The dataset to write.
        out: New output folder (must not exist, or be empty); it appears only once
            everything was written.

    Raises:
        ConfigError: ``out`` exists and is not empty.
        DatasetError: Two images map to the same id, a class name cannot be written, or a
            box has a class id outside the class list.

    Example:
        >>> write(ds, Path("out/voc"))  # doctest: +SKIP
    """
    ids = output_ids(dataset)
    objects = _objects(dataset)
    per_image = dataset.boxes_per_image()
    widths, heights = dataset.images.width.tolist(), dataset.images.height.tolist()
    with staged_output(Path(out)) as stage:
        write_labels_txt(stage / "labels.txt", dataset.classes.names)
        for i in progress(range(dataset.num_images), total=dataset.num_images,
                          desc="voc annotations"):
            ident, key = ids[i]
            depth = _depth(dataset.image_path(i) if dataset.root is not None else None)
            head = _HEAD.format(filename=escape(PurePosixPath(key).name), width=widths[i],
                                height=heights[i], depth=depth)
            body = "".join(objects[r] for r in per_image[i].tolist())
            put_text(stage / "Annotations" / f"{ident}.xml", f"{head}{body}</annotation>\n")
        write_image_sets(stage / "ImageSets" / "Main", [ident for ident, _ in ids],
                         dataset.images.split.tolist())
        place_images(dataset, stage, [f"JPEGImages/{key}" for _, key in ids])
