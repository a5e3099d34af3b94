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
* Class order comes from ``labels.txt`` when present, else from a CVAT/Datumaro
  ``labelmap.txt`` (its classes, unused ones included, in file order; ``background`` is
  not a class), names found in the XML but not listed appended, sorted; otherwise classes
  are the names found, sorted. The labelmap's entries are kept (``info["voc_labelmap"]``)
  and written back as ``labelmap.txt`` by the VOC writer.
* A missing or zero ``<size>`` is read from the image header; when the image is missing too,
  width = height = 0 (``validate`` reports it).
* The image is found from ``<filename>``, falling back to the XML's own name when the two
  differ or ``<filename>`` lacks an extension; ``<path>`` and ``<folder>`` are ignored.
* ``difficult``, ``truncated`` and ``occluded`` are kept. Ignore regions (KITTI ``DontCare``)
  and crowd regions have no VOC equivalent: the writer refuses them unless the loss is
  allowed (``--allow-loss ignore,crowd``), then skips and counts them.
* Split files are read in the order train, val, test, other names, then ``trainval`` (which
  only fills images listed in no other split); ``#`` lines are comments. An image listed
  in two splits keeps the first and is recorded in ``Dataset.info["split_conflicts"]``;
  ids listed in a split file that have neither an XML nor an image are recorded in
  ``Dataset.info["dangling_split_ids"]``.

The split-file, class-list and number helpers live in :mod:`._folders`, shared with KITTI.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET
from numpy.typing import NDArray

from detforge.core.errors import DatasetError
from detforge.data.dataset import UNSET_SPLIT, BoxTable, Dataset, ImageTable
from detforge.data.formats._common import (
    exists_file,
    known_sizes,
    place_images,
    progress,
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
    write_labelmap,
    write_labels_txt,
)
from detforge.data.formats._plan import Holds, plan_boxes
from detforge.data.formats.policy import WriteOptions, WriteSummary

__all__ = ["detect", "read", "write"]

_COORDS = ("xmin", "ymin", "xmax", "ymax")
HOLDS = Holds(flags=frozenset({"difficult", "truncated", "occluded"}),
              metadata=frozenset({"voc_labelmap"}))


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
        raise DatasetError(f"XML refused for safety ({type(exc).__name__}); remove "
                           "entity/DTD declarations", path=path) from exc
    except (LookupError, ValueError, UnicodeError) as exc:  # encoding="bogus" and the like
        raise DatasetError(f"XML cannot be decoded ({type(exc).__name__}: "
                           f"{str(exc)[:80]}); save it as UTF-8", path=path) from exc
    except RecursionError as exc:
        raise DatasetError("XML nested too deeply; fix the file", path=path) from exc
    except OSError as exc:
        raise DatasetError(f"cannot read the file ({exc.strerror})", path=path) from exc
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

    classes, class_id, labelmap = class_order(path / "labels.txt", boxes.names,
                                              path / "labelmap.txt")
    table = ImageTable.build(
        files, [w for w, _ in sizes], [h for _, h in sizes],
        split=[split_of.get(i, UNSET_SPLIT) for i in ids],
        label_file=[f"Annotations/{i}.xml" if i in xml_ids else "" for i in ids])
    with np.errstate(over="ignore"):  # a truncated beyond float32 is kept as inf
        box_table = BoxTable.build(
            boxes.image, np.asarray(boxes.xyxy, np.float64).reshape(-1, 4), class_id,
            difficult=boxes.difficult, truncated=boxes.truncated, occluded=boxes.occluded)
    info: dict[str, Any] = {"format": "voc", "name": path.name}
    if labelmap:
        info["voc_labelmap"] = labelmap
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


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: str, what: str) -> str:
    """``value`` escaped for XML; refused when XML 1.0 cannot hold one of its characters."""
    if _XML_BAD.search(value):
        raise DatasetError(f"{what} {value[:60]!r} holds a character XML cannot store (a "
                           "control character); rename it")
    return escape(value)


def _objects(ds: Dataset, keep: NDArray[np.bool_]) -> list[str]:
    """The ``<object>`` element of every box (empty for boxes not written), in box order."""
    b = ds.boxes
    names = [_xml_text(n, "class name") for n in ds.classes.names]
    out: list[str] = []
    for c, kept, xyxy, tr, diff, occ in zip(
            b.class_id.tolist(), keep.tolist(), b.xyxy.tolist(), b.truncated,
            b.difficult.tolist(), b.occluded.tolist(), strict=True):
        if not kept:
            out.append("")
            continue
        x1, y1, x2, y2 = (fmt_num(v) for v in xyxy)
        out.append(_OBJECT.format(name=names[c], truncated=fmt_num(tr), difficult=int(diff),
                                  occluded=occ, x1=x1, y1=y1, x2=x2, y2=y2))
    return out


def _depth(src: Path | None) -> int:
    if src is None or not exists_file(src):
        return 3
    from detforge.core.imageio import open_image

    try:
        with open_image(src) as im:
            return len(im.getbands())
    except OSError:  # ImageError included: a header it cannot read
        return 3


def write(dataset: Dataset, out: Path, *, options: WriteOptions | None = None) -> WriteSummary:
    """Write ``dataset`` as Pascal VOC under ``out``.

    Writes ``Annotations/<id>.xml`` (one per image, empty images included),
    ``JPEGImages/<key>`` (hard link or copy of each existing source image),
    ``ImageSets/Main/<split>.txt`` (plus ``trainval.txt`` when train and val exist),
    ``labels.txt``, and ``labelmap.txt`` when the source had one. An unknown image size
    is read from the image file when there is one (else written as 0).

    Args:
        dataset: The dataset to write.
        out: New output folder (must not exist, or be empty); it appears only once
            everything was written.
        options: Losses allowed (VOC cannot hold crowd or ignore regions, KITTI's 3-D
            fields or COCO's pass-through values).

    Returns:
        What was written and left out.

    Raises:
        ConfigError: ``out`` exists and is not empty.
        DatasetError: Two images map to the same id, a name cannot be written, or data
            would be lost that ``options`` does not allow.

    Example:
        >>> write(ds, Path("out/voc"))  # doctest: +SKIP
    """
    ids = output_ids(dataset)
    keep, ledger = plan_boxes(dataset, "voc", HOLDS, options or WriteOptions())
    ledger.check()
    objects = _objects(dataset, keep)
    per_image = dataset.boxes_per_image()
    widths, heights = known_sizes(dataset, np.ones(dataset.num_images, bool))
    summary = WriteSummary("voc", images=dataset.num_images, boxes=int(keep.sum()))
    with staged_output(Path(out)) as stage:
        write_labels_txt(stage / "labels.txt", dataset.classes.names)
        if dataset.info.get("voc_labelmap"):
            write_labelmap(stage / "labelmap.txt", dataset.classes.names,
                           dataset.info["voc_labelmap"])
        for i in progress(range(dataset.num_images), total=dataset.num_images,
                          desc="voc annotations"):
            ident, key = ids[i]
            depth = _depth(dataset.image_path(i) if dataset.root is not None else None)
            head = _HEAD.format(filename=_xml_text(PurePosixPath(key).name, "file name"),
                                width=int(widths[i]), height=int(heights[i]), depth=depth)
            body = "".join(objects[r] for r in per_image[i].tolist())
            put_text(stage / "Annotations" / f"{ident}.xml", f"{head}{body}</annotation>\n")
        write_image_sets(stage / "ImageSets" / "Main", [ident for ident, _ in ids],
                         dataset.images.split.tolist())
        summary.image_files = place_images(dataset, stage,
                                           [f"JPEGImages/{key}" for _, key in ids])
    return ledger.summary(summary)
