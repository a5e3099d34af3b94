"""CVAT: pre-annotations as "CVAT for images 1.1" XML and as COCO 1.0, and reading CVAT's exports.

CVAT (and Datumaro, its format engine) do not install here without changing the shared
numpy / Pillow / OpenCV, so the files follow CVAT's importers as written in its source; the
tests check every rule below on the files written (``tests/active/test_exporters.py``).

=============================================  ===================================================
rule (what the importer does)                  source
=============================================  ===================================================
XML: root ``<annotations>``; each ``<image>``  cvat-ai/cvat ``cvat/apps/dataset_manager/formats/
needs ``id`` and ``name``; ``<box>`` needs     cvat.py``: ``load_anno`` (``el.attrib["label"]``,
``label``, ``xtl``, ``ytl``, ``xbr``, ``ybr``  ``float(el.attrib["xtl"])`` ...); ``occluded``,
(parsed with ``float``); ``occluded`` "1"/"0", ``z_order``, ``group_id``, ``rotation`` optional
``z_order`` int, ``rotation`` float
an ``<image>`` is matched to a task frame by   ``cvat/apps/dataset_manager/bindings.py``:
its ``name`` (with, then without extension),   ``match_dm_item``; unmatched -> ``CvatImportError
else by ``id`` as the frame number             ("Could not match item id")``
a box's label must be one of the task's        ``bindings.py`` (``_get_label_id``: unknown label
labels; attributes must be declared for it     raises); so no ``<attribute>`` is written
COCO: ``annotations/instances_<subset>.json``  Datumaro ``plugins/data_formats/coco/base.py``
in a zip, ``images/`` beside it; categories    (``DirPathExtracter.find_rootpath`` /
``id`` int (0 means "no label") and ``name``;  ``find_images_dir``, ``_load_label_categories``,
images ``id``, ``file_name``, ``width``,       ``_parse_item``, ``_load_annotations``:
``height``; annotations ``id``, ``image_id``,  ``_parse_field(ann, "iscrowd", int)``, bbox of
``category_id``, ``iscrowd`` (int), ``bbox``   exactly 4 numbers, ``segmentation`` list or dict)
(4 numbers), ``segmentation`` ([] = none)
``file_name`` without extension must match a   ``cvat/apps/dataset_manager/formats/coco.py``
task frame (as above)                          ``_import`` -> ``import_dm_annotations``
=============================================  ===================================================

Frames of a CVAT task are ordered by file name by default (``sorting_method``
"lexicographical"), so ``id`` is each image's index among the exported names sorted; the
name match comes first anyway. Coordinates are written with 2 decimals, as CVAT writes them.
A ``labels.json`` in the raw format of CVAT's label editor lets the task be created with
exactly the model's classes.

Reading (``active merge``): an exported ``annotations.xml`` or the export ``.zip`` holding it.
Boxes become labels; ``<polygon>``, ``<polyline>``, ``<points>``, ``<ellipse>``, ``<mask>``,
``<cuboid>``, ``<skeleton>``, ``<tag>`` and rotated boxes are counted in
:attr:`~detforge.active.labels.LabelledExport.lossy` (merge refuses them unless told).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np

from detforge.active.labels import ImageLabels, LabelledExport, rotated_extent
from detforge.core.atomic import atomic_write_bytes, atomic_write_json
from detforge.core.errors import DatasetError, MissingExtraError

__all__ = ["COCO_JSON", "read_cvat_xml", "write_cvat_coco", "write_cvat_labels", "write_cvat_xml"]

COCO_JSON = "annotations/instances_default.json"
"""Where CVAT's COCO 1.0 exporter puts the annotations (subset ``default``)."""

_OTHER_SHAPES = ("polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton", "tag")
_PALETTE = ("#fa3253", "#24b353", "#33ddff", "#ff6a4d", "#b83df5", "#fafa37", "#3d3df5",
            "#ffcc33", "#2a7dd1", "#aaf0d1")


def _f(v: float) -> str:
    return f"{v:.2f}"


def write_cvat_xml(path: str | Path, items: Sequence[ImageLabels], classes: Sequence[str], *,
                   task_name: str = "detforge selection") -> None:
    """Write pre-annotations as a "CVAT for images 1.1" ``annotations.xml`` (atomically).

    Args:
        path: The XML file.
        items: One entry per image (its ``key`` is the frame name in the CVAT task).
        classes: The task's labels, in order.
        task_name: Name recorded in the XML's meta.
    """
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = task_name
    ET.SubElement(task, "size").text = str(len(items))
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    for name in classes:
        entry = ET.SubElement(labels, "label")
        ET.SubElement(entry, "name").text = name
        ET.SubElement(entry, "type").text = "rectangle"
        ET.SubElement(entry, "attributes")
    for frame, item in enumerate(sorted(items, key=lambda it: it.key)):
        image = ET.SubElement(root, "image", {"id": str(frame), "name": item.key,
                                              "width": str(item.width),
                                              "height": str(item.height)})
        for b, label in zip(item.xyxy.tolist(), item.labels, strict=True):
            ET.SubElement(image, "box", {"label": label, "source": "auto", "occluded": "0",
                                         "xtl": _f(b[0]), "ytl": _f(b[1]), "xbr": _f(b[2]),
                                         "ybr": _f(b[3]), "z_order": "0"})
    ET.indent(root)
    atomic_write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


def write_cvat_labels(path: str | Path, classes: Sequence[str]) -> None:
    """Write the labels in the raw format of CVAT's label editor (paste it when creating the
    task, so its labels are exactly the model's classes)."""
    atomic_write_json(path, [{"name": c, "color": _PALETTE[i % len(_PALETTE)],
                              "type": "rectangle", "attributes": []}
                             for i, c in enumerate(classes)])


def coco_document(items: Sequence[ImageLabels], classes: Sequence[str]) -> dict[str, Any]:
    """The COCO instances document CVAT's "COCO 1.0" importer reads (category ids from 1)."""
    cat = {c: i + 1 for i, c in enumerate(classes)}
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for image_id, item in enumerate(sorted(items, key=lambda it: it.key), start=1):
        images.append({"id": image_id, "file_name": item.key, "width": item.width,
                       "height": item.height})
        for b, label in zip(item.xyxy.tolist(), item.labels, strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat[label],
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0,
                         "segmentation": []})
    return {"info": {"description": "detforge active selection"}, "licenses": [],
            "categories": [{"id": i, "name": c, "supercategory": ""} for c, i in cat.items()],
            "images": images, "annotations": anns}


def write_cvat_coco(folder: str | Path, items: Sequence[ImageLabels], classes: Sequence[str]
                    ) -> Path:
    """Write ``folder/annotations/instances_default.json`` and ``folder.zip`` for CVAT.

    The zip holds the JSON and an empty ``images/`` folder (Datumaro looks for one beside
    ``annotations/``); upload either with CVAT's "Upload annotations", format COCO 1.0.

    Returns:
        The zip file.
    """
    folder = Path(folder)
    doc = coco_document(items, classes)
    atomic_write_json(folder / COCO_JSON, doc, indent=None)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(COCO_JSON, json.dumps(doc))
        zf.writestr("images/", b"")
    out = folder.with_suffix(".zip")
    atomic_write_bytes(out, buf.getvalue())
    return out


def _xml_bytes(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".xml")]
            if len(names) != 1:
                raise DatasetError(f"a CVAT export zip holds one annotations.xml; found "
                                   f"{names or 'none'}", path=path)
            return zf.read(names[0])
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read the CVAT export ({exc.strerror})", path=path) from exc


def _num(el: ET.Element, name: str, path: Path) -> float:
    try:
        return float(el.attrib[name])
    except KeyError as exc:
        raise DatasetError(f"<{el.tag}> lacks the {name!r} attribute; re-export the task as "
                           "'CVAT for images 1.1'", path=path) from exc
    except ValueError as exc:
        raise DatasetError(f"<{el.tag}> {name}={el.attrib[name]!r} is not a number",
                           path=path) from exc


def read_cvat_xml(path: str | Path) -> LabelledExport:
    """Read a "CVAT for images 1.1" export (``annotations.xml`` or the export ``.zip``).

    Args:
        path: The file.

    Returns:
        The images and their boxes; shapes that are not boxes, and rotated boxes, are
        counted in ``lossy`` (rotated boxes are kept as their enclosing box).

    Raises:
        DatasetError: Not a CVAT for images XML, or a box attribute is missing or malformed.
        MissingExtraError: defusedxml is not installed.
    """
    try:
        from defusedxml import ElementTree as SafeET
        from defusedxml.common import DefusedXmlException
    except ImportError as exc:
        raise MissingExtraError("reading CVAT XML needs defusedxml: pip install "
                                "'detforge[active]'") from exc
    path = Path(path)
    try:
        root = SafeET.fromstring(_xml_bytes(path))
    except (ET.ParseError, DefusedXmlException) as exc:
        raise DatasetError(f"not well-formed XML ({exc}); export the task again", path=path) \
            from exc
    if root.tag != "annotations":
        raise DatasetError(f"root element is <{root.tag}>, not <annotations>: not a CVAT XML "
                           "export", path=path)
    if root.find("track") is not None:
        raise DatasetError("this is a 'CVAT for video' export (it has <track>); export the "
                           "task as 'CVAT for images 1.1'", path=path)
    declared = [el.text or "" for el in root.iterfind("meta/*/labels/label/name")]
    images: list[ImageLabels] = []
    lossy: Counter[str] = Counter()
    for im in root.findall("image"):
        if "name" not in im.attrib:
            raise DatasetError("an <image> has no 'name'; export the task again", path=path)
        boxes, labels, occluded = [], [], []
        for el in im:
            if el.tag in _OTHER_SHAPES:
                lossy[el.tag] += 1
                continue
            if el.tag != "box":
                continue
            x1, y1, x2, y2 = (_num(el, a, path) for a in ("xtl", "ytl", "xbr", "ybr"))
            rotation = float(el.attrib.get("rotation", 0) or 0)
            if rotation % 360:
                lossy["rotated box"] += 1
                x1, y1, x2, y2 = rotated_extent(x1, y1, x2, y2, rotation, pivot="centre")
            if "label" not in el.attrib:
                raise DatasetError(f"a <box> in image {im.attrib['name']!r} has no label",
                                   path=path)
            boxes.append((x1, y1, x2, y2))
            labels.append(el.attrib["label"])
            occluded.append(el.attrib.get("occluded", "0") == "1")
        images.append(ImageLabels(
            im.attrib["name"], int(float(im.attrib.get("width", 0) or 0)),
            int(float(im.attrib.get("height", 0) or 0)),
            np.asarray(boxes, np.float64).reshape(-1, 4), tuple(labels),
            occluded=np.asarray(occluded, bool)))
    return LabelledExport(str(path), "cvat", images, declared, [], lossy)
