"""``convert``: read a dataset in one format and write it in another, counting what was
written and what was left out (see :mod:`detforge.data.formats.policy`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from detforge.core.errors import ConfigError
from detforge.data.dataset import Dataset
from detforge.data.formats.policy import WriteOptions, WriteSummary

__all__ = ["ConvertResult", "apply_split_map", "convert"]


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert` did.

    Attributes:
        src_format: Format the source was read as.
        dst_format: Format written.
        out: The output folder.
        images: Image entries written.
        boxes: Boxes written.
        classes: Classes written.
        source_images: Images read from the source.
        source_boxes: Boxes read from the source.
        written: The writer's full summary (image files placed, what was left out).
    """

    src_format: str
    dst_format: str
    out: Path
    images: int
    boxes: int
    classes: int
    source_images: int = 0
    source_boxes: int = 0
    written: WriteSummary | None = None

    def summary_line(self) -> str:
        """``converted voc -> yolo: 364 images (364 files), 4888 boxes, 3 classes -> out``
        followed by what was left out, if anything."""
        w = self.written
        files = f" ({w.image_files} image files)" if w is not None else ""
        text = (f"converted {self.src_format} -> {self.dst_format}: {self.images} images"
                f"{files}, {self.boxes} boxes, {self.classes} classes -> {self.out}")
        if w is not None and w.image_files < self.images:
            text += f"\n  {self.images - w.image_files} image files not found in the source"
        lost = "" if w is None else w.losses_text()
        if lost:
            text += f"\n  left out (allowed): {lost}"
        return text


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def apply_split_map(dataset: Dataset, split_map: Mapping[str, str]) -> Dataset:
    """``dataset`` with its split names renamed by ``split_map`` (``""``: unsplit).

    Args:
        dataset: The dataset.
        split_map: ``{old: new}``; names not in it are kept.

    Returns:
        A copy with the new split column (``dataset`` itself when the map is empty).
    """
    if not split_map:
        return dataset
    return dataset.with_split([split_map.get(s, s) for s in dataset.images.split.tolist()])


def convert(src: str | Path, out: str | Path, *, to: str,
            source_format: str | None = None, options: WriteOptions | None = None,
            split_map: Mapping[str, str] | None = None,
            allow_outside_root: bool = False) -> ConvertResult:
    """Read the dataset at ``src`` and write it to ``out`` in format ``to``.

    Args:
        src: Source dataset (file or folder).
        out: New output folder (must not exist, or be empty).
        to: Output format name (a key of ``FORMATS``).
        source_format: Source format; detected from ``src`` when None.
        options: What the writer may lose (default: nothing) and YOLO's ``val`` split.
        split_map: Rename splits before writing, e.g. ``{"trainval": "train"}``.
        allow_outside_root: Let a YOLO ``data.yaml`` name folders outside the dataset.

    Returns:
        A :class:`ConvertResult` that counts what was written.

    Raises:
        ConfigError: Unknown format, or ``out`` is ``src`` or lies inside it.
        DatasetError: The source is unreadable or malformed, or writing would lose data
            that ``options`` does not allow (nothing is written then).

    Example:
        >>> convert("voc_ds", "coco_ds", to="coco")  # doctest: +SKIP
    """
    from detforge.data.formats import get_format, read_dataset, write_dataset

    src_p, out_p = Path(src).resolve(), Path(out).resolve()
    get_format(to)
    src_dir = src_p.parent if src_p.is_file() else src_p
    if _inside(out_p, src_dir):
        raise ConfigError(f"output {out} is the source or lies inside it ({src_dir}); "
                          "write the converted dataset to a folder outside the source")
    ds = read_dataset(src_p, source_format, allow_outside_root=allow_outside_root)
    if ds.root is not None and _inside(out_p, ds.root.resolve()):
        raise ConfigError(f"output {out} lies inside the source dataset root {ds.root}; "
                          "write the converted dataset to a folder outside it")
    written = write_dataset(apply_split_map(ds, split_map or {}), out_p, to, options=options)
    return ConvertResult(src_format=str(ds.info.get("format", source_format)), dst_format=to,
                         out=out_p, images=written.images, boxes=written.boxes,
                         classes=len(ds.classes), source_images=ds.num_images,
                         source_boxes=ds.num_boxes, written=written)
