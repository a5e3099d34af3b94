"""Boxes exchanged with labelling tools: pre-annotations out, corrected labels back in.

One :class:`ImageLabels` per image, in the image's own pixels, with class *names* (tools
know labels by name, not by index). Reading an export gives a :class:`LabelledExport`:
the images, the label names the tool declared, the tasks nobody annotated yet, and every
shape that does not fit an axis-aligned box (polygons, points, rotated boxes), counted so
that nothing is dropped without the user saying so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import DatasetError

__all__ = ["ImageLabels", "LabelledExport", "rotated_extent"]


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
