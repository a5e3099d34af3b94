"""What a writer may lose, and the count of what it wrote.

A writer never drops data silently. Data a target format cannot hold falls into one of
the loss kinds below; by default the writer refuses with one line that names the first
case (file, line or annotation id, image), the total and the option that accepts the
loss (``--allow-loss KIND``). With the kind allowed, the writer skips or drops that data
and the :class:`WriteSummary` counts it, so ``convert`` prints what was written and what
was left out.

=================  ==================================================================
kind               what is lost when allowed
=================  ==================================================================
``crowd``          crowd regions (COCO ``iscrowd=1``): skipped in YOLO, VOC, KITTI, as
                   Ultralytics' own COCO converter does
``ignore``         ignore regions without a class (KITTI ``DontCare``): skipped in
                   COCO, YOLO and VOC
``unsized``        boxes of an image whose size is unknown and cannot be read from the
                   image file (YOLO stores coordinates normalised to the image size)
``nonfinite``      boxes with NaN or infinite coordinates
``unknown-class``  boxes whose class id is outside the class list
``attributes``     per-box values the format has no place for (difficult, truncated,
                   occluded; COCO segmentation, keypoints, attributes, area; KITTI 3-D
                   fields and score): the box is written without them
``metadata``       dataset and image fields the format has no place for (COCO info,
                   licenses, category supercategory, image licence and URLs)
=================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from detforge.core.errors import ConfigError, DatasetError

__all__ = ["LOSS_KINDS", "LossLedger", "WriteOptions", "WriteSummary", "parse_allow_loss",
           "parse_split_map"]

LOSS_KINDS: dict[str, str] = {
    "crowd": "crowd regions",
    "ignore": "ignore regions without a class",
    "unsized": "boxes of images of unknown size",
    "nonfinite": "boxes with NaN or infinite coordinates",
    "unknown-class": "boxes whose class id is outside the class list",
    "attributes": "per-box values",
    "metadata": "dataset and image metadata",
}
"""Loss kinds, in the order they are reported."""


@dataclass(frozen=True)
class WriteOptions:
    """Options every writer takes.

    Attributes:
        allow_loss: Loss kinds (keys of :data:`LOSS_KINDS`) the writer may incur.
        val_split: YOLO only: the split that ``data.yaml``'s ``val:`` names when the
            dataset has no ``val`` split (``train`` validates on the training images).
            None: the dataset's own choice (``info["val_split"]``, set when a YOLO
            source named the same images for train and val), else refuse.
    """

    allow_loss: frozenset[str] = frozenset()
    val_split: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.allow_loss) - set(LOSS_KINDS)
        if unknown:
            raise ConfigError(f"unknown loss kind(s) {sorted(unknown)}; choose from "
                              f"{list(LOSS_KINDS)} or 'all'")

    @classmethod
    def lossy(cls, **kwargs: Any) -> WriteOptions:
        """Options that accept every loss (for internal copies such as a training view)."""
        return cls(allow_loss=frozenset(LOSS_KINDS), **kwargs)


@dataclass
class WriteSummary:
    """What a writer wrote, and what it left out (only kinds that were allowed).

    Attributes:
        format: The format written.
        images: Image entries written (label files, XML files, JSON image records).
        image_files: Image files placed (hard link or copy).
        boxes: Boxes written.
        skipped: Boxes not written, per loss kind.
        dropped: Values not written, per field name (``truncated``, ``segmentation``,
            ``info``...): the number of boxes, images or files that lost it.
    """

    format: str
    images: int = 0
    image_files: int = 0
    boxes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def losses_text(self) -> str:
        """``skipped 12 crowd regions; dropped truncated (860), COCO info (1)`` or ``""``."""
        parts = [f"skipped {n} {LOSS_KINDS[k]}" for k, n in self.skipped.items() if n]
        dropped = [f"{name} ({n})" for name, n in self.dropped.items() if n]
        if dropped:
            parts.append("dropped " + ", ".join(dropped))
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {"format": self.format, "images": self.images, "image_files": self.image_files,
                "boxes": self.boxes, "skipped": dict(self.skipped),
                "dropped": dict(self.dropped)}


class LossLedger:
    """Collects what a writer would lose, then refuses or records it.

    Args:
        fmt: The format being written (named in the error).
        options: The writer options (which kinds are allowed).
    """

    def __init__(self, fmt: str, options: WriteOptions) -> None:
        self.fmt = fmt
        self.options = options
        self._skipped: dict[str, int] = {}
        self._dropped: dict[str, dict[str, int]] = {}
        self._where: dict[str, str] = {}

    def skip(self, kind: str, count: int, where: str = "") -> None:
        """Record ``count`` boxes of loss ``kind`` left out; ``where`` names the first."""
        if count > 0:
            self._skipped[kind] = self._skipped.get(kind, 0) + count
            self._where.setdefault(kind, where)

    def drop(self, kind: str, name: str, count: int, where: str = "") -> None:
        """Record value ``name`` (of loss ``attributes`` or ``metadata``) lost by ``count``
        boxes or items; ``where`` names the first."""
        if count > 0:
            per = self._dropped.setdefault(kind, {})
            per[name] = per.get(name, 0) + count
            self._where.setdefault(kind, where)

    def allowed(self, kind: str) -> bool:
        """Whether loss ``kind`` may be incurred."""
        return kind in self.options.allow_loss

    def check(self, problems: Iterable[str] = ()) -> None:
        """Refuse, in one line, when a loss that was not allowed was recorded (or the
        writer found other ``problems``, reported in the same line).

        Args:
            problems: The writer's own reasons to refuse (e.g. YOLO's split names).

        Raises:
            DatasetError: Names each problem, each loss not allowed, its first case and
                the option that accepts it.
        """
        problems = list(problems)
        refused = [k for k in LOSS_KINDS if (k in self._skipped or k in self._dropped)
                   and not self.allowed(k)]
        if not refused:
            if problems:
                raise DatasetError(f"cannot write {self.fmt}: {'; '.join(problems)}")
            return
        parts = []
        for k in refused:
            if k in self._skipped:
                what = f"{self._skipped[k]} {LOSS_KINDS[k]}"
            else:
                unit = "boxes" if k == "attributes" else "items"
                what = f"{LOSS_KINDS[k]} " + ", ".join(
                    f"{name} ({n} {unit})" for name, n in sorted(self._dropped[k].items()))
            where = self._where.get(k)
            parts.append(f"{what} (first: {where})" if where else what)
        head = f"cannot write {self.fmt}: {'; '.join(problems)}; and it " if problems else \
            f"writing {self.fmt} "
        raise DatasetError(
            f"{head}would lose {'; '.join(parts)}. Pass --allow-loss {','.join(refused)} to "
            "write without them (the summary counts them), or fix the data first")

    def summary(self, summary: WriteSummary) -> WriteSummary:
        """Copy the recorded (allowed) losses into ``summary`` and return it."""
        for k, n in self._skipped.items():
            summary.skipped[k] = summary.skipped.get(k, 0) + n
        for per in self._dropped.values():
            for name, n in per.items():
                summary.dropped[name] = summary.dropped.get(name, 0) + n
        return summary


def parse_allow_loss(text: str | Iterable[str] | None) -> frozenset[str]:
    """``"crowd,attributes"`` or ``"all"`` as a set of loss kinds.

    Args:
        text: Comma-separated kinds, an iterable of them, or None.

    Returns:
        The kinds.

    Raises:
        ConfigError: An unknown kind; the message lists the valid ones.
    """
    if text is None:
        return frozenset()
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = {s.strip() for s in items if s.strip()}
    if "all" in kinds:
        return frozenset(LOSS_KINDS)
    WriteOptions(allow_loss=frozenset(kinds))  # validates the names
    return frozenset(kinds)


def parse_split_map(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"trainval=train,default=val"`` as ``{source split: new split}``.

    ``none`` names the images without a split, on either side (``default=none`` makes
    CVAT's ``default`` subset unsplit).

    Args:
        text: ``SRC=DST`` pairs separated by commas, a mapping, or None.

    Returns:
        The mapping, ``""`` standing for "no split".

    Raises:
        ConfigError: A pair is not ``SRC=DST``.
    """
    if text is None:
        return {}
    pairs = text.items() if isinstance(text, Mapping) else \
        [tuple(p.split("=", 1)) if "=" in p else (p, None) for p in text.split(",") if p.strip()]
    out: dict[str, str] = {}
    for src, dst in pairs:
        if dst is None or not str(src).strip() and not str(dst).strip():
            raise ConfigError(f"split map entry {src!r} must be SRC=DST, e.g. trainval=train")
        key, value = str(src).strip(), str(dst).strip()
        out["" if key == "none" else key] = "" if value == "none" else value
    return out
