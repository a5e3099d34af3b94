"""Turn any detforge dataset into the YOLO layout Ultralytics trains on.

The source is read with :func:`detforge.data.read_dataset` (COCO, YOLO, VOC, KITTI) and
written as a fresh YOLO copy inside the run directory with
``write_dataset(ds, out, "yolo")`` (images hard-linked when possible). Ultralytics writes
``*.cache`` files next to the labels it reads, so it is never pointed at the source.

Splits: ``train`` trains; ``val`` validates, else ``test``; when neither exists a seeded
20 % of the training images (at least one) becomes ``val``. ``overfit=N`` keeps the first N
training images (sorted by file) and validates on those same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from detforge.core.atomic import atomic_write_text
from detforge.core.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from detforge.data.dataset import Dataset

__all__ = ["PreparedData", "dataset_version_of", "prepare_yolo_dataset", "training_view"]

TRAINING_LOSSES = frozenset({"crowd", "ignore", "unsized", "nonfinite", "attributes",
                             "metadata"})
"""What the YOLO training copy may leave out (see detforge.data.formats.policy)."""


@dataclass(frozen=True)
class PreparedData:
    """A dataset ready for Ultralytics.

    Attributes:
        data_yaml: The ``data.yaml`` to train on.
        classes: Class names, in id order.
        num_train: Training images.
        num_val: Validation images.
        val_source: Where validation images came from: ``val``, ``test``, ``train-holdout``
            or ``overfit`` (the training images themselves).
        version: Content hash of the source dataset (None when unavailable).
    """

    data_yaml: Path
    classes: tuple[str, ...]
    num_train: int
    num_val: int
    val_source: str
    version: str | None


def training_view(ds: Dataset, *, overfit: int = 0, seed: int = 0) -> tuple[Dataset, str]:
    """The dataset with only ``train`` and ``val`` splits, and where ``val`` came from.

    Args:
        ds: Any dataset.
        overfit: Keep this many training images, all in ``train`` (0 disables).
        seed: Seed of the hold-out split when the dataset has no validation images.

    Returns:
        ``(dataset, val_source)``.

    Raises:
        DatasetError: No images, or too few to hold one out for validation.
    """
    if ds.num_images == 0:
        raise DatasetError("the dataset has no images; check the path and format")
    split = np.array([s or "train" for s in ds.images.split.tolist()], dtype=object)
    if overfit:
        rows = np.flatnonzero(split == "train")
        if len(rows) == 0:
            rows = np.arange(ds.num_images)
        rows = rows[np.argsort(ds.images.file[rows].astype(str), kind="stable")][:overfit]
        sub = ds.subset(rows)
        return sub.with_split(["train"] * sub.num_images), "overfit"
    source = "val" if (split == "val").any() else "test" if (split == "test").any() else ""
    if source == "test":
        split[split == "test"] = "val"
    if not source:
        rows = np.flatnonzero(split == "train")
        if len(rows) < 2:
            raise DatasetError(f"only {len(rows)} training image(s) and no val split: add "
                               "images or pass an overfit count to train on them")
        rng = np.random.default_rng(seed)
        n_val = max(1, round(0.2 * len(rows)))
        split[rng.choice(rows, size=n_val, replace=False)] = "val"
        source = "train-holdout"
    keep = np.flatnonzero((split == "train") | (split == "val"))
    if not (split[keep] == "train").any():
        raise DatasetError("the dataset has no training images; split it with "
                           "`detforge data split` first")
    view = ds.subset(keep)
    return view.with_split(split[keep].tolist()), source


def dataset_version_of(ds: Dataset) -> str | None:
    """Content hash of ``ds`` from :mod:`detforge.data.version`; None if not installed."""
    module = "detforge.data.version"
    try:
        from detforge.data.version import dataset_version
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
    return str(dataset_version(ds))


def prepare_yolo_dataset(source: str | Path, out: str | Path, *,
                         classes: list[str] | None = None, overfit: int = 0,
                         seed: int = 0) -> PreparedData:
    """Write ``source`` (any supported format) as a YOLO dataset under ``out``.

    Args:
        source: Dataset path; the format is detected.
        out: Output directory (created; must not be the source).
        classes: Expected class names (from a preset); None accepts any.
        overfit: Train and validate on this many training images (0 disables).
        seed: Seed of the validation hold-out when the source has no ``val``/``test``.

    Returns:
        The prepared dataset.

    Raises:
        DatasetError: The source is missing, unreadable or has no training images.
        ConfigError: ``classes`` differ from the dataset's.

    Example:
        >>> prep = prepare_yolo_dataset("coco_ds", "runs/x/v1/data")  # doctest: +SKIP
    """
    from detforge.data.formats import WriteOptions, read_dataset, write_dataset

    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise ConfigError(f"{out}: the prepared copy must not overwrite the source dataset")
    ds = read_dataset(source)
    if classes is not None and list(ds.classes.names) != list(classes):
        raise ConfigError(
            f"{source}: dataset classes {list(ds.classes.names)} differ from the config's "
            f"{list(classes)} (set by the preset); relabel the data, or pass "
            "--set classes=null to accept the dataset's classes")
    view, val_source = training_view(ds, overfit=overfit, seed=seed)
    # A training copy, not a conversion: YOLO keeps no flags or metadata, and crowd,
    # ignore and unusable boxes are left out as Ultralytics' own converters do. A box of an
    # unknown class is still refused (it is a labelling error, not a format limit). The
    # overfit view has no val split: it validates on its training images.
    write_dataset(view, out, "yolo", options=WriteOptions(allow_loss=TRAINING_LOSSES,
                                                          val_split="train"))
    data_yaml = _finish_data_yaml(out, list(view.classes.names), overfit=bool(overfit))
    n_train = int((view.images.split == "train").sum())
    n_val = n_train if overfit else int((view.images.split == "val").sum())
    return PreparedData(data_yaml=data_yaml, classes=tuple(view.classes.names),
                        num_train=n_train, num_val=n_val, val_source=val_source,
                        version=dataset_version_of(ds))


def _finish_data_yaml(out: Path, names: list[str], *, overfit: bool) -> Path:
    """Make ``data.yaml`` absolute (Ultralytics resolves a relative ``path`` against CWD)."""
    data_yaml = out / "data.yaml"
    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"the YOLO writer left no readable data.yaml ({exc})",
                           path=data_yaml) from exc
    if "train" not in data:
        raise DatasetError("the YOLO writer wrote no train split", path=data_yaml)
    data["path"] = str(out.resolve())
    if overfit or "val" not in data:
        data["val"] = data["train"]
    data.pop("test", None)
    data["names"] = dict(enumerate(names))
    atomic_write_text(data_yaml, yaml.safe_dump(data, sort_keys=False))
    return data_yaml
