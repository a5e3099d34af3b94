"""Dataset format registry.

Each format module has::

    detect(path: Path) -> bool             # does ``path`` look like this format?
    read(path: Path) -> Dataset            # raises DatasetError naming file (and line)
    write(dataset: Dataset, out: Path) -> None   # writes labels and copies/links images

Modules are imported on first use, so adding a format is one line here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from detforge.core.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from detforge.data.dataset import Dataset

__all__ = ["FORMATS", "detect_format", "get_format", "read_dataset", "write_dataset"]

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
        "cannot tell the dataset format: expected a COCO JSON (or a folder with "
        "annotations/*.json), a YOLO folder with data.yaml, a VOC folder with Annotations/, "
        "or a KITTI folder with label_2/. Pass --from FORMAT to choose.", path=path)


def read_dataset(path: str | Path, fmt: str | None = None) -> Dataset:
    """Read a dataset, detecting the format when ``fmt`` is None."""
    path = Path(path)
    name = fmt or detect_format(path)
    ds: Dataset = get_format(name).read(path)
    ds.info.setdefault("format", name)
    return ds


def write_dataset(dataset: Dataset, out: str | Path, fmt: str) -> None:
    """Write ``dataset`` to ``out`` in format ``fmt``."""
    get_format(fmt).write(dataset, Path(out))
