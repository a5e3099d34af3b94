"""COCO detection JSON: read and write.

Layout read: a single JSON file, or a folder with ``annotations/*.json`` (only the
``instances_*.json`` files when there are any). ``instances_<split>.json`` gives the
split (``train2017`` -> ``train``); ``instances.json`` and other names are unsplit. Images
are looked up in ``images/<split>/``, ``images/``, ``<split>/`` next to ``annotations/``,
then the JSON's own folder.

Mapping: ``bbox`` (x, y, w, h) -> xyxy float64 pixels; category ids keep their original
(possibly non-contiguous) values in ``ClassMap.source_ids``; ``iscrowd`` is kept; the
non-standard per-annotation keys ``difficult``, ``truncated``, ``occluded`` and ``ignore``
are read when present and written when any box has them, so VOC/KITTI flags survive a
round trip. An annotation with an unknown ``category_id`` is kept with class -1 (reported
by ``validate``); one whose ``image_id`` is unknown is an error.

Layout written: ``annotations/instances_<split>.json`` (``instances.json`` when unsplit)
and ``images/<split>/<key>`` (hard link, else copy). Ignore regions without a class
(KITTI ``DontCare``) have no COCO category and are not written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.atomic import atomic_write_json
from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.core.jsonfile import parse_json
from detforge.data.dataset import UNSET_SPLIT, BoxTable, Dataset, ImageTable
from detforge.data.formats._common import (
    as_column,
    destination_keys,
    first_bad,
    normalise_split,
    place_images,
    split_of,
    staged_output,
)

__all__ = ["detect", "read", "write"]

_OPTIONAL_FLAGS = (("difficult", np.bool_), ("truncated", np.float32),
                   ("occluded", np.int8), ("ignore", np.bool_))


def detect(path: Path) -> bool:
    """True for a ``.json`` file or a folder holding ``annotations/*.json``."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".json"
    return path.is_dir() and any((path / "annotations").glob("*.json"))


def _json_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    ann = path / "annotations"
    files = sorted(ann.glob("instances*.json")) or sorted(ann.glob("*.json"))
    if not files:
        raise DatasetError("no COCO JSON found; expected annotations/instances_<split>.json "
                           "or pass the JSON file itself", path=path)
    return files


def _split_of_file(path: Path) -> tuple[str, str]:
    stem = path.stem
    raw = stem[len("instances_"):] if stem.startswith("instances_") else ""
    return raw, normalise_split(raw) if raw else UNSET_SPLIT


def _image_dir(root: Path, json_dir: Path, raw: str, split: str) -> Path:
    names = [f"images/{raw}", f"images/{split}", raw] if raw else []
    for cand in [*names, "images"]:
        if (root / cand).is_dir():
            return root / cand
    return json_dir


def _load_json(path: Path) -> dict[str, Any]:
    try:
        obj = parse_json(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}; fix the file or export it again", path=path,
                           line=exc.lineno) from exc
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise DatasetError(f"not valid JSON ({exc}); fix the file or export it again",
                           path=path) from exc
    except OSError as exc:
        raise DatasetError(f"cannot read file ({exc.strerror})", path=path) from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list):
        raise DatasetError('not a COCO detection file: expected a JSON object with an '
                           '"images" list (and "annotations", "categories")', path=path)
    for key in ("annotations", "categories"):
        if not isinstance(obj.get(key, []), list):
            raise DatasetError(f'"{key}" must be a list', path=path)
    return obj


def _records(items: list[Any], what: str, path: Path) -> None:
    bad = first_bad(items, dict)
    if bad >= 0:
        raise DatasetError(f"{what}[{bad}] is not an object: {str(items[bad])[:80]}", path=path)


def _field(items: list[dict[str, Any]], key: str, kinds: str, what: str, path: Path,
           default: Any = None) -> NDArray[Any]:
    """One column of ``items`` as an array whose dtype kind is in ``kinds``."""
    try:
        values = [r[key] for r in items] if default is None else \
            [r.get(key, default) for r in items]
    except (KeyError, TypeError, AttributeError):
        _records(items, what, path)
        missing = next((i for i, r in enumerate(items) if key not in r), 0)
        raise DatasetError(f'{what}[{missing}] has no "{key}"; add it', path=path) from None
    arr = as_column(values, kinds)
    if arr is None:
        ok: tuple[type, ...] = (int,) if kinds == "iu" else (int, float)
        bad = max(first_bad(values, ok), 0)
        raise DatasetError(f'{what}[{bad}] "{key}" must be a number, got {values[bad]!r}',
                           path=path)
    return arr


def _bboxes(anns: list[dict[str, Any]], path: Path) -> NDArray[np.float64]:
    n = len(anns)
    if not n:
        return np.zeros((0, 4))
    try:
        raw = [a["bbox"] for a in anns]
        arr = np.asarray(raw)
        if arr.shape == (n, 4) and arr.dtype.kind in "iuf":
            return arr.astype(np.float64)
    except (KeyError, ValueError, TypeError, OverflowError):
        pass
    for i, a in enumerate(anns):
        b = a.get("bbox")
        if not isinstance(b, list) or len(b) != 4 or first_bad(b, (int, float)) >= 0:
            raise DatasetError(f'annotation id {a.get("id", "?")} (annotations[{i}]) has '
                               f'bbox {str(b)[:60]}; expected [x, y, width, height] numbers',
                               path=path)
    raise DatasetError("bbox values are not numbers", path=path)  # unreachable in practice


def _categories(obj: dict[str, Any], path: Path, names: list[str], ids: list[int]) -> None:
    cats = obj.get("categories", [])
    _records(cats, "categories", path)
    for i, c in enumerate(cats):
        cid, name = c.get("id"), c.get("name")
        if isinstance(cid, bool) or not isinstance(cid, int) or not isinstance(name, str):
            raise DatasetError(f"categories[{i}] needs an integer id and a string name, got "
                               f"{str(c)[:80]}", path=path)
        if cid in ids:
            if names[ids.index(cid)] != name:
                raise DatasetError(f"category id {cid} is {name!r} here but "
                                   f"{names[ids.index(cid)]!r} elsewhere; use one name per id",
                                   path=path)
            continue
        if name in names:
            raise DatasetError(f"category name {name!r} has two ids ({names.index(name)} and "
                               f"{cid}); merge them into one category", path=path)
        names.append(name)
        ids.append(cid)


def _read_file(path: Path, root: Path, names: list[str], ids: list[int],
               offset: int) -> tuple[ImageTable, dict[str, Any]]:
    obj = _load_json(path)
    _categories(obj, path, names, ids)
    imgs: list[dict[str, Any]] = obj["images"]
    raw, split = _split_of_file(path)
    img_ids = _field(imgs, "id", "iu", "images", path).astype(np.int64)
    files: list[str] = [r.get("file_name", None) for r in imgs]  # type: ignore[misc]
    bad = first_bad(files, str)
    if bad >= 0:
        raise DatasetError(f'images[{bad}] "file_name" must be a string, got {files[bad]!r}',
                           path=path)
    width = _field(imgs, "width", "iuf", "images", path, 0)
    height = _field(imgs, "height", "iuf", "images", path, 0)
    base = os.path.relpath(_image_dir(root, path.parent, raw, split), root)
    prefix = "" if base == "." else base.replace(os.sep, "/") + "/"
    rel = [prefix + f if "./" not in f and "\\" not in f and f[:1] != "/" else
           os.path.normpath(os.path.join(base, f)).replace(os.sep, "/") for f in files]
    table = ImageTable.build(rel, width.astype(np.int32), height.astype(np.int32), id=img_ids,
                             split=[split] * len(imgs))

    anns: list[dict[str, Any]] = obj.get("annotations", [])
    order = np.argsort(img_ids, kind="stable")
    sorted_ids = img_ids[order]
    if len(sorted_ids) > 1 and (dup := np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])).size:
        raise DatasetError(f"image id {int(sorted_ids[dup[0]])} is used by more than one "
                           "image; give each image a unique id", path=path)
    ann_img = _field(anns, "image_id", "iu", "annotations", path).astype(np.int64)
    pos = np.searchsorted(sorted_ids, ann_img)
    pos_c = np.minimum(pos, max(len(sorted_ids) - 1, 0))
    unknown = np.flatnonzero((pos >= len(sorted_ids)) | (sorted_ids[pos_c] != ann_img)) \
        if len(sorted_ids) else np.arange(len(anns))
    if unknown.size:
        a = anns[int(unknown[0])]
        raise DatasetError(f"annotation id {a.get('id', '?')} refers to image_id "
                           f"{a['image_id']}, which is not in \"images\"; add that image or "
                           "delete the annotation", path=path)
    cols: dict[str, Any] = {
        "image_index": order[pos_c] + offset,
        "xyxy": _bboxes(anns, path),
        "category_id": _field(anns, "category_id", "iu", "annotations", path).astype(np.int64),
        "iscrowd": _field(anns, "iscrowd", "iub", "annotations", path, 0).astype(bool),
    }
    present = set().union(*anns) if anns else set()  # every entry is a dict by now
    for flag, dtype in _OPTIONAL_FLAGS:
        cols[flag] = _field(anns, flag, "iubf", "annotations", path, 0).astype(dtype) \
            if flag in present else np.zeros(len(anns), dtype)
    cols["xyxy"][:, 2:] += cols["xyxy"][:, :2]
    return table, cols


def read(path: Path) -> Dataset:
    """Read a COCO JSON file or a folder of them.

    Args:
        path: A ``.json`` file or a folder with ``annotations/*.json``.

    Returns:
        The dataset; ``root`` is the folder that holds ``annotations/`` (or the JSON).

    Raises:
        DatasetError: The JSON is invalid or inconsistent; the message names the file and
            the entry (e.g. the annotation id whose ``image_id`` is unknown).

    Example:
        >>> ds = read(Path("coco/annotations/instances_val2017.json"))  # doctest: +SKIP
    """
    path = Path(path)
    files = _json_files(path)
    json_dir = files[0].parent
    root = json_dir.parent if json_dir.name == "annotations" else json_dir
    names: list[str] = []
    ids: list[int] = []
    tables: list[ImageTable] = []
    parts: list[dict[str, Any]] = []
    offset = 0
    for f in files:
        table, cols = _read_file(f, root, names, ids, offset)
        tables.append(table)
        parts.append(cols)
        offset += len(table)
    images = ImageTable(*(np.concatenate([getattr(t, c) for t in tables]) for c in
                          ("file", "width", "height", "id", "split", "group", "label_file")))
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

    boxes = BoxTable.build(col("image_index"), col("xyxy").reshape(-1, 4), class_id,
                           iscrowd=col("iscrowd"), difficult=col("difficult"),
                           truncated=col("truncated"), occluded=col("occluded"),
                           ignore=col("ignore"))
    return Dataset(ClassMap(tuple(names), tuple(ids)), images, boxes, root=root,
                   info={"format": "coco", "source": str(path)})


def _image_ids(dataset: Dataset) -> NDArray[np.int64]:
    ids = dataset.images.id
    if len(ids) and (np.unique(ids).size != len(ids) or ids.min() < 0):
        return np.arange(1, len(ids) + 1, dtype=np.int64)
    return ids


def write(dataset: Dataset, out: Path, *, copy_images: bool = True) -> None:
    """Write ``dataset`` as COCO: ``annotations/instances_<split>.json`` + ``images/``.

    Args:
        dataset: The dataset.
        out: New output folder (must not exist, or be empty).
        copy_images: Hard-link or copy the images (skipped for images whose source file
            does not exist; their entries are written anyway).

    Raises:
        ConfigError: ``out`` exists and is not empty.
        DatasetError: Two images would be written to the same file.

    Example:
        >>> write(ds, Path("out_coco"))  # doctest: +SKIP
    """
    keys = destination_keys(dataset)
    img, bx, cm = dataset.images, dataset.boxes, dataset.classes
    ids = _image_ids(dataset)
    k = len(cm)
    cid = bx.class_id.astype(np.int64)
    in_range = (cid >= 0) & (cid < k)
    keep = in_range | ~bx.ignore
    src_ids = np.asarray(cm.source_ids, np.int64)
    cat = np.where(in_range, src_ids[np.clip(cid, 0, max(k - 1, 0))] if k else -1, -1)
    flags = [(f, getattr(bx, f)) for f, _ in _OPTIONAL_FLAGS if getattr(bx, f).any()]
    box_split = img.split[bx.image_index] if len(bx) else np.zeros(0, object)
    xywh = bx.xyxy.copy()
    xywh[:, 2:] -= xywh[:, :2]
    dests = [f"images/{s}/{key}" if s else f"images/{key}"
             for s, key in zip(img.split.tolist(), keys, strict=True)]
    categories = [{"id": int(i), "name": n} for i, n in zip(cm.source_ids, cm.names,
                                                             strict=True)]
    with staged_output(out) as stage:
        next_id = 1
        for split in split_of(dataset):
            rows = np.flatnonzero(img.split == split)
            sel = np.flatnonzero((box_split == split) & keep)
            images = [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in zip(
                ids[rows].tolist(), [keys[r] for r in rows.tolist()], img.width[rows].tolist(),
                img.height[rows].tolist(), strict=True)]
            b = xywh[sel]
            anns = [{"id": a, "image_id": i, "category_id": c, "bbox": bb, "area": ar,
                     "iscrowd": cr} for a, i, c, bb, ar, cr in zip(
                range(next_id, next_id + len(sel)), ids[bx.image_index[sel]].tolist(),
                cat[sel].tolist(), b.tolist(), (b[:, 2] * b[:, 3]).tolist(),
                bx.iscrowd[sel].astype(int).tolist(), strict=True)]
            next_id += len(sel)
            for name, values in flags:
                vals = values[sel].tolist()
                for a, v in zip(anns, vals, strict=True):
                    a[name] = int(v) if isinstance(v, bool) else v
            name = f"instances_{split}.json" if split else "instances.json"
            atomic_write_json(stage / "annotations" / name,
                              {"images": images, "annotations": anns,
                               "categories": categories}, indent=None)
        if copy_images:
            place_images(dataset, stage, dests)
