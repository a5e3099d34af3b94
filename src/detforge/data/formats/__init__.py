"""Dataset format registry.

Each format module has::

    detect(path: Path) -> bool             # does ``path`` look like this format?
    read(path: Path) -> Dataset            # raises DatasetError naming file (and line)
    write(dataset: Dataset, out: Path, *, options: WriteOptions) -> WriteSummary

Writers refuse to lose data unless ``options.allow_loss`` names the loss
(:mod:`detforge.data.formats.policy`). Modules are imported on first use, so adding a
format is one line here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from detforge.core.errors import ConfigError, DatasetError
from detforge.data.formats.policy import WriteOptions, WriteSummary

if TYPE_CHECKING:
    from detforge.data.dataset import Dataset

__all__ = ["FORMATS", "WriteOptions", "WriteSummary", "detect_format", "get_format",
           "read_dataset", "write_dataset"]

FORMATS: dict[str, str] = {
    "coco": "detforge.data.formats.coco",
    "yolo": "detforge.data.formats.yolo",
    "voc": "detforge.data.formats.voc",
    "kitti": "detforge.data.formats.kitti",
}


def get_format(name: str) -> ModuleType:
    """The module implementing format ``name``.

    Raises:
        ConfigError: Unknown format; the message lists the valid names.
    """
    if name not in FORMATS:
        raise ConfigError(f"unknown dataset format {name!r}; choose one of {sorted(FORMATS)}")
    return importlib.import_module(FORMATS[name])


def detect_format(path: str | Path) -> str:
    """Name of the format ``path`` is in.

    Raises:
        DatasetError: ``path`` does not exist or matches no format.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError("no such file or directory; check the path", path=path)
    for name in FORMATS:
        if get_format(name).detect(path):
            return name
    raise DatasetError(
        "cannot tell the dataset format: expected a COCO JSON (a folder with "
        "annotations/*.json, or Roboflow's <split>/_annotations.coco.json), a YOLO folder "
        "(data.yaml, Darknet obj.data/obj.names, or classes.txt), a VOC folder with "
        "Annotations/, or a KITTI folder with label_2/ (or <split>/label_2/). Pass --from "
        "FORMAT to choose.", path=path)


def read_dataset(path: str | Path, fmt: str | None = None, *,
                 allow_outside_root: bool = False) -> Dataset:
    """Read a dataset, detecting the format when ``fmt`` is None.

    Args:
        path: Dataset folder or file.
        fmt: Format name, or None to detect it.
        allow_outside_root: Let a YOLO ``data.yaml`` name image folders outside the
            dataset folder (refused by default, so ``val: /`` cannot walk the disk).

    Returns:
        The dataset; ``info["format"]`` names the format it was read as.

    Raises:
        DatasetError: Unknown layout or a malformed file (named with line or entry).
        ConfigError: Unknown format name.
    """
    path = Path(path)
    name = fmt or detect_format(path)
    module = get_format(name)
    ds: Dataset = module.read(path, allow_outside_root=allow_outside_root) \
        if name == "yolo" else module.read(path)
    ds.info.setdefault("format", name)
    return ds


def write_dataset(dataset: Dataset, out: str | Path, fmt: str, *,
                  options: WriteOptions | None = None) -> WriteSummary:
    """Write ``dataset`` to ``out`` in format ``fmt``.

    Args:
        dataset: The dataset.
        out: New output folder (must not exist, or be empty).
        fmt: Format name.
        options: Losses allowed (default none: a write that would lose data is refused
            with one line naming the first case and the ``--allow-loss`` option).

    Returns:
        What was written and what was left out.
    """
    summary: WriteSummary = get_format(fmt).write(dataset, Path(out),
                                                  options=options or WriteOptions())
    return summary
