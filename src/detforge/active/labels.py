"""Boxes exchanged with labelling tools: pre-annotations out, corrected labels back in.

One :class:`ImageLabels` per image, in the image's own pixels, with class *names* (tools
know labels by name, not by index). Reading an export gives a :class:`LabelledExport`:
the images, the label names the tool declared, the tasks nobody annotated yet, and every
shape that does not fit an axis-aligned box (polygons, points, rotated boxes), counted so
that nothing is dropped without the user saying so. :func:`read_labelled` reads any of
them (a CVAT XML or export zip, a Label Studio JSON export, or a dataset format through
:func:`detforge.data.formats.read_dataset`) as a :class:`LabelledSource`.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from detforge.core.classes import ClassMap
from detforge.core.errors import ConfigError, DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable

__all__ = ["TOOLS", "ImageLabels", "LabelledExport", "LabelledSource", "read_labelled",
           "rotated_extent", "unpacked"]

TOOLS = ("cvat", "labelstudio")
"""Labelling tools whose exports :func:`read_labelled` reads (besides dataset formats)."""


@dataclass(frozen=True, eq=False)
class ImageLabels:
    """The boxes of one image.

    Attributes:
        key: The image's name in the tool (the pool key: path relative to the pool root).
        width: Image width in pixels.
        height: Image height in pixels.
        xyxy: ``[N, 4]`` float64 boxes in pixels.
        labels: Class name of each box.
        scores: Model confidence of each box (pre-annotations), or None (human labels).
        occluded: ``[N]`` occlusion flags (CVAT), or None.
    """

    key: str
    width: int
    height: int
    xyxy: NDArray[np.float64]
    labels: tuple[str, ...]
    scores: NDArray[np.float32] | None = None
    occluded: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.xyxy.shape != (n, 4):
            raise DatasetError(f"image {self.key!r}: {n} labels but boxes of shape "
                               f"{self.xyxy.shape}")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class LabelledExport:
    """What a labelling tool's export holds.

    Attributes:
        source: The export file.
        tool: ``cvat`` or ``labelstudio``.
        images: Annotated images.
        declared: Label names the export declares (its label config / task meta), in order.
        unannotated: Keys of tasks with no (non-skipped) annotation yet.
        lossy: Counts of shapes that are not axis-aligned boxes, by kind (``polygon``,
            ``rotated box``, ...): kept only as their enclosing box, or dropped.
    """

    source: str
    tool: str
    images: list[ImageLabels]
    declared: list[str] = field(default_factory=list)
    unannotated: list[str] = field(default_factory=list)
    lossy: Counter[str] = field(default_factory=Counter)

    @property
    def label_names(self) -> list[str]:
        """Every label name used by a box, sorted."""
        return sorted({lab for im in self.images for lab in im.labels})


def rotated_extent(x1: float, y1: float, x2: float, y2: float, degrees: float,
                   *, pivot: str = "centre") -> tuple[float, float, float, float]:
    """The axis-aligned box enclosing ``(x1, y1, x2, y2)`` rotated by ``degrees`` (clockwise).

    Args:
        x1: Left of the unrotated box.
        y1: Top of the unrotated box.
        x2: Right of the unrotated box.
        y2: Bottom of the unrotated box.
        degrees: Rotation, clockwise in image coordinates (y down).
        pivot: ``centre`` (CVAT) or ``top-left`` (Label Studio).

    Example:
        >>> [round(v, 3) + 0.0 for v in rotated_extent(0, 0, 4, 2, 90)]
        [1.0, -1.0, 3.0, 3.0]
    """
    cx, cy = ((x1 + x2) / 2, (y1 + y2) / 2) if pivot == "centre" else (x1, y1)
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    xs = np.array([x1, x2, x2, x1]) - cx
    ys = np.array([y1, y1, y2, y2]) - cy
    rx, ry = cx + xs * c - ys * s, cy + xs * s + ys * c
    return (float(rx.min()) + 0.0, float(ry.min()) + 0.0, float(rx.max()) + 0.0,
            float(ry.max()) + 0.0)


@dataclass
class LabelledSource:
    """Labels read back, as a dataset whose images may still need locating.

    Attributes:
        dataset: The labels (``file`` holds each image's key).
        tool: ``cvat``, ``labelstudio`` or the dataset format name.
        unannotated: Keys of tasks not annotated yet.
        lossy: Non-box shapes (dropped) and rotated boxes (enclosing box), by kind.
        declared: Label names the export declares.
    """

    dataset: Dataset
    tool: str
    unannotated: list[str] = field(default_factory=list)
    lossy: Counter[str] = field(default_factory=Counter)
    declared: list[str] = field(default_factory=list)


@contextmanager
def unpacked(path: Path) -> Iterator[Path]:
    """``path`` itself, or a temporary folder holding the zip's contents."""
    if path.is_file() and zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix="detforge-merge-") as tmp:
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    if Path(member).is_absolute() or ".." in Path(member).parts:
                        raise DatasetError(f"unsafe path {member!r} inside the zip", path=path)
                zf.extractall(tmp)
            yield Path(tmp)
    else:
        yield path


def _tool_of(path: Path) -> str | None:
    if path.is_file() and path.suffix.lower() == ".xml":
        return "cvat"
    if path.is_file() and path.suffix.lower() == ".json":
        head = path.read_bytes()[:4096].lstrip()
        return "labelstudio" if head.startswith(b"[") else None
    if path.is_dir():
        xml = list(path.glob("*.xml"))
        if len(xml) == 1 and not (path / "Annotations").is_dir():
            return "cvat"
    return None


def _export_dataset(export: LabelledExport) -> Dataset:
    """Labels of a tool export as a dataset whose ``file`` column holds the keys."""
    names = sorted({*export.declared, *export.label_names})
    classes = ClassMap.from_names(names)
    index = {c: i for i, c in enumerate(names)}
    tables = []
    for row, im in enumerate(export.images):
        occluded = im.occluded if im.occluded is not None else np.zeros(len(im), bool)
        tables.append(BoxTable.build(np.full(len(im), row), im.xyxy,
                                     [index[lab] for lab in im.labels], occluded=occluded))
    images = ImageTable.build([im.key for im in export.images],
                              [im.width for im in export.images],
                              [im.height for im in export.images])
    return Dataset(classes, images, BoxTable.concat(tables), root=None,
                   info={"format": export.tool, "source": export.source})


def read_labelled(path: str | Path, fmt: str | None = None) -> LabelledSource:
    """Read labels back from a labelling tool or a dataset.

    Args:
        path: A CVAT ``annotations.xml`` or export ``.zip``, a Label Studio JSON export, or
            a COCO / YOLO / VOC / KITTI dataset (folder, file or ``.zip``).
        fmt: ``cvat``, ``labelstudio`` or a dataset format; detected when None.

    Returns:
        The labels.

    Raises:
        DatasetError: Unreadable or unrecognised.
        ConfigError: Unknown ``fmt``.
    """
    from detforge.active.cvat import read_cvat_xml
    from detforge.active.labelstudio import read_labelstudio
    from detforge.data.formats import FORMATS, read_dataset

    path = Path(path)
    if not path.exists():
        raise DatasetError("no such file or folder; check the path", path=path)
    if fmt is not None and fmt not in TOOLS and fmt not in FORMATS:
        raise ConfigError(f"unknown labels format {fmt!r}; choose one of "
                          f"{[*TOOLS, *sorted(FORMATS)]}")
    with unpacked(path) as where:
        tool = fmt or _tool_of(where)
        if tool == "cvat":
            xml = where if where.is_file() else next(iter(where.glob("*.xml")), where)
            export = read_cvat_xml(xml)
        elif tool == "labelstudio":
            export = read_labelstudio(where)
        else:
            ds = read_dataset(where, tool)
            if where != path:  # unpacked: the images (if any) are gone with the folder
                ds = _detached(ds)
            return LabelledSource(ds, str(ds.info.get("format", tool)))
    export.source = str(path)
    return LabelledSource(_export_dataset(export), export.tool, export.unannotated,
                          export.lossy, export.declared)


def _detached(ds: Dataset) -> Dataset:
    """``ds`` without its root (its unpacked folder is gone): images known by key only."""
    from detforge.data.images import image_key

    files = [image_key(str(f)) for f in ds.images.file.tolist()]
    images = ImageTable.build(files, ds.images.width, ds.images.height, id=ds.images.id)
    return Dataset(ds.classes, images, ds.boxes, root=None, info=dict(ds.info))
