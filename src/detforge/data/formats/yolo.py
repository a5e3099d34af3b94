"""YOLO (Ultralytics layout): read and write.

Layout: ``data.yaml`` with ``path`` (dataset root), ``train`` / ``val`` / ``test`` (each a
folder of images, a ``.txt`` list of image paths, or a list of those; relative to
``path``) and ``names`` (a list or ``{id: name}``); images under ``images/<split>/``, labels
under ``labels/<split>/<stem>.txt`` with one ``class cx cy w h`` line (normalised to the
image size) per box. Label paths follow the Ultralytics rule: the last ``images`` folder of
the image path becomes ``labels`` and the suffix ``.txt``.

Reading:

* Image sizes come from the image headers. An image that cannot be read keeps
  ``width = height = 0``.
* An image without a label file, or with an empty one, is an empty image.
* A label file without an image (found in the labels folder of a split) becomes an image
  row with ``width = height = 0``, the guessed image path ``images/<split>/<stem>.jpg``
  and ``label_file`` set. Its boxes are kept (with their ``line``) but their
  coordinates are NaN, since normalised coordinates cannot be turned into pixels without
  the image size; ``validate`` reports the image as missing.
* Class ids outside ``names`` are kept as read. ``BoxTable.line`` is the 1-based line and
  ``ImageTable.label_file`` the label path relative to the root.
* When every split key points at the same images (``train: images`` and ``val: images``),
  the dataset is read as unsplit; that is how an unsplit dataset is written.

Writing: ``data.yaml``, ``images/<split>/<key>`` and ``labels/<split>/<key stem>.txt`` (one
file per image, empty for an empty image), coordinates with 12 significant digits, which
round-trips pixel boxes far below 1e-6 px. ``path`` is the absolute output folder (what
Ultralytics needs); the reader falls back to the YAML's folder when ``path`` no longer
exists, so a moved dataset still reads. YOLO cannot store ``iscrowd``, ``difficult``,
``truncated`` or ``occluded``: they are dropped. Ignore regions are not written as objects;
nor are boxes of an image of unknown size or with non-finite coordinates.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.data.dataset import UNSET_SPLIT, BoxTable, Dataset, ImageTable
from detforge.data.formats._common import (
    destination_keys,
    place_images,
    progress,
    read_text,
    split_of,
    staged_output,
)
from detforge.data.images import image_size, list_images

__all__ = ["detect", "read", "write"]

SPLIT_KEYS = ("train", "val", "test")


def _yaml_path(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (path / name).is_file():
            return path / name
    return None


def detect(path: Path) -> bool:
    """True for a ``data.yaml`` file or a folder that holds one."""
    return _yaml_path(Path(path)) is not None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        obj = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DatasetError(f"not valid YAML ({getattr(exc, 'problem', exc)}); fix the file",
                           path=path, line=None if mark is None else mark.line + 1) from exc
    except RecursionError as exc:
        raise DatasetError("YAML nested too deeply; fix the file", path=path) from exc
    if not isinstance(obj, dict):
        raise DatasetError("expected a mapping with path, train, val, test and names",
                           path=path)
    return obj


def _names(obj: dict[str, Any], path: Path) -> ClassMap:
    names = obj.get("names")
    if isinstance(names, dict):
        keys = list(names)
        if sorted(keys, key=str) != sorted(range(len(keys)), key=str) or \
                any(isinstance(k, bool) for k in keys):
            raise DatasetError(f"names keys must be the class ids 0..{len(keys) - 1}, got "
                               f"{keys[:10]}", path=path)
        names = [names[i] for i in range(len(keys))]
    if not isinstance(names, list) or not names:
        raise DatasetError("names must be a non-empty list of class names or {id: name}",
                           path=path)
    text = [str(n) for n in names]
    if len(set(text)) != len(text):
        raise DatasetError(f"class names repeat: {sorted({n for n in text if text.count(n) > 1})}"
                           "; give each class a unique name", path=path)
    nc = obj.get("nc")
    if nc is not None and nc != len(text):
        raise DatasetError(f"nc is {nc} but names has {len(text)} entries; make them agree",
                           path=path)
    return ClassMap.from_names(text)


def _root(obj: dict[str, Any], yml: Path) -> Path:
    raw = obj.get("path")
    if raw is None or raw == "":
        return yml.parent
    if not isinstance(raw, str):
        raise DatasetError(f"path must be a string, got {raw!r}", path=yml)
    p = Path(raw)
    p = p if p.is_absolute() else yml.parent / p
    return p if p.is_dir() else yml.parent  # a moved dataset: fall back to the yaml's folder


def _sources(value: Any, root: Path, key: str, yml: Path) -> list[Path]:
    items = value if isinstance(value, list) else [value]
    if any(not isinstance(v, str) for v in items):
        raise DatasetError(f"{key} must be a path or a list of paths, got {value!r}", path=yml)
    images: list[Path] = []
    for item in items:
        p = Path(item) if Path(item).is_absolute() else root / item
        if p.is_dir():
            images.extend(list_images(p))
        elif p.is_file() and p.suffix.lower() == ".txt":
            for line in read_text(p).splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    images.append(q if q.is_absolute() else (p.parent / q))
        elif not p.exists():
            raise DatasetError(f"{key}: {item!r} does not exist under {root}; fix the path",
                               path=yml)
    return [Path(os.path.normpath(q)) for q in images]


def label_path(image: Path) -> Path:
    """The label file of ``image`` by the Ultralytics rule (last ``images`` -> ``labels``)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


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
            raise DatasetError(f"class id {parts[0]!r} is not an integer; use the 0-based "
                               "index into names", path=path, line=n)
        cls.append(int(c))
        rows.append(vals)
        lines.append(n)
    return cls, rows, lines


def _collect(obj: dict[str, Any], root: Path, yml: Path) -> list[tuple[Path, str]]:
    per_split = {k: _sources(obj[k], root, k, yml) for k in SPLIT_KEYS if obj.get(k)}
    if not per_split:
        raise DatasetError("no train, val or test entry; add e.g. 'train: images/train'",
                           path=yml)
    label_dirs = {k: _label_dirs(obj[k], root) for k in per_split}
    sets = [sorted(v) for v in per_split.values()]
    if len(sets) > 1 and all(s == sets[0] for s in sets):
        per_split = {UNSET_SPLIT: sets[0]}
        label_dirs = {UNSET_SPLIT: set().union(*label_dirs.values())}
    seen: set[Path] = set()
    found: list[tuple[Path, str]] = []
    for split, imgs in per_split.items():
        for im in imgs:
            if im not in seen:
                seen.add(im)
                found.append((im, split))
    claimed = {label_path(im) for im, _ in found}
    for split in per_split:
        # label files without images, in the labels folder of each images folder given
        for lab_dir in sorted(d for d in label_dirs[split] if d.is_dir()):
            for lab in sorted(lab_dir.rglob("*.txt")):
                if lab not in claimed:
                    claimed.add(lab)
                    found.append((_image_of(lab), split))
    return found


def _label_dirs(value: Any, root: Path) -> set[Path]:
    """Labels folders of the image folders (not list files) in a split entry."""
    items = value if isinstance(value, list) else [value]
    dirs = {root / v for v in items if (root / v).is_dir()}
    return {label_path(d / "x").parent for d in dirs}


def _image_of(label: Path) -> Path:
    parts = list(label.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "labels":
            parts[i] = "images"
            break
    return Path(*parts).with_suffix(".jpg")


def read(path: Path) -> Dataset:
    """Read an Ultralytics YOLO dataset.

    Args:
        path: The dataset folder (with ``data.yaml``) or the YAML file itself.

    Returns:
        The dataset, boxes converted to pixel xyxy with each image's size.

    Raises:
        DatasetError: Bad YAML, missing split paths or a malformed label line (the
            message names the file and line).

    Example:
        >>> ds = read(Path("my_yolo_dataset"))  # doctest: +SKIP
    """
    path = Path(path)
    yml = _yaml_path(path)
    if yml is None:
        raise DatasetError("no data.yaml found; a YOLO dataset needs one", path=path)
    obj = _load_yaml(yml)
    classes = _names(obj, yml)
    root = _root(obj, yml)
    found = _collect(obj, root, yml)
    n = len(found)
    files, labels, splits = [], [], []
    width = np.zeros(n, np.int32)
    height = np.zeros(n, np.int32)
    cls: list[int] = []
    rows: list[list[float]] = []
    lines: list[int] = []
    index: list[int] = []
    for i, (im, split) in enumerate(progress(found, total=n, desc="yolo labels")):
        lab = label_path(im)
        files.append(os.path.relpath(im, root).replace(os.sep, "/"))
        splits.append(split)
        if im.is_file():
            try:
                width[i], height[i] = image_size(im)
            except DatasetError:
                pass  # unreadable image: size unknown, reported by validate
        if lab.is_file():
            labels.append(os.path.relpath(lab, root).replace(os.sep, "/"))
            c, r, ln = _parse(read_text(lab), lab)
            cls += c
            rows += r
            lines += ln
            index += [i] * len(c)
        else:
            labels.append("")
    images = ImageTable.build(files, width, height, split=splits, label_file=labels)
    xyxy = np.asarray(rows, np.float64).reshape(-1, 4)
    idx = np.asarray(index, np.int64)
    wh = np.stack([width, height], 1).astype(np.float64)[idx]
    wh[(wh == 0).any(1)] = np.nan
    xyxy = np.concatenate([(xyxy[:, :2] - xyxy[:, 2:] / 2) * wh,
                           (xyxy[:, :2] + xyxy[:, 2:] / 2) * wh], 1)
    boxes = BoxTable.build(idx, xyxy, cls, line=lines)
    return Dataset(classes, images, boxes, root=root,
                   info={"format": "yolo", "source": str(path)})


def _lines(dataset: Dataset) -> list[list[str]]:
    bx, img = dataset.boxes, dataset.images
    wh = np.stack([img.width, img.height], 1).astype(np.float64)[bx.image_index]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (bx.xyxy[:, :2] + bx.xyxy[:, 2:]) / 2 / wh
        s = (bx.xyxy[:, 2:] - bx.xyxy[:, :2]) / wh
    keep = ~bx.ignore & np.isfinite(c).all(1) & np.isfinite(s).all(1) & (wh > 0).all(1)
    sel = np.flatnonzero(keep)
    sel = sel[np.argsort(bx.image_index[sel], kind="stable")]
    vals = np.concatenate([c[sel], s[sel]], 1).tolist()
    text = [f"{k} {a:.12g} {b:.12g} {w:.12g} {h:.12g}" for k, (a, b, w, h) in
            zip(bx.class_id[sel].tolist(), vals, strict=True)]
    out: list[list[str]] = [[] for _ in range(dataset.num_images)]
    for i, t in zip(bx.image_index[sel].tolist(), text, strict=True):
        out[i].append(t)
    return out


def _yaml_text(out: Path, splits: Iterable[str], names: tuple[str, ...]) -> str:
    data: dict[str, Any] = {"path": str(out.resolve())}
    splits = list(splits)
    if splits == [UNSET_SPLIT]:
        data.update(train="images", val="images")
    else:
        data.update({s: f"images/{s}" for s in splits if s})
    data["names"] = dict(enumerate(names))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write(dataset: Dataset, out: Path, *, copy_images: bool = True) -> None:
    """Write ``dataset`` in the Ultralytics YOLO layout.

    Args:
        dataset: The dataset.
        out: New output folder (must not exist, or be empty).
        copy_images: Hard-link or copy the images (images whose source file does not
            exist are skipped; their label files are written anyway).

    Raises:
        ConfigError: ``out`` exists and is not empty.
        DatasetError: Two images would be written to the same file, or the dataset mixes
            unsplit images with split ones (YOLO has no place for them).

    Example:
        >>> write(ds, Path("out_yolo"))  # doctest: +SKIP
    """
    keys = destination_keys(dataset)
    splits = split_of(dataset)
    if UNSET_SPLIT in splits and len(splits) > 1:
        raise DatasetError(f"{int((dataset.images.split == UNSET_SPLIT).sum())} images have "
                           "no split while others do; YOLO needs every image in a split. "
                           "Run `detforge data split` first", path=dataset.root)
    per_image = _lines(dataset)
    rel = [f"{s}/{k}" if s else k for s, k in zip(dataset.images.split.tolist(), keys,
                                                   strict=True)]
    labels = [str(Path(r).with_suffix(".txt")) for r in rel]
    if len(set(labels)) != len(labels):
        seen: dict[str, str] = {}
        for r, name in zip(rel, labels, strict=True):
            if seen.setdefault(name, r) != r:
                raise DatasetError(f"images {seen[name]!r} and {r!r} would share the label "
                                   f"file labels/{name}; YOLO pairs labels by file stem, so rename "
                                   "one of them", path=dataset.root)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    with staged_output(out) as stage:
        made: set[Path] = set()
        for r, lines in zip(progress(labels, total=len(rel), desc="yolo labels"), per_image,
                            strict=True):
            lab = stage / "labels" / r
            if lab.parent not in made:
                lab.parent.mkdir(parents=True, exist_ok=True)
                made.add(lab.parent)
            fd = os.open(lab, flags, 0o644)  # a private staging folder: no temp file needed
            try:
                os.write(fd, ("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
            finally:
                os.close(fd)
        (stage / "data.yaml").write_text(_yaml_text(out, splits, dataset.classes.names),
                                         encoding="utf-8")
        if copy_images:
            place_images(dataset, stage, [f"images/{r}" for r in rel])
