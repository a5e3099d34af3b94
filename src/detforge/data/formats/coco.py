"""COCO detection JSON: read and write.

Layouts read: see :mod:`detforge.data.formats._coco_layout` (a JSON file,
``annotations/*.json`` named ``instances_<split>.json``, ``<split>.json`` or keypoint
files, and Roboflow's ``<split>/_annotations.coco.json``).

Mapping: ``bbox`` (x, y, w, h) -> xyxy float64 pixels; category ids keep their original
(possibly non-contiguous) values in ``ClassMap.source_ids``; ``iscrowd`` is kept; the
non-standard per-annotation keys ``difficult``, ``truncated``, ``occluded`` and ``ignore``
are read when present and written when any box has them, so VOC/KITTI flags survive a
round trip. An annotation with an unknown ``category_id`` is kept with class -1 (reported
by ``validate``, refused by every writer unless ``--allow-loss unknown-class``); one whose
``image_id`` is unknown is an error. ``ImageTable.label_file`` is the JSON file (relative
to the root) and ``BoxTable.extra["ann_id"]`` the annotation id, so findings name both.

Pass-through (COCO -> COCO keeps them; other writers count them as a loss): every other
annotation key (``segmentation``, ``keypoints``, ``num_keypoints``, ``attributes``...) in
``BoxTable.extra["coco"]``, the original ``area`` in ``BoxTable.extra["area"]``, every
other image key (``license``, ``coco_url``...) in ``ImageTable.extra["coco"]``, the other
top-level keys of each file (``info``, ``licenses``...) in ``info["coco_meta"][split]``
and the other category keys (``supercategory``, ``keypoints``, ``skeleton``) in
``info["coco_categories"][name]``.

Layout written: ``annotations/instances_<split>.json`` (``instances.json`` when unsplit)
and ``images/<split>/<key>`` (hard link, else copy); see :mod:`._coco_write`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats._coco_layout import CocoFile, detect_layout, find_files, image_base
from detforge.data.formats._coco_parse import (
    ANN_KEYS,
    IMAGE_KEYS,
    OPTIONAL_FLAGS,
    bboxes,
    brief,
    column,
    int_column,
    load_json,
    pass_through,
    records,
    size_column,
)
from detforge.data.formats._coco_write import write
from detforge.data.formats._common import bad_text

__all__ = ["detect", "read", "write"]


def detect(path: Path) -> bool:
    """True for a ``.json`` file, ``annotations/*.json`` or a Roboflow COCO export."""
    return detect_layout(Path(path))


def _categories(obj: dict[str, Any], path: Path, names: list[str], ids: list[int],
                extras: dict[str, dict[str, Any]]) -> None:
    cats = obj.get("categories", [])
    records(cats, "categories", path)
    for i, c in enumerate(cats):
        cid, name = c.get("id"), c.get("name")
        if isinstance(cid, bool) or not isinstance(cid, int) or not isinstance(name, str):
            raise DatasetError(f"categories[{i}] needs an integer id and a string name, got "
                               f"{brief(c)}", path=path)
        if (why := bad_text(name)) is not None:
            raise DatasetError(f"categories[{i}] name {brief(name)} {why}; rename it",
                               path=path)
        if not -2**63 <= cid < 2**63:
            raise DatasetError(f"categories[{i}] id {cid} is outside the 64-bit integer "
                               "range; use a smaller id", path=path)
        if cid in ids:
            if names[ids.index(cid)] != name:
                raise DatasetError(f"category id {cid} is {brief(name)} here but "
                                   f"{brief(names[ids.index(cid)])} elsewhere; use one name "
                                   "per id", path=path)
            continue
        if name in names:
            raise DatasetError(f"category name {brief(name)} has two ids "
                               f"({ids[names.index(name)]} and {cid}); merge them into one "
                               "category", path=path)
        names.append(name)
        ids.append(cid)
        extra = {k: v for k, v in c.items() if k not in ("id", "name")}
        if extra:
            extras[name] = extra


def _file_names(imgs: list[dict[str, Any]], path: Path) -> list[str]:
    files: list[Any] = [r.get("file_name", None) for r in imgs]
    for i, f in enumerate(files):
        if not isinstance(f, str) or not f:
            raise DatasetError(f'images[{i}] "file_name" must be a non-empty string, got '
                               f"{brief(f)}", path=path)
        if (why := bad_text(f)) is not None:
            raise DatasetError(f'images[{i}] (id {brief(imgs[i].get("id"))}) "file_name" '
                               f"{brief(f)} {why}; fix the name", path=path)
    return files


def _read_file(file: CocoFile, root: Path, names: list[str], ids: list[int],
               offset: int, info: dict[str, Any]) -> tuple[ImageTable, dict[str, Any]]:
    path = file.path
    obj = load_json(path)
    _categories(obj, path, names, ids, info.setdefault("coco_categories", {}))
    meta = {k: v for k, v in obj.items() if k not in ("images", "annotations", "categories")}
    if meta:
        info.setdefault("coco_meta", {}).setdefault(file.split, meta)
    imgs: list[dict[str, Any]] = obj["images"]
    img_ids = int_column(imgs, "id", "images", path)
    files = _file_names(imgs, path)
    base = os.path.relpath(image_base(root, file, files), root)
    prefix = "" if base == "." else base.replace(os.sep, "/") + "/"
    rel = [prefix + f if "./" not in f and "\\" not in f and f[:1] != "/" else
           os.path.normpath(os.path.join(base, f.replace("\\", "/"))).replace(os.sep, "/")
           for f in files]
    label = os.path.relpath(path, root).replace(os.sep, "/")
    image_extra = pass_through(imgs, IMAGE_KEYS)
    table = ImageTable.build(rel, size_column(imgs, "width", path),
                             size_column(imgs, "height", path), id=img_ids,
                             split=[file.split] * len(imgs), label_file=[label] * len(imgs))
    if image_extra is not None:
        table.extra["coco"] = image_extra

    anns: list[dict[str, Any]] = obj.get("annotations", [])
    order = np.argsort(img_ids, kind="stable")
    sorted_ids = img_ids[order]
    if len(sorted_ids) > 1 and (dup := np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])).size:
        raise DatasetError(f"image id {int(sorted_ids[dup[0]])} is used by more than one "
                           "image; give each image a unique id", path=path)
    ann_img = int_column(anns, "image_id", "annotations", path)
    pos = np.searchsorted(sorted_ids, ann_img)
    pos_c = np.minimum(pos, max(len(sorted_ids) - 1, 0))
    unknown = np.flatnonzero((pos >= len(sorted_ids)) | (sorted_ids[pos_c] != ann_img)) \
        if len(sorted_ids) else np.arange(len(anns))
    if unknown.size:
        a = anns[int(unknown[0])]
        raise DatasetError(f"annotation id {brief(a.get('id', '?'))} refers to image_id "
                           f"{brief(a['image_id'])}, which is not in \"images\"; add that "
                           "image or delete the annotation", path=path)
    present = set().union(*anns) if anns else set()
    cols: dict[str, Any] = {
        "image_index": order[pos_c] + offset,
        "xyxy": bboxes(anns, path),
        "category_id": int_column(anns, "category_id", "annotations", path),
        "iscrowd": column(anns, "iscrowd", "iub", "annotations", path, 0).astype(bool),
        "ann_id": int_column(anns, "id", "annotations", path, -1) if "id" in present
        else np.full(len(anns), -1, np.int64),
        "area": column(anns, "area", "iuf", "annotations", path, np.nan).astype(np.float64)
        if "area" in present else np.full(len(anns), np.nan),
        "coco": pass_through(anns, ANN_KEYS),
    }
    bad_area = ~np.isfinite(cols["area"])
    if "area" in present and bad_area.any():  # NaN/inf given (not absent): kept as given
        cols["coco"] = _keep_bad_area(anns, bad_area, cols["coco"])
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 is kept as inf
        for flag, dtype in OPTIONAL_FLAGS:
            if flag not in present:
                cols[flag] = np.zeros(len(anns), dtype)
                continue
            values = column(anns, flag, "iubf", "annotations", path, 0)
            if dtype == np.int8 and len(values) and (np.abs(values) > 127).any():
                bad = int(np.argmax(np.abs(values) > 127))
                raise DatasetError(f'annotation id {brief(anns[bad].get("id", "?"))} '
                                   f'"{flag}" = {brief(anns[bad][flag])} is not in '
                                   "[-128, 127]", path=path)
            cols[flag] = values.astype(dtype)
        cols["xyxy"][:, 2:] += cols["xyxy"][:, :2]
    return table, cols


def _keep_bad_area(anns: list[dict[str, Any]], bad: NDArray[np.bool_],
                   coco: NDArray[Any] | None) -> NDArray[Any]:
    """Pass-through dicts with the non-finite ``area`` values that were given, so a writer
    refuses them (JSON cannot store them) instead of replacing them with w x h."""
    out = np.full(len(anns), None, object) if coco is None else coco
    for i in np.flatnonzero(bad).tolist():
        if "area" in anns[i]:
            out[i] = {**(out[i] or {}), "area": anns[i]["area"]}
    return out


def read(path: Path) -> Dataset:
    """Read a COCO JSON file or a folder of them.

    Args:
        path: A ``.json`` file, a folder with ``annotations/*.json``, or a Roboflow export.

    Returns:
        The dataset; ``root`` is the folder image paths are relative to.

    Raises:
        DatasetError: The JSON is invalid or inconsistent; the message names the file and
            the entry (e.g. the annotation id whose ``image_id`` is unknown).

    Example:
        >>> ds = read(Path("coco/annotations/instances_val2017.json"))  # doctest: +SKIP
    """
    path = Path(path)
    root, files = find_files(path)
    names: list[str] = []
    ids: list[int] = []
    tables: list[ImageTable] = []
    parts: list[dict[str, Any]] = []
    info: dict[str, Any] = {"format": "coco", "source": str(path)}
    offset = 0
    for f in files:
        table, cols = _read_file(f, root, names, ids, offset, info)
        tables.append(table)
        parts.append(cols)
        offset += len(table)
    images = ImageTable.concat(tables)
    cat = np.concatenate([p["category_id"] for p in parts]) if parts else np.zeros(0, np.int64)
    src_ids = np.asarray(ids, np.int64)
    sort = np.argsort(src_ids)
    where = np.searchsorted(src_ids[sort], cat)
    where_c = np.minimum(where, max(len(ids) - 1, 0))
    known = (where < len(ids)) & (src_ids[sort][where_c] == cat) if len(ids) else \
        np.zeros(len(cat), bool)
    class_id = np.where(known, sort[where_c] if len(ids) else -1, -1)

    def col(name: str) -> NDArray[Any]:
        return np.concatenate([p[name] for p in parts])

    extra: dict[str, NDArray[Any]] = {"ann_id": col("ann_id")}
    if not np.isnan(col("area")).all():
        extra["area"] = col("area")
    if any(p["coco"] is not None for p in parts):
        extra["coco"] = np.concatenate([
            p["coco"] if p["coco"] is not None else np.full(len(p["ann_id"]), None, object)
            for p in parts])
    boxes = BoxTable.build(col("image_index"), col("xyxy").reshape(-1, 4), class_id,
                           iscrowd=col("iscrowd"), difficult=col("difficult"),
                           truncated=col("truncated"), occluded=col("occluded"),
                           ignore=col("ignore"), extra=extra)
    if not info.get("coco_categories"):
        info.pop("coco_categories", None)
    return Dataset(ClassMap(tuple(names), tuple(ids)), images, boxes, root=root, info=info)
