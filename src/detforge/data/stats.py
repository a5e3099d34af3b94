"""Dataset statistics: class counts per split, box size and shape distributions, image sizes.

``dataset_stats`` computes everything in vectorised numpy (a COCO-size dataset takes well
under a second); ``format_stats`` renders text tables and ``render_stats_html`` a
self-contained HTML report with plots.

Conventions: *object boxes* are boxes that are not ignore regions; class counts use object
boxes whose class id is valid; size distributions use object boxes with finite coordinates
and positive width and height (the others are counted as ``degenerate_boxes``). An *empty*
image has no object box. Images without a split are reported under ``"unsplit"``.

Example::

    stats = dataset_stats(read_dataset("data/coco"))
    print(format_stats(stats))
    render_stats_html(stats, "stats.html")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from detforge.data.dataset import UNSET_SPLIT, Dataset
from detforge.data.report import (
    Section,
    figure_to_data_uri,
    html_image,
    html_table,
    new_figure,
    render_page,
    text_table,
    write_page,
)
from detforge.data.split import sorted_unique

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["UNSPLIT", "DatasetStats", "Distribution", "dataset_stats", "format_stats",
           "render_stats_html"]

UNSPLIT = "unsplit"
"""Name under which images without a split are reported."""

_BINS = 20


@dataclass(frozen=True)
class Distribution:
    """Summary and histogram of a set of values.

    Attributes:
        count: Number of values.
        min: Smallest value (0 when empty), likewise ``max``, ``mean``, ``median``.
        edges: ``bins + 1`` histogram bin edges (empty when there are no values).
        counts: Values per bin; the last bin includes its right edge.
    """

    count: int
    min: float
    max: float
    mean: float
    median: float
    edges: tuple[float, ...]
    counts: tuple[int, ...]

    @classmethod
    def of(cls, values: NDArray[np.float64], *, bins: int = _BINS,
           log: bool = False) -> Distribution:
        """Summarise ``values`` with ``bins`` linear (or, with ``log``, log-spaced) bins.

        Args:
            values: Finite values; positive when ``log`` is set.
            bins: Number of histogram bins.
            log: Log-spaced bins, for quantities spanning orders of magnitude (area, aspect).

        Returns:
            The distribution.
        """
        v = np.asarray(values, np.float64)
        if len(v) == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, (), ())
        lo, hi = float(v.min()), float(v.max())
        if log:
            edges = np.geomspace(lo, hi if hi > lo else lo * 2, bins + 1)
        else:
            edges = np.linspace(min(lo, 0.0), hi if hi > min(lo, 0.0) else lo + 1, bins + 1)
        counts, _ = np.histogram(v, edges)
        return cls(len(v), lo, hi, float(v.mean()), float(np.median(v)),
                   tuple(float(e) for e in edges), tuple(int(c) for c in counts))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return {"count": self.count, "min": self.min, "max": self.max, "mean": self.mean,
                "median": self.median, "edges": list(self.edges), "counts": list(self.counts)}


@dataclass(frozen=True)
class DatasetStats:
    """Statistics of a dataset.

    Attributes:
        classes: Class names.
        splits: Split names present, train/val/test first, ``"unsplit"`` last if any.
        images: Images per split.
        empty_images: Images without an object box, per split.
        boxes: Object boxes per split.
        class_boxes: Boxes of each class (``[K]``), per split.
        class_images: Images containing each class (``[K]``), per split.
        ignore_boxes: Ignore regions (e.g. KITTI DontCare), all splits.
        invalid_class_boxes: Object boxes whose class id is out of range.
        degenerate_boxes: Object boxes with a non-finite coordinate or no positive area.
        boxes_per_image: ``counts[n]`` = images with exactly ``n`` object boxes.
        box_width: Box widths in pixels.
        box_height: Box heights in pixels.
        box_area: Box areas in square pixels (log bins).
        box_aspect: Width / height (log bins).
        size_buckets: COCO size buckets: small (< 32²), medium (< 96²), large.
        image_sizes: ``(width, height, images)`` per distinct size, most frequent first;
            unknown sizes (0) excluded.
        unknown_size_images: Images whose size is unknown.
    """

    classes: tuple[str, ...]
    splits: tuple[str, ...]
    images: dict[str, int]
    empty_images: dict[str, int]
    boxes: dict[str, int]
    class_boxes: dict[str, tuple[int, ...]]
    class_images: dict[str, tuple[int, ...]]
    ignore_boxes: int
    invalid_class_boxes: int
    degenerate_boxes: int
    boxes_per_image: tuple[int, ...]
    box_width: Distribution
    box_height: Distribution
    box_area: Distribution
    box_aspect: Distribution
    size_buckets: dict[str, int]
    image_sizes: tuple[tuple[int, int, int], ...]
    unknown_size_images: int

    @property
    def num_images(self) -> int:
        """Images in all splits."""
        return sum(self.images.values())

    @property
    def num_boxes(self) -> int:
        """Object boxes in all splits."""
        return sum(self.boxes.values())

    def total_class_boxes(self) -> tuple[int, ...]:
        """Boxes of each class over all splits."""
        return tuple(int(sum(c)) for c in zip(*self.class_boxes.values(), strict=True)) \
            if self.splits else tuple(0 for _ in self.classes)

    def total_class_images(self) -> tuple[int, ...]:
        """Images containing each class over all splits."""
        return tuple(int(sum(c)) for c in zip(*self.class_images.values(), strict=True)) \
            if self.splits else tuple(0 for _ in self.classes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (distributions as dicts, tuples as lists)."""
        return {
            "classes": list(self.classes), "splits": list(self.splits),
            "num_images": self.num_images, "num_boxes": self.num_boxes,
            "images": dict(self.images), "empty_images": dict(self.empty_images),
            "boxes": dict(self.boxes),
            "class_boxes": {s: list(v) for s, v in self.class_boxes.items()},
            "class_images": {s: list(v) for s, v in self.class_images.items()},
            "ignore_boxes": self.ignore_boxes, "invalid_class_boxes": self.invalid_class_boxes,
            "degenerate_boxes": self.degenerate_boxes,
            "boxes_per_image": list(self.boxes_per_image),
            "box_width": self.box_width.to_dict(), "box_height": self.box_height.to_dict(),
            "box_area": self.box_area.to_dict(), "box_aspect": self.box_aspect.to_dict(),
            "size_buckets": dict(self.size_buckets),
            "image_sizes": [list(s) for s in self.image_sizes],
            "unknown_size_images": self.unknown_size_images,
        }


def _split_index(dataset: Dataset) -> tuple[tuple[str, ...], NDArray[np.intp]]:
    names = dataset.split_names()
    col = dataset.images.split
    if (col == UNSET_SPLIT).any():
        names.append(UNSPLIT)
    lookup = {n: i for i, n in enumerate(names)}
    lookup[UNSET_SPLIT] = lookup.get(UNSPLIT, -1)
    return tuple(names), np.array([lookup[str(s)] for s in col], np.intp)


def dataset_stats(dataset: Dataset) -> DatasetStats:
    """Compute the statistics of ``dataset``.

    Args:
        dataset: The dataset (not modified).

    Returns:
        Per-split counts and the box and image size distributions.

    Example::

        stats = dataset_stats(ds)
        stats.class_boxes["train"]  # boxes per class in train
    """
    names, split_of = _split_index(dataset)
    s, k = len(names), len(dataset.classes)
    b = dataset.boxes
    obj = ~b.ignore
    valid = obj & (b.class_id >= 0) & (b.class_id < k)
    obj_img = b.image_index[obj]
    per_image = np.bincount(obj_img, minlength=dataset.num_images)

    class_boxes = np.zeros((s, k), np.int64)
    np.add.at(class_boxes, (split_of[b.image_index[valid]], b.class_id[valid]), 1)
    pairs, _ = sorted_unique(b.image_index[valid].astype(np.int64) * max(k, 1)
                             + b.class_id[valid])
    class_images = np.zeros((s, k), np.int64)
    np.add.at(class_images, (split_of[pairs // max(k, 1)], pairs % max(k, 1)), 1)

    xyxy = b.xyxy[obj]
    w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    good = np.isfinite(xyxy).all(axis=1) & (w > 0) & (h > 0)
    w, h = w[good], h[good]
    area = w * h

    images = np.bincount(split_of, minlength=s)
    empty = np.bincount(split_of[per_image == 0], minlength=s)
    boxes = np.bincount(split_of[obj_img], minlength=s)
    known = (dataset.images.width > 0) & (dataset.images.height > 0)
    size_keys, size_counts = sorted_unique(
        dataset.images.width[known].astype(np.int64) * 2**32 + dataset.images.height[known])
    sizes = np.stack([size_keys // 2**32, size_keys % 2**32], axis=1)
    order = np.lexsort((sizes[:, 1], sizes[:, 0], -size_counts))

    def by_split(arr: NDArray[Any]) -> dict[str, int]:
        return {n: int(arr[i]) for i, n in enumerate(names)}

    return DatasetStats(
        classes=tuple(dataset.classes.names), splits=names,
        images=by_split(images), empty_images=by_split(empty), boxes=by_split(boxes),
        class_boxes={n: tuple(int(x) for x in class_boxes[i]) for i, n in enumerate(names)},
        class_images={n: tuple(int(x) for x in class_images[i]) for i, n in enumerate(names)},
        ignore_boxes=int(b.ignore.sum()), invalid_class_boxes=int((obj & ~valid).sum()),
        degenerate_boxes=int((~good).sum()),
        boxes_per_image=tuple(int(x) for x in np.bincount(per_image, minlength=1)),
        box_width=Distribution.of(w), box_height=Distribution.of(h),
        box_area=Distribution.of(area, log=True), box_aspect=Distribution.of(w / h, log=True),
        size_buckets={"small": int((area < 32**2).sum()),
                      "medium": int(((area >= 32**2) & (area < 96**2)).sum()),
                      "large": int((area >= 96**2).sum())},
        image_sizes=tuple((int(sizes[i, 0]), int(sizes[i, 1]), int(size_counts[i]))
                          for i in order),
        unknown_size_images=int((~known).sum()),
    )


Rows = list[list[str | int | float]]


def _summary_rows(stats: DatasetStats) -> Rows:
    rows: Rows = [[name, stats.images[name], stats.empty_images[name], stats.boxes[name]]
                  for name in stats.splits]
    rows.append(["total", stats.num_images, sum(stats.empty_images.values()), stats.num_boxes])
    return rows


def _class_rows(stats: DatasetStats) -> Rows:
    totals, images = stats.total_class_boxes(), stats.total_class_images()
    return [[name, *(stats.class_boxes[s][c] for s in stats.splits), totals[c], images[c]]
            for c, name in enumerate(stats.classes)]


def _size_rows(stats: DatasetStats) -> Rows:
    dists = [("width", stats.box_width), ("height", stats.box_height),
             ("area", stats.box_area), ("aspect w/h", stats.box_aspect)]
    return [[name, d.min, d.median, d.mean, d.max] for name, d in dists]


def _per_image_row(stats: DatasetStats) -> Rows:
    counts = np.asarray(stats.boxes_per_image)
    n = max(int(counts.sum()), 1)
    values = np.arange(len(counts))
    mean = float((counts * values).sum() / n)
    return [["boxes per image", mean, len(counts) - 1]]


def format_stats(stats: DatasetStats) -> str:
    """Text tables: images/empty/boxes per split, boxes per class, box sizes.

    Args:
        stats: Statistics from :func:`dataset_stats`.

    Returns:
        The tables, separated by blank lines (no trailing newline).
    """
    parts = [
        text_table(["split", "images", "empty", "boxes"], _summary_rows(stats)),
        text_table(["class", *stats.splits, "boxes", "images"], _class_rows(stats)),
        text_table(["box (px)", "min", "median", "mean", "max"], _size_rows(stats)),
        text_table(["", "mean", "max"], _per_image_row(stats)),
    ]
    other = [f"ignore regions: {stats.ignore_boxes}",
             f"boxes with unknown class id: {stats.invalid_class_boxes}",
             f"degenerate boxes: {stats.degenerate_boxes}",
             "COCO size buckets: " + ", ".join(f"{k} {v}" for k, v in stats.size_buckets.items()),
             "image sizes: " + (", ".join(f"{w}x{h} ({n})" for w, h, n in stats.image_sizes[:5])
                                or "none known")
             + (f" and {len(stats.image_sizes) - 5} more" if len(stats.image_sizes) > 5 else "")
             + (f"; {stats.unknown_size_images} unknown" if stats.unknown_size_images else "")]
    return "\n\n".join(parts) + "\n\n" + "\n".join(other)


def render_stats_html(stats: DatasetStats, path: str | Path, *,
                      title: str = "Dataset statistics") -> Path:
    """Write a self-contained HTML report with tables and plots (atomic write).

    Plots: boxes per class and split, box width/height, area and aspect histograms,
    boxes per image, image sizes. Figures are embedded as base64 PNGs; the page uses no
    external URL, so it opens offline.

    Args:
        stats: Statistics from :func:`dataset_stats`.
        path: The HTML file to write; parent folders are created.
        title: Page title.

    Returns:
        The path written.
    """
    subtitle = (f"{stats.num_images} images, {stats.num_boxes} boxes, "
                f"{len(stats.classes)} classes, splits: {', '.join(stats.splits) or 'none'}")
    return write_page(path, render_page(title, _sections(stats), subtitle=subtitle))


def _sections(stats: DatasetStats) -> list[Section]:
    summary = html_table(["split", "images", "empty", "boxes"], _summary_rows(stats))
    other: Rows = [["ignore regions", stats.ignore_boxes],
                   ["boxes with unknown class id", stats.invalid_class_boxes],
                   ["degenerate boxes", stats.degenerate_boxes]]
    other += [[f"COCO {k} boxes", v] for k, v in stats.size_buckets.items()]
    other.append(["images of unknown size", stats.unknown_size_images])
    summary += html_table(["other", "count"], other)
    classes = html_image(_plot_classes(stats), "boxes per class and split")
    classes += html_table(["class", *stats.splits, "boxes", "images"], _class_rows(stats))
    dists = [("width (px)", stats.box_width), ("height (px)", stats.box_height),
             ("area (px²)", stats.box_area), ("aspect w/h", stats.box_aspect)]
    boxes = html_image(_plot_distributions(dists), "box size and aspect histograms")
    boxes += html_table(["box", "count", "min", "median", "mean", "max"],
                        [[name, d.count, d.min, d.median, d.mean, d.max] for name, d in dists])
    per_image = html_image(_plot_per_image(stats), "boxes per image")
    per_image += html_table(["", "mean", "max"], _per_image_row(stats))
    sizes = html_image(_plot_image_sizes(stats), "image sizes")
    sizes += html_table(["width", "height", "images"], [list(t) for t in stats.image_sizes[:20]])
    return [Section("Summary", summary), Section("Classes", classes),
            Section("Box sizes", boxes), Section("Boxes per image", per_image),
            Section("Image sizes", sizes)]


def _empty_note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _plot_classes(stats: DatasetStats) -> str:
    k = len(stats.classes)
    fig = new_figure(max(6.4, 0.35 * k * max(len(stats.splits), 1)), 3.8)
    ax = fig.subplots()
    x = np.arange(k)
    width = 0.8 / max(len(stats.splits), 1)
    for i, split in enumerate(stats.splits):
        ax.bar(x + (i - (len(stats.splits) - 1) / 2) * width, stats.class_boxes[split],
               width, label=split)
    ax.set_xticks(x, stats.classes, rotation=45 if k > 8 else 0, ha="right" if k > 8 else "center")
    ax.set_ylabel("boxes")
    ax.set_title("Boxes per class and split")
    if stats.splits and k:
        ax.legend()
    else:
        _empty_note(ax, "no classes")
    return figure_to_data_uri(fig)


def _plot_distributions(dists: Sequence[tuple[str, Distribution]]) -> str:
    fig = new_figure(9.6, 6.4)
    for ax, (name, d) in zip(fig.subplots(2, 2).ravel(), dists, strict=True):
        if d.count:
            ax.stairs(d.counts, d.edges, fill=True)
            if name.startswith(("area", "aspect")):
                ax.set_xscale("log")
        else:
            _empty_note(ax, "no boxes")
        ax.set_xlabel(name)
        ax.set_ylabel("boxes")
    return figure_to_data_uri(fig)


def _plot_per_image(stats: DatasetStats) -> str:
    fig = new_figure()
    ax = fig.subplots()
    ax.bar(np.arange(len(stats.boxes_per_image)), stats.boxes_per_image, 1.0)
    ax.set_xlabel("boxes in the image")
    ax.set_ylabel("images")
    return figure_to_data_uri(fig)


def _plot_image_sizes(stats: DatasetStats) -> str:
    fig = new_figure(5.0, 4.2)
    ax = fig.subplots()
    if stats.image_sizes:
        sizes = np.asarray(stats.image_sizes, np.float64)
        ax.scatter(sizes[:, 0], sizes[:, 1], s=12 + 60 * np.sqrt(sizes[:, 2] / sizes[:, 2].max()),
                   alpha=0.6)
    else:
        _empty_note(ax, "no image sizes known")
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    return figure_to_data_uri(fig)
