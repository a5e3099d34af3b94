"""The YOLO layouts read (auto-detected), each turned into (image, label file, split) rows.

1. **Ultralytics**: ``data.yaml`` (or ``data.yml``, ``dataset.yaml``) with ``path``,
   ``train`` / ``val`` / ``test`` (a folder of images, a ``.txt`` list of image paths, or
   a list of those) and ``names``. Label of an image: its last ``images`` folder becomes
   ``labels``, the suffix ``.txt`` (Ultralytics' ``img2label_paths``).
2. **Darknet / CVAT "YOLO 1.1"**: ``obj.data`` (``classes = N``, ``train = data/train.txt``,
   ``valid = ...``, ``names = data/obj.names``), ``obj.names`` (one class per line) and the
   list files; a leading ``data/`` in those paths is the Darknet working folder and is
   dropped (as Datumaro's ``localize_path`` does). Label of an image: the same path with
   ``.txt`` (Darknet keeps them side by side), or the Ultralytics rule when that file
   exists.
3. **classes.txt**: ``classes.txt`` (one class per line) and no ``data.yaml``: images under
   ``images/`` (split sub-folders ``train``, ``val``/``valid``, ``test`` when present) with
   labels by the Ultralytics rule, or images and same-named ``.txt`` files side by side
   (LabelImg's YOLO output).

Every folder and list file a YAML or ``obj.data`` names must lie inside the dataset
folder, and so must every image a list file names, unless ``allow_outside_root`` is
given: ``val: /`` would otherwise walk the whole disk. The ``path:`` key may point
elsewhere only with that option; without it a ``path:`` outside the folder is taken for
a dataset that was moved or copied, and the folder itself is the root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.data.dataset import UNSET_SPLIT
from detforge.data.formats._coco_parse import brief
from detforge.data.formats._common import (
    check_class_names,
    exists_dir,
    exists_file,
    normalise_split,
    read_text,
)
from detforge.data.formats._yaml import load_yaml
from detforge.data.images import list_images

__all__ = ["SPLIT_KEYS", "Layout", "find_layout", "has_layout", "label_path"]

SPLIT_KEYS = ("train", "val", "test")
_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
_DARKNET_RESERVED = {"classes", "names", "backup", "eval", "results", "top", "map"}
_OUTSIDE = "pass --allow-outside-root to read it anyway"


@dataclass
class Layout:
    """A YOLO dataset found on disk.

    Attributes:
        kind: ``ultralytics``, ``darknet`` or ``classes.txt``.
        root: Folder image and label paths are made relative to.
        classes: The class list.
        rows: ``(image, label file, split)``; the label file may not exist.
        info: Facts for ``Dataset.info`` (e.g. ``val_split``).
    """

    kind: str
    root: Path
    classes: ClassMap
    rows: list[tuple[Path, Path, str]]
    info: dict[str, Any] = field(default_factory=dict)


def label_path(image: Path) -> Path:
    """The label file of ``image`` by the Ultralytics rule (last ``images`` -> ``labels``)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _image_of(label: Path) -> Path:
    parts = list(label.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "labels":
            parts[i] = "images"
            break
    return Path(*parts).with_suffix(".jpg")


def _inside(p: Path, root: Path) -> bool:
    p, root = Path(os.path.normpath(p)), Path(os.path.normpath(root))
    return p == root or root in p.parents


def _yaml_path(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    return next((path / n for n in _YAML_NAMES if (path / n).is_file()), None)


def has_layout(path: Path) -> bool:
    """True for a data.yaml, an ``obj.data``/``obj.names`` Darknet folder or a folder with
    ``classes.txt``."""
    path = Path(path)
    if _yaml_path(path) is not None:
        return True
    return path.is_dir() and any((path / n).is_file() for n in ("obj.data", "obj.names",
                                                               "classes.txt"))


def _class_list(path: Path) -> ClassMap:
    names = [s.strip() for s in read_text(path).splitlines()]
    names = [s for s in names if s]
    if not names:
        raise DatasetError("no class names; write one class name per line", path=path)
    check_class_names(names, path)
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})[:5]
        raise DatasetError(f"class names repeat: {dupes}; list each class once", path=path)
    return ClassMap.from_names(names)


def _names(obj: dict[str, Any], path: Path) -> ClassMap:
    names = obj.get("names")
    if isinstance(names, dict):
        keys = list(names)
        if any(isinstance(k, bool) for k in keys) or \
                sorted(keys, key=str) != sorted(range(len(keys)), key=str):
            raise DatasetError(f"names keys must be the class ids 0..{len(keys) - 1}, got "
                               f"{brief(keys)}", path=path)
        names = [names[i] for i in range(len(keys))]
    if not isinstance(names, list) or not names:
        raise DatasetError("names must be a non-empty list of class names or {id: name}",
                           path=path)
    if any(isinstance(n, (list, dict)) or n is None for n in names):
        bad = next(n for n in names if isinstance(n, (list, dict)) or n is None)
        raise DatasetError(f"class name {brief(bad)} is not a name; write each class name "
                           "as text", path=path)
    text = [str(n) for n in names]
    check_class_names(text, path)
    if len(set(text)) != len(text):
        dupes = sorted({n for n in text if text.count(n) > 1})[:5]
        raise DatasetError(f"class names repeat: {brief(dupes)}; give each class a unique "
                           "name", path=path)
    nc = obj.get("nc")
    if nc is not None and (isinstance(nc, bool) or nc != len(text)):
        raise DatasetError(f"nc is {brief(nc)} but names has {len(text)} entries; make them "
                           "agree", path=path)
    return ClassMap.from_names(text)


def _root(obj: dict[str, Any], yml: Path, folder: Path, allow_outside: bool,
          info: dict[str, Any]) -> Path:
    raw = obj.get("path")
    if raw is None or raw == "":
        return folder
    if not isinstance(raw, str) or "\0" in raw:
        raise DatasetError(f"path must be a folder name, got {brief(raw)}", path=yml)
    p = Path(raw) if Path(raw).is_absolute() else yml.parent / raw
    if not (_inside(p, folder) or allow_outside):
        info["ignored_path"] = raw  # written for another place: a moved or copied dataset
        return folder
    return p if exists_dir(p) else folder  # a moved dataset: fall back to the yaml's folder


def _checked(p: Path, root: Path, key: str, item: str, yml: Path, allow: bool) -> Path:
    if not allow and not _inside(p, root):
        raise DatasetError(f"{key}: {brief(item)} lies outside the dataset folder {root}; "
                           f"move it inside, or {_OUTSIDE}", path=yml)
    return Path(os.path.normpath(p))


def _list_file(p: Path, root: Path, key: str, yml: Path, allow: bool,
               localize: bool = False) -> list[Path]:
    images = []
    for n, raw in enumerate(read_text(p).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\0" in line:
            raise DatasetError("image path holds a NUL character", path=p, line=n)
        line = line.replace("\\", "/")
        if localize and line.startswith("data/"):
            line = line[len("data/"):]
        q = Path(line)
        base = root if localize else p.parent
        q = q if q.is_absolute() else base / q
        if not allow and not _inside(q, root):
            raise DatasetError(f"image {brief(line)} lies outside the dataset folder {root}; "
                               f"{_OUTSIDE}", path=p, line=n)
        images.append(Path(os.path.normpath(q)))
    return images


def _sources(value: Any, root: Path, key: str, yml: Path, allow: bool,
             ignored: str | None) -> list[Path]:
    items = value if isinstance(value, list) else [value]
    if any(not isinstance(v, str) or "\0" in v for v in items):
        raise DatasetError(f"{key} must be a path or a list of paths, got {brief(value)}",
                           path=yml)
    images: list[Path] = []
    for item in items:
        p = _checked(Path(item) if Path(item).is_absolute() else root / item, root, key, item,
                     yml, allow)
        if exists_dir(p):
            images.extend(list_images(p))
        elif exists_file(p) and p.suffix.lower() == ".txt":
            images.extend(_list_file(p, root, key, yml, allow))
        elif not exists_file(p):
            hint = "" if ignored is None else \
                f" (the YAML's path: {brief(ignored)} lies outside the folder; {_OUTSIDE})"
            raise DatasetError(f"{key}: {brief(item)} does not exist under {root}; fix the "
                               f"path{hint}", path=yml)
    return images


def _label_dirs(value: Any, root: Path) -> set[Path]:
    items = value if isinstance(value, list) else [value]
    dirs = {root / v for v in items if isinstance(v, str) and exists_dir(root / v)}
    return {label_path(d / "x").parent for d in dirs}


def _ultralytics(yml: Path, folder: Path, allow: bool) -> Layout:
    obj = load_yaml(yml)
    if not isinstance(obj, dict):
        raise DatasetError("expected a mapping with path, train, val, test and names",
                           path=yml)
    classes = _names(obj, yml)
    info: dict[str, Any] = {}
    root = _root(obj, yml, folder, allow, info)
    ignored = info.get("ignored_path")
    per_split = {k: _sources(obj[k], root, k, yml, allow, ignored) for k in SPLIT_KEYS
                 if obj.get(k)}
    if not per_split:
        raise DatasetError("no train, val or test entry; add e.g. 'train: images/train'",
                           path=yml)
    label_dirs = {k: _label_dirs(obj[k], root) for k in per_split}
    sets = [sorted(v) for v in per_split.values()]
    if len(sets) > 1 and all(s == sets[0] for s in sets):
        # one image set under every key: unsplit (``train: images``), or the training
        # images validated on themselves (``train: images/train``, as the writer does)
        named = obj.get("train")
        split = "train" if isinstance(named, str) and \
            normalise_split(Path(named).name) == "train" else UNSET_SPLIT
        if "val" in per_split:
            info["val_split"] = "train"
        per_split = {split: sets[0]}
        label_dirs = {split: set().union(*label_dirs.values())}
    seen: set[Path] = set()
    rows: list[tuple[Path, Path, str]] = []
    for split, imgs in per_split.items():
        for im in imgs:
            if im not in seen:
                seen.add(im)
                rows.append((im, label_path(im), split))
    claimed = {lab for _, lab, _ in rows}
    for split in per_split:  # label files without images, in each split's labels folder
        for lab_dir in sorted(d for d in label_dirs[split] if d.is_dir()):
            for lab in sorted(lab_dir.rglob("*.txt")):
                if lab not in claimed:
                    claimed.add(lab)
                    rows.append((_image_of(lab), lab, split))
    return Layout("ultralytics", root, classes, rows, info)


def _darknet_config(path: Path) -> dict[str, str]:
    config: dict[str, str] = {}
    for line in read_text(path).splitlines():
        m = re.match(r"^\s*(\w+)\s*=\s*(.+?)\s*$", line)
        if m:
            config[m.group(1)] = m.group(2)
    return config


def _darknet(folder: Path, allow: bool) -> Layout:
    data = folder / "obj.data"
    config = _darknet_config(data) if data.is_file() else {}
    names_rel = config.get("names", "obj.names").replace("\\", "/").removeprefix("data/")
    names_path = _checked(folder / names_rel, folder, "names", names_rel, data, allow)
    classes = _class_list(names_path)
    declared = config.get("classes")
    if declared is not None and declared.strip() != str(len(classes)):
        raise DatasetError(f"classes = {brief(declared)} but {names_path.name} lists "
                           f"{len(classes)} names; make them agree", path=data)
    rows: list[tuple[Path, Path, str]] = []
    seen: set[Path] = set()
    for key, value in config.items():
        if key in _DARKNET_RESERVED or not value.lower().endswith(".txt"):
            continue
        rel = value.replace("\\", "/").removeprefix("data/")
        lst = _checked(folder / rel, folder, key, value, data, allow)
        if not lst.is_file():
            raise DatasetError(f"{key} = {brief(value)}: list file not found; fix the path",
                               path=data)
        split = normalise_split(key)
        for im in _list_file(lst, folder, key, data, allow, localize=True):
            if im not in seen:
                seen.add(im)
                swapped = label_path(im)
                rows.append((im, swapped if exists_file(swapped) else im.with_suffix(".txt"),
                             split))
    if not config:  # obj.names without obj.data: the images beside their labels
        rows = _side_by_side(folder, names_path)
    return Layout("darknet", folder, classes, rows)


def _side_by_side(folder: Path, *skip: Path) -> list[tuple[Path, Path, str]]:
    rows = [(im, im.with_suffix(".txt"), UNSET_SPLIT) for im in list_images(folder)]
    labelled = {lab for _, lab, _ in rows}
    for lab in sorted(folder.rglob("*.txt")):
        if lab not in labelled and lab not in skip:
            rows.append((lab.with_suffix(".jpg"), lab, UNSET_SPLIT))
    return rows


def _classes_txt(folder: Path) -> Layout:
    classes = _class_list(folder / "classes.txt")
    images = folder / "images"
    rows: list[tuple[Path, Path, str]] = []
    if images.is_dir():
        subs = {p.name: normalise_split(p.name) for p in images.iterdir() if p.is_dir()}
        split_dirs = {n: s for n, s in subs.items() if s in SPLIT_KEYS}
        for im in list_images(images):
            first = im.relative_to(images).parts[0]
            split = split_dirs.get(first, UNSET_SPLIT) if len(im.relative_to(images).parts) > 1 \
                else UNSET_SPLIT
            rows.append((im, label_path(im), split))
        claimed = {lab for _, lab, _ in rows}
        labels = folder / "labels"
        for lab in sorted(labels.rglob("*.txt")) if labels.is_dir() else []:
            if lab not in claimed:
                rel = lab.relative_to(labels).parts
                split = split_dirs.get(rel[0], UNSET_SPLIT) if len(rel) > 1 else UNSET_SPLIT
                rows.append((_image_of(lab), lab, split))
    else:
        rows = _side_by_side(folder, folder / "classes.txt")
    return Layout("classes.txt", folder, classes, rows)


def find_layout(path: Path, *, allow_outside_root: bool = False) -> Layout:
    """The YOLO layout at ``path`` (see the module docstring).

    Args:
        path: Dataset folder, or its ``data.yaml`` / ``obj.data``.
        allow_outside_root: Let the dataset name folders and images outside its folder.

    Returns:
        The layout.

    Raises:
        DatasetError: No layout found, or a malformed YAML, ``obj.data`` or list file.
    """
    path = Path(path)
    yml = _yaml_path(path)
    if yml is not None:
        return _ultralytics(yml, yml.parent, allow_outside_root)
    folder = path.parent if path.is_file() else path
    if (folder / "obj.data").is_file() or (folder / "obj.names").is_file():
        return _darknet(folder, allow_outside_root)
    if (folder / "classes.txt").is_file():
        return _classes_txt(folder)
    raise DatasetError("no data.yaml, obj.data/obj.names or classes.txt found; a YOLO "
                       "dataset needs one of them to name its classes", path=path)

