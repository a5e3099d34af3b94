"""Writing the Ultralytics YOLO layout, in a form ``check_det_dataset`` accepts.

Output: ``data.yaml``, ``images/<split>/<key>`` and ``labels/<split>/<key stem>.txt``
(one file per image, empty for an empty image), coordinates with 12 significant digits,
which round-trips pixel boxes far below 1e-6 px. ``path`` is the absolute output folder
(what Ultralytics needs); the reader falls back to the YAML's folder when ``path`` no
longer exists, so a moved dataset still reads.

Splits: Ultralytics requires ``train`` and ``val`` keys (``check_det_dataset``: "'train'
and 'val' are required in all data YAMLs"), and only ``train``, ``val`` and ``test`` mean
anything to it. So the writer refuses, naming the option that resolves it:

* a split of another name (VOC's ``trainval``, a CVAT subset): ``--split-map trainval=train``;
* no ``val`` split (train only, train + test, or an unsplit dataset, which is written as
  ``train: images``): ``--val-split train`` points ``val:`` at the training images,
  ``--split-map test=val`` makes ``test`` the validation split;
* no ``train`` split: ``--split-map val=train``;
* images without a split beside split ones: ``detforge data split`` first.

YOLO holds no flags, crowd or ignore regions: those are losses (see
:mod:`detforge.data.formats.policy`). An image of unknown size (0 x 0) has its size read
from the image file; when there is none, its boxes are written from the normalised
values a YOLO source gave (``extra["yolo_norm"]``), else they are the ``unsized`` loss.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from detforge.core.errors import DatasetError
from detforge.data.dataset import UNSET_SPLIT, Dataset
from detforge.data.formats._common import (
    destination_keys,
    known_sizes,
    place_images,
    progress,
    split_of,
    staged_output,
)
from detforge.data.formats._plan import Holds, plan_boxes
from detforge.data.formats.policy import LossLedger, WriteOptions, WriteSummary

__all__ = ["write"]

SPLIT_KEYS = ("train", "val", "test")
HOLDS = Holds(normalised=True)


def _val_split(dataset: Dataset, options: WriteOptions) -> str | None:
    value = options.val_split or dataset.info.get("val_split")
    return None if value is None else str(value)


def check_splits(dataset: Dataset, val_split: str | None) -> tuple[list[str], list[str]]:
    """The splits to write, and why Ultralytics would reject them (module docstring):
    each problem with the option that solves it; none when the splits are fine."""
    splits = split_of(dataset)
    named = [s for s in splits if s]
    problems = []
    odd = [s for s in named if s not in SPLIT_KEYS]
    if odd:
        problems.append(f"split {odd[0]!r} has no data.yaml key (train, val, test); rename "
                        f"it with --split-map {odd[0]}=train (or =val, =test)")
    if UNSET_SPLIT in splits and named:
        n = int((dataset.images.split == UNSET_SPLIT).sum())
        problems.append(f"{n} images have no split while others do; run `detforge data "
                        "split`, or give them one with --split-map none=train")
    present = set(named) | ({"train"} if splits == [UNSET_SPLIT] else set())
    if "train" not in present and not odd:
        problems.append(f"there is no train split; map one with --split-map "
                        f"{named[0] if named else 'val'}=train")
    if "val" not in present:
        if val_split is None:
            problems.append("there is no val split, which Ultralytics needs; pass --val-split "
                            "train to validate on the training images, map one with "
                            "--split-map test=val, or run `detforge data split`")
        elif val_split not in present:
            problems.append(f"--val-split {val_split}: the dataset has no such split "
                            f"(it has {sorted(present)})")
    if problems:
        problems[0] = "Ultralytics would reject its data.yaml: " + problems[0]
    return splits, problems


def _lines(dataset: Dataset, keep: NDArray[np.bool_], ledger: LossLedger) -> list[list[str]]:
    bx = dataset.boxes
    has_box = np.zeros(dataset.num_images, bool)
    has_box[bx.image_index[keep]] = True
    width, height = known_sizes(dataset, has_box)
    wh = np.stack([width, height], 1).astype(np.float64)[bx.image_index]
    sized = (wh > 0).all(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = np.concatenate([(bx.xyxy[:, :2] + bx.xyxy[:, 2:]) / 2 / wh,
                               (bx.xyxy[:, 2:] - bx.xyxy[:, :2]) / wh], 1)
    ok = sized & np.isfinite(vals).all(1)
    norm = bx.extra.get("yolo_norm")
    if norm is not None:  # as the YOLO source wrote them (its image size is unknown)
        norm = np.asarray(norm, np.float64).reshape(-1, 4)
        use = ~ok & np.isfinite(norm).all(1)
        vals[use] = norm[use]
        ok |= use
    unsized = keep & ~ok
    ledger.skip("unsized", int(unsized.sum()),
                dataset.box_ref(int(np.argmax(unsized))) if unsized.any() else "")
    sel = np.flatnonzero(keep & ok)
    sel = sel[np.argsort(bx.image_index[sel], kind="stable")]
    text = [f"{k} {a:.12g} {b:.12g} {w:.12g} {h:.12g}" for k, (a, b, w, h) in
            zip(bx.class_id[sel].tolist(), vals[sel].tolist(), strict=True)]
    out: list[list[str]] = [[] for _ in range(dataset.num_images)]
    for i, t in zip(bx.image_index[sel].tolist(), text, strict=True):
        out[i].append(t)
    return out


def _yaml_text(out: Path, splits: list[str], names: tuple[str, ...],
               val_split: str | None) -> str:
    data: dict[str, Any] = {"path": str(out.resolve())}
    if splits == [UNSET_SPLIT]:  # check_splits let it through: val_split is "train"
        data.update(train="images", val="images")
    else:
        for s in SPLIT_KEYS:
            if s in splits:
                data[s] = f"images/{s}"
            elif s == "val":
                data[s] = f"images/{val_split}"
    data["names"] = dict(enumerate(names))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write(dataset: Dataset, out: Path, *, copy_images: bool = True,
          options: WriteOptions | None = None) -> WriteSummary:
    """Write ``dataset`` in the Ultralytics YOLO layout.

    Args:
        dataset: The dataset.
        out: New output folder (must not exist, or be empty).
        copy_images: Hard-link or copy the images (images whose source file does not
            exist are skipped; their label files are written anyway).
        options: Losses allowed and the ``val`` split (module docstring).

    Returns:
        What was written and left out.

    Raises:
        ConfigError: ``out`` exists and is not empty.
        DatasetError: The splits cannot make a data.yaml Ultralytics accepts, two images
            would share a file, or data would be lost that ``options`` does not allow.

    Example:
        >>> write(ds, Path("out_yolo"), options=WriteOptions(val_split="train"))  # doctest: +SKIP
    """
    options = options or WriteOptions()
    keys = destination_keys(dataset)
    val_split = _val_split(dataset, options)
    splits, problems = check_splits(dataset, val_split)
    keep, ledger = plan_boxes(dataset, "yolo", HOLDS, options)
    per_image = _lines(dataset, keep, ledger)
    ledger.check(problems)
    rel = [f"{s}/{k}" if s else k for s, k in zip(dataset.images.split.tolist(), keys,
                                                   strict=True)]
    labels = [str(Path(r).with_suffix(".txt")) for r in rel]
    if len(set(labels)) != len(labels):
        seen: dict[str, str] = {}
        for r, name in zip(rel, labels, strict=True):
            if seen.setdefault(name, r) != r:
                raise DatasetError(f"images {seen[name]!r} and {r!r} would share the label "
                                   f"file labels/{name}; YOLO pairs labels by file stem, so "
                                   "rename one of them", path=dataset.root)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    summary = WriteSummary("yolo", images=dataset.num_images,
                           boxes=sum(len(lines) for lines in per_image))
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
        for split in splits:  # data.yaml names them even when no image file exists
            (stage / "images" / split).mkdir(parents=True, exist_ok=True)
        (stage / "data.yaml").write_text(
            _yaml_text(out, splits, dataset.classes.names, val_split), encoding="utf-8")
        if copy_images:
            summary.image_files = place_images(dataset, stage, [f"images/{r}" for r in rel])
    return ledger.summary(summary)
