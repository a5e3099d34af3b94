"""``active merge``: corrected labels back from a labelling tool, as a new dataset version.

Reads the labels (a CVAT for images 1.1 XML or export zip, a Label Studio JSON export, or a
COCO / YOLO / VOC dataset through :mod:`detforge.data.formats`), checks them against the
parent dataset, and writes parent + new images as a new dataset, recorded in the catalogue
with its parent version and the selection that chose the images.

Rules (each refusal is one line naming the file and the option that accepts the change):

* **Images** are found through the selection folder ``active select`` wrote (by key, then
  by unique file name), else under ``images``, else where a dataset format points. An image
  that cannot be found is an error.
* **Sizes**: the file's size wins; a label file claiming another size is an error (its
  boxes were drawn on another picture).
* **Classes** must be the parent's (``add_classes`` appends new ones, in sorted order).
* **Boxes** go through ``detforge data validate``'s checks: errors (outside the image,
  under a pixel, not finite) refuse the merge; warnings are counted and the boxes kept.
* **Shapes that are not boxes** (polygons, points, ...) and **rotated boxes** are refused
  unless ``allow_lossy``: then rotated boxes are kept as their enclosing box and the other
  shapes dropped, all counted in the result.
* **Tasks nobody annotated** are left out and counted (merge again when they are done).
* **Keys**: a new image whose key is already in the parent is refused (``replace`` swaps the
  parent's labels for the new ones when the pictures are identical; ``prefix`` puts new
  images under a sub-folder).
* New images go to split ``split`` (default: ``train`` when the parent has splits).

Nothing is written until every check passes; the dataset is written atomically by the
format writer, then ``detforge-lineage.json`` beside it, then the catalogue entries (the
parent's too, if it is not catalogued yet). A failure after the write removes the output.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from detforge.active.labels import LabelledSource, read_labelled, unpacked
from detforge.core.atomic import atomic_write_json, link_or_copy
from detforge.core.classes import ClassMap
from detforge.core.errors import ConfigError, DatasetError
from detforge.data.dataset import UNSET_SPLIT, BoxTable, Dataset, ImageTable

__all__ = ["LINEAGE_FILE", "MergeResult", "merge"]

LINEAGE_FILE = "detforge-lineage.json"
"""Written into the new dataset folder: its parent, the labels and the selection."""


@dataclass
class MergeResult:
    """The new dataset version.

    Attributes:
        out: Its folder.
        format: Its format.
        version: Its content version.
        parent_version: The parent's content version.
        added_images: Images added.
        added_boxes: Boxes added.
        replaced: Parent images whose labels were replaced.
        unannotated: Tasks left out because nobody annotated them.
        lossy: Shapes changed or dropped (only with ``allow_lossy``).
        warnings: Validation warnings on the new boxes, by check (boxes kept).
        catalog: Catalogue file written, or None.
        name: Catalogue name.
        lineage: The lineage record.
    """

    out: Path
    format: str
    version: str
    parent_version: str
    added_images: int
    added_boxes: int
    replaced: int = 0
    unannotated: list[str] = field(default_factory=list)
    lossy: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    catalog: Path | None = None
    name: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)


def _selection_files(selection: str | Path | None) -> tuple[dict[str, Any] | None, Path | None]:
    if selection is None:
        return None, None
    from detforge.core.jsonfile import parse_json

    path = Path(selection)
    file = path / "selection.json" if path.is_dir() else path
    try:
        doc = parse_json(file.read_bytes())
    except OSError as exc:
        raise DatasetError("no selection.json here; pass the folder `detforge active select` "
                           "wrote", path=file) from exc
    except ValueError as exc:
        raise DatasetError(f"not valid JSON ({exc})", path=file) from exc
    from detforge.active.selection import SELECTION_FORMAT

    if not isinstance(doc, dict) or doc.get("format") != SELECTION_FORMAT:
        raise DatasetError(f"not a detforge selection (format {SELECTION_FORMAT!r} expected)",
                           path=file)
    return doc, file


def _locate(src: LabelledSource, doc: dict[str, Any] | None, images: Path | None,
            label_path: Path) -> list[Path]:
    """The image file of every labelled row."""
    by_key: dict[str, Path] = {}
    by_name: dict[str, list[Path]] = {}
    for entry in (doc or {}).get("selected", []):
        p = Path(entry["path"])
        by_key[entry["key"]] = p
        by_name.setdefault(p.name, []).append(p)
    ds = src.dataset
    found: list[Path] = []
    missing: list[str] = []
    for i, file in enumerate(ds.images.file.tolist()):
        key = str(file)
        options = [by_key.get(key)]
        named = by_name.get(Path(key).name, [])
        options.append(named[0] if len(named) == 1 else None)
        if images is not None:
            options += [images / key, images / Path(key).name]
        if ds.root is not None:
            options.append(ds.image_path(i))
        hit = next((p for p in options if p is not None and p.is_file()), None)
        if hit is None:
            missing.append(key)
        else:
            found.append(hit)
    if missing:
        raise DatasetError(
            f"{len(missing)} labelled image(s) cannot be found, e.g. {missing[:3]}; pass "
            "--selection SEL (the folder `detforge active select` wrote) or --images DIR",
            path=label_path)
    return found


def _sizes(ds: Dataset, files: list[Path], label_path: Path) -> tuple[list[int], list[int]]:
    from detforge.data.images import image_size

    widths, heights = [], []
    for i, f in enumerate(files):
        w, h = image_size(f)
        lw, lh = int(ds.images.width[i]), int(ds.images.height[i])
        if (lw or lh) and (lw, lh) != (w, h):
            raise DatasetError(
                f"image {ds.images.file[i]!r} is {lw}x{lh} in the labels but {w}x{h} on disk "
                f"({f}); the boxes were drawn on another picture: relabel it on this file",
                path=label_path)
        widths.append(w)
        heights.append(h)
    return widths, heights


def _classes(parent: ClassMap, used: list[str], *, add: bool, label_path: Path) -> ClassMap:
    unknown = sorted(set(used) - set(parent.names))
    if not unknown:
        return parent
    if not add:
        raise DatasetError(
            f"labels {unknown} are not classes of the parent dataset {list(parent.names)}; "
            "fix them in the labelling tool and export again, or pass --add-classes to "
            "append them", path=label_path)
    start = max(parent.source_ids, default=-1) + 1
    return ClassMap((*parent.names, *unknown),
                    (*parent.source_ids, *range(start, start + len(unknown))))


def _check_boxes(new: Dataset, label_path: Path) -> dict[str, int]:
    from detforge.data.validate import validate

    report = validate(new, check_images=False, progress=False)
    errors = [f for f in report.findings if f.severity == "error"]
    if errors:
        first = "; ".join(f"{f.file}: {f.message}" for f in errors[:3])
        raise DatasetError(f"{len(errors)} label error(s), e.g. {first}; fix them in the "
                           "labelling tool and export again", path=label_path)
    counts: Counter[str] = Counter(f.check for f in report.findings if f.severity == "warning"
                                   and f.check not in ("class_imbalance", "unused_class"))
    return dict(sorted(counts.items()))


def _key_conflicts(parent: Dataset, keys: list[str], files: list[Path], *, replace: bool,
                   label_path: Path) -> list[int]:
    """Parent rows to drop (``replace``); refuses any other key already in the parent."""
    from detforge.data.images import image_key
    from detforge.data.version import file_sha256

    seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        if seen.setdefault(k, i) != i:
            raise DatasetError(f"image {k!r} is labelled twice in this export; keep one",
                               path=label_path)
    parent_keys = {image_key(str(f)): i for i, f in enumerate(parent.images.file.tolist())}
    drop: list[int] = []
    for k, f in zip(keys, files, strict=True):
        row = parent_keys.get(image_key(k))
        if row is None:
            continue
        same = parent.image_path(row).is_file() and \
            file_sha256(parent.image_path(row)) == file_sha256(f)
        if same and replace:
            drop.append(row)
        elif same:
            raise DatasetError(f"image {k!r} is already labelled in the parent dataset; pass "
                               "--replace to take the new labels instead", path=label_path)
        else:
            raise DatasetError(f"the parent dataset already has another picture named {k!r}; "
                               "pass --prefix DIR/ to put the new images under a sub-folder",
                               path=label_path)
    return drop


def merge(parent: str | Path, labelled: str | Path, *, out: str | Path,
          selection: str | Path | None = None, images: str | Path | None = None,
          fmt: str | None = None, to: str | None = None, split: str | None = None,
          prefix: str = "", add_classes: bool = False, allow_lossy: bool = False,
          replace: bool = False, catalog: str | Path | None = None, name: str | None = None,
          record: bool = True) -> MergeResult:
    """Write ``parent`` plus the labelled images as a new dataset version.

    Args:
        parent: The labelled dataset the images are added to (any format).
        labelled: The labels: CVAT XML / zip, Label Studio JSON, or a COCO / YOLO / VOC
            dataset (folder, file or zip).
        out: New folder for the merged dataset (must not exist, or be empty).
        selection: The ``active select`` folder (or its ``selection.json``): finds the
            images and is recorded as how they were chosen.
        images: A folder holding the labelled images (when there is no selection).
        fmt: The labels' format (``cvat``, ``labelstudio``, ``coco``, ...); detected if None.
        to: Format of the new dataset (default: the parent's).
        split: Split of the new images (default: ``train`` if the parent has splits).
        prefix: Sub-folder for the new images' keys (e.g. ``round2/``).
        add_classes: Append label names the parent lacks instead of refusing them.
        allow_lossy: Keep rotated boxes as their enclosing box and drop other shapes
            instead of refusing them.
        replace: A new image identical to a parent image replaces its labels.
        catalog: Catalogue file (default: ``$DETFORGE_HOME/catalog.sqlite``).
        name: Catalogue name (default: the parent's catalogue name, else its folder name).
        record: Record both versions in the catalogue.

    Returns:
        What was written.

    Raises:
        ConfigError: ``out`` is not empty, or a bad option.
        DatasetError: A rule above refuses the labels (the message says which and how).

    Example:
        >>> res = merge("ds", "export.json", out="ds_v2", selection="round1")  # doctest: +SKIP
    """
    from detforge.data.formats import read_dataset, write_dataset
    from detforge.data.version import dataset_digest, dataset_version, file_sha256

    out, label_path = Path(out), Path(labelled)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: output exists and is not an empty folder; choose a new "
                          "folder for the merged dataset")
    base = read_dataset(parent)
    to_fmt = to or str(base.info.get("format"))
    doc, sel_file = _selection_files(selection)
    with unpacked(label_path) as where:
        src = read_labelled(where, fmt)
        if src.lossy and not allow_lossy:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(src.lossy.items()))
            raise DatasetError(f"the labels hold shapes that are not axis-aligned boxes ({kinds});"
                               " pass --allow-lossy to keep rotated boxes as their enclosing box"
                               " and drop the other shapes", path=label_path)
        new = src.dataset
        if new.num_images == 0:
            raise DatasetError(f"nothing is annotated yet ({len(src.unannotated)} task(s) "
                               "without annotations); label them and export again",
                               path=label_path)
        files = _locate(src, doc, None if images is None else Path(images), label_path)
        widths, heights = _sizes(new, files, label_path)
        classes = _classes(base.classes, [new.classes.names[c] for c in
                                          np.unique(new.boxes.class_id).tolist()],
                           add=add_classes, label_path=label_path)
        remap = np.array([classes.names.index(c) if c in classes.names else -1
                          for c in new.classes.names], np.int32)
        keys = [prefix + str(k) for k in new.images.file.tolist()]
        new_split = split if split is not None else ("train" if base.split_names() else
                                                     UNSET_SPLIT)
        boxes = new.boxes.take(np.arange(len(new.boxes)))
        boxes.class_id = remap[boxes.class_id] if len(boxes) else boxes.class_id
        added = Dataset(classes, ImageTable.build(keys, widths, heights,
                                                  split=[new_split] * len(keys)), boxes)
        warnings = _check_boxes(added, label_path)
        drop = _key_conflicts(base, keys, files, replace=replace, label_path=label_path)
        kept = base.subset(np.setdiff1d(np.arange(base.num_images), drop))
        merged = _combine(kept, added, classes)
        parent_digest = dataset_digest(base)
        stage = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None,
                                      prefix=f".{out.name}.", suffix=".merge"))
        try:
            for i in range(kept.num_images):
                if kept.image_path(i).is_file():
                    link_or_copy(kept.image_path(i), stage / str(kept.images.file[i]))
            for k, f in zip(keys, files, strict=True):
                link_or_copy(f, stage / k)
            merged.root = stage
            write_dataset(merged, out, to_fmt)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    try:
        version = dataset_version(read_dataset(out, to_fmt))
        lineage = {
            "format": "detforge-lineage/1",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "version": version,
            "parent": {"path": str(Path(parent).resolve()), "version": parent_digest[:16],
                       "format": str(base.info.get("format"))},
            "labels": {"path": str(label_path.resolve()), "tool": src.tool,
                       "sha256": file_sha256(label_path) if label_path.is_file() else None},
            "selection": None if doc is None or sel_file is None else {
                "path": str(sel_file.resolve()), "sha256": file_sha256(sel_file),
                "strategy": doc.get("strategy"), "budget": doc.get("budget"),
                "model": doc.get("model"), "created": doc.get("created")},
            "added": {"images": len(keys), "boxes": len(boxes), "split": new_split,
                      "replaced": len(drop)},
            "left_out": {"unannotated": len(src.unannotated), "lossy": dict(src.lossy)}}
        atomic_write_json(out / LINEAGE_FILE, lineage)
        result = MergeResult(out, to_fmt, version, parent_digest[:16], len(keys), len(boxes),
                             len(drop), src.unannotated, dict(src.lossy), warnings,
                             lineage=lineage)
        if record:
            _record(result, parent, parent_digest, catalog, name)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return result


def _combine(base: Dataset, added: Dataset, classes: ClassMap) -> Dataset:
    """``base`` then ``added`` in one dataset; base image ids kept, new ones after them.

    Per-box extra columns of ``base`` (KITTI's 3-D fields) are kept, filled for the new
    boxes with NaN (floats), -1 (integers) or "" (text).
    """
    shifted = added.boxes.take(np.arange(len(added.boxes)))
    shifted.image_index = (shifted.image_index + base.num_images).astype(np.int32)
    for key, col in base.boxes.extra.items():
        fill: Any = np.nan if col.dtype.kind == "f" else -1 if col.dtype.kind in "iu" else ""
        shifted.extra[key] = np.full((len(shifted), *col.shape[1:]), fill, dtype=col.dtype)
    start = int(base.images.id.max()) + 1 if base.num_images else 0
    images = ImageTable.build(
        np.concatenate([base.images.file, added.images.file]).tolist(),
        np.concatenate([base.images.width, added.images.width]),
        np.concatenate([base.images.height, added.images.height]),
        id=np.concatenate([base.images.id, np.arange(start, start + added.num_images)]),
        split=np.concatenate([base.images.split, added.images.split]).tolist(),
        group=np.concatenate([base.images.group, added.images.group]).tolist())
    return Dataset(classes, images, BoxTable.concat([base.boxes, shifted]),
                   info={k: v for k, v in base.info.items() if k in ("name", "licence",
                                                                     "source")})


def _record(result: MergeResult, parent: str | Path, parent_digest: str,
            catalog: str | Path | None, name: str | None) -> None:
    from detforge.data.catalog import Catalog

    cat = Catalog(catalog)
    known = [e for e in cat.list() if e.digest == parent_digest]
    name = name or (known[-1].name if known else Path(parent).resolve().name)
    if not any(e.name == name for e in known):
        cat.add(parent, name=name)
    cat.add(result.out, name=name, fmt=result.format, parent=result.parent_version,
            selection={"labels": result.lineage["labels"],
                       "selection": result.lineage["selection"],
                       "added": result.lineage["added"]})
    result.catalog, result.name = cat.path, name
