"""``fix``: write a repaired copy of a dataset and a log of every change.

What is repaired, from the report's findings:

* boxes partly outside the image are clipped to it;
* boxes with NaN/inf coordinates, unknown class ids, under 1 px, (almost) wholly outside
  the image, or duplicating another box are dropped;
* missing, unreadable and truncated images are dropped with their boxes, and so is the
  copy of a leaked image that is not in the representative's split;
* an image whose labelled size differs from its file gets the file's size, its boxes
  rescaled when the aspect ratio matches (the image was resized) and clipped otherwise.

Duplicate images within one split, imbalance, empty images and size outliers are left
alone: they need a person's judgement. The source dataset is never written to.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from detforge.core.atomic import atomic_write_text, stage_dir
from detforge.core.errors import ConfigError
from detforge.data.dataset import Dataset
from detforge.data.formats.policy import WriteOptions, WriteSummary
from detforge.data.validate.annotations import MIN_BOX_SIZE
from detforge.data.validate.report import ValidationReport, box_location

__all__ = ["FIX_LOG", "FixResult", "fix"]

FIX_LOG = "fix_log.jsonl"
"""Name of the change log written into the output folder."""

DROP_BOX_CHECKS = frozenset({"box_not_finite", "unknown_class", "box_too_small",
                             "box_outside_image", "duplicate_box"})
DROP_IMAGE_CHECKS = frozenset({"missing_image", "unreadable_image", "truncated_image",
                               "split_leak"})
_ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class FixResult:
    """What :func:`fix` wrote.

    Attributes:
        out: The folder holding the repaired copy.
        log: The change log (JSON Lines: action, check, file, line, before, after).
        format: The format the copy was written in.
        dataset: The repaired dataset, as written.
        changes: Number of changes per action (``clip_box``, ``drop_box``, ...).
        written: The writer's summary (what was written and what was left out).
    """

    out: Path
    log: Path
    format: str
    dataset: Dataset
    changes: dict[str, int]
    written: WriteSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"out": str(self.out), "log": str(self.log), "format": self.format,
                "images": self.dataset.num_images, "boxes": self.dataset.num_boxes,
                "changes": self.changes,
                "written": None if self.written is None else self.written.to_dict()}


def _box(values: Any) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values).tolist()]


def _check_out(dataset: Dataset, out: Path) -> None:
    target = out.resolve()
    sources = [Path(p).resolve() for p in (dataset.root, dataset.info.get("path")) if p]
    for src in sources:
        if target == src or target in src.parents or src in target.parents:
            raise ConfigError(
                f"fix output folder {out} overlaps the source dataset {src}; the source is never "
                "modified. Choose a folder outside the dataset, e.g. "
                f"{src.parent / (src.name + '_fixed')}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"fix output folder {out} already exists and is not an empty folder; "
                          "choose a new folder or delete it first")


def fix(dataset: Dataset, report: ValidationReport, out: str | Path,
        fmt: str | None = None, *, options: WriteOptions | None = None) -> FixResult:
    """Write a repaired copy of ``dataset`` to ``out`` with ``fix_log.jsonl`` beside it.

    Args:
        dataset: The dataset that was validated (never modified).
        report: Its report from :func:`~detforge.data.validate.validate`.
        out: New or empty folder for the copy; must not overlap the source.
        fmt: Output format; default: the format the dataset was read from
            (``dataset.info["format"]``).
        options: Losses the writer may incur when ``fmt`` cannot hold everything (default
            none; see :mod:`detforge.data.formats.policy`).

    Returns:
        Where the copy and the log went, and the number of changes per action.

    Raises:
        ConfigError: No format given or known, or ``out`` overlaps the source or is not
            empty.

    Example:
        >>> result = fix(ds, validate(ds), "fixed", "yolo")  # doctest: +SKIP
        >>> result.changes  # doctest: +SKIP
        {'drop_box': 3, 'clip_box': 1}
    """
    out = Path(out)
    fmt = fmt or dataset.info.get("format")
    if not fmt:
        raise ConfigError("the dataset has no source format in info['format']; pass the "
                          "output format (e.g. fmt='coco' or --to coco)")
    _check_out(dataset, out)
    fixed, log = repair(dataset, report)
    from detforge.data.formats import write_dataset

    # The copy and its log appear together or not at all: both are written into a staging
    # folder beside ``out``, which is then renamed into place.
    stage = stage_dir(out)
    try:
        staged = stage / "dataset"
        written = write_dataset(fixed, staged, fmt, options=options)
        atomic_write_text(staged / FIX_LOG, "".join(json.dumps(e) + "\n" for e in log))
        if out.is_dir():
            out.rmdir()  # _check_out: empty
        os.replace(staged, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    changes = dict(sorted(Counter(e["action"] for e in log).items()))
    return FixResult(out, out / FIX_LOG, str(fmt), fixed, changes, written)


def repair(dataset: Dataset, report: ValidationReport,
           ) -> tuple[Dataset, list[dict[str, Any]]]:
    """The repaired dataset (in memory) and its change log; see the module docstring.

    Args:
        dataset: The dataset (never modified).
        report: Its validation report.

    Returns:
        ``(fixed, log)``; each log entry has ``action, check, file, line, before, after``.
    """
    b = dataset.boxes
    xyxy = b.xyxy.copy()
    width = dataset.images.width.copy()
    height = dataset.images.height.copy()
    keep_box = np.ones(len(b), bool)
    keep_image = np.ones(dataset.num_images, bool)
    log: list[dict[str, Any]] = []

    def entry(action: str, check: str, file: str, line: int | None, before: Any,
              after: Any) -> None:
        log.append({"action": action, "check": check, "file": file, "line": line,
                    "before": before, "after": after})

    for f in report.findings:
        i, img = f.box_index, f.image_index
        if f.check in DROP_BOX_CHECKS and i is not None and keep_box[i]:
            keep_box[i] = False
            entry("drop_box", f.check, f.file, f.line, _box(xyxy[i]), None)
        elif f.check == "box_partly_outside" and i is not None and keep_box[i]:
            w, h = int(width[b.image_index[i]]), int(height[b.image_index[i]])
            before = _box(xyxy[i])
            xyxy[i, 0::2] = np.clip(xyxy[i, 0::2], 0, w)
            xyxy[i, 1::2] = np.clip(xyxy[i, 1::2], 0, h)
            entry("clip_box", f.check, f.file, f.line, before, _box(xyxy[i]))
        elif f.check in DROP_IMAGE_CHECKS and img is not None and keep_image[img]:
            keep_image[img] = False
            entry("drop_image", f.check, f.file, f.line, str(dataset.images.file[img]), None)
        elif f.check == "size_mismatch" and img is not None and f.value is not None:
            _resize(dataset, img, f.value, xyxy, width, height, entry, f.file)
    _drop_degenerate(dataset, xyxy, width, height, keep_box & keep_image[b.image_index],
                     keep_box, entry)
    images = replace(dataset.images, width=width, height=height)
    boxes = b.take(keep_box)
    boxes.xyxy = xyxy[keep_box]
    fixed = replace(dataset, images=images, boxes=boxes, info=dict(dataset.info))
    return fixed.subset(keep_image), log


def _resize(dataset: Dataset, img: int, size: tuple[int, int], xyxy: Any, width: Any,
            height: Any, entry: Any, file: str) -> None:
    old_w, old_h = int(width[img]), int(height[img])
    new_w, new_h = int(size[0]), int(size[1])
    rows = np.flatnonzero(dataset.boxes.image_index == img)
    same_aspect = abs(new_w / new_h - old_w / old_h) <= _ASPECT_TOLERANCE * (old_w / old_h)
    if same_aspect and len(rows):
        xyxy[rows, 0::2] *= new_w / old_w
        xyxy[rows, 1::2] *= new_h / old_h
    width[img], height[img] = new_w, new_h
    entry("set_size", "size_mismatch", file, None, [old_w, old_h], [new_w, new_h])
    if same_aspect and len(rows):
        entry("rescale_boxes", "size_mismatch", file, None, len(rows),
              [new_w / old_w, new_h / old_h])


def _drop_degenerate(dataset: Dataset, xyxy: Any, width: Any, height: Any, live: Any,
                     keep_box: Any, entry: Any) -> None:
    """Clip surviving boxes to their (final) image size; drop any that end up under 1 px."""
    idx = dataset.boxes.image_index
    w, h = width[idx].astype(np.float64), height[idx].astype(np.float64)
    known = live & (w > 0) & (h > 0)
    clipped = xyxy.copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, w[:, None])
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, h[:, None])
    changed = known & (clipped != xyxy).any(axis=1)
    small = known & (((clipped[:, 2] - clipped[:, 0]) < MIN_BOX_SIZE)
                     | ((clipped[:, 3] - clipped[:, 1]) < MIN_BOX_SIZE))
    for i in np.flatnonzero(changed | small).tolist():
        file, line = box_location(dataset, i)
        if small[i]:
            keep_box[i] = False
            entry("drop_box", "box_outside_image", file, line, _box(xyxy[i]), None)
        else:
            entry("clip_box", "box_partly_outside", file, line, _box(xyxy[i]),
                  _box(clipped[i]))
            xyxy[i] = clipped[i]
