"""Findings and the validation report: what is wrong, where, and how to fix it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from detforge.data.dataset import Dataset

__all__ = ["SEVERITIES", "Finding", "Severity", "ValidationReport", "box_label", "box_location",
           "other_box"]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

#: Text output shows at most this many findings per check; ``--json`` shows all.
TEXT_LIMIT_PER_CHECK = 20


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in a dataset.

    Attributes:
        severity: ``"error"`` (breaks training or evaluation), ``"warning"`` (probably
            wrong) or ``"info"`` (worth a look).
        check: Stable snake_case id of the check, e.g. ``"box_too_small"``.
        file: The label file (text formats), annotation JSON (COCO) or image path.
        line: 1-based line in ``file`` for text formats, else None.
        message: What is wrong, with the offending value.
        fix: How to fix it.
        image_index: Row of the image in the dataset's image table (None: dataset-wide).
        box_index: Row of the box in the box table (None: not about one box).
        value: Data the fix needs (e.g. the actual ``(width, height)`` of an image).
    """

    severity: Severity
    check: str
    file: str
    line: int | None
    message: str
    fix: str
    image_index: int | None = field(default=None, compare=False)
    box_index: int | None = field(default=None, compare=False)
    value: Any = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``severity, check, file, line, message, fix``."""
        return {"severity": self.severity, "check": self.check, "file": self.file,
                "line": self.line, "message": self.message, "fix": self.fix}

    def where(self) -> str:
        """``file:line`` or ``file``."""
        return f"{self.file}:{self.line}" if self.line else self.file


def box_location(ds: Dataset, box: int) -> tuple[str, int | None]:
    """(file, line) naming box ``box``: its label file and line, or its image file."""
    img = int(ds.boxes.image_index[box])
    line = int(ds.boxes.line[box])
    return image_label_file(ds, img), (line if line > 0 else None)


def box_label(ds: Dataset, box: int) -> str:
    """``"annotation id 17 of image a.jpg: "`` for a box with an annotation id (COCO), else
    ``""`` (text formats are named by file and line)."""
    ann = ds.boxes.extra.get("ann_id")
    if ann is None or ann[box] < 0:
        return ""
    image = ds.images.file[int(ds.boxes.image_index[box])]
    return f"annotation id {int(ann[box])} of image {image}: "


def other_box(ds: Dataset, box: int) -> str:
    """How a message names another box: ``annotation id 3``, ``line 7`` or ``the box``."""
    ann = ds.boxes.extra.get("ann_id")
    if ann is not None and ann[box] >= 0:
        return f"annotation id {int(ann[box])}"
    line = int(ds.boxes.line[box])
    return f"line {line}" if line > 0 else "the box"


def image_label_file(ds: Dataset, img: int) -> str:
    """The file that holds image ``img``'s labels, else the image path."""
    label = str(ds.images.label_file[img] or "")
    if label:
        return label
    if ds.info.get("format") == "coco" and ds.info.get("source"):
        return str(ds.info["source"])  # the annotation JSON (or its folder)
    return str(ds.images.file[img])


def dataset_location(ds: Dataset) -> str:
    """A path naming the whole dataset, for dataset-wide findings."""
    for key in ("path", "source"):
        if ds.info.get(key):
            return str(ds.info[key])
    return str(ds.root) if ds.root is not None else "<dataset>"


@dataclass
class ValidationReport:
    """Everything :func:`~detforge.data.validate.validate` found.

    Attributes:
        findings: The findings, errors first, then warnings, then info.
        num_images: Images checked.
        num_boxes: Boxes checked.
        checked_images: Whether image files were opened (missing, corrupt, hashes).
    """

    findings: list[Finding]
    num_images: int = 0
    num_boxes: int = 0
    checked_images: bool = True

    def __post_init__(self) -> None:
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        self.findings = sorted(self.findings, key=lambda f: rank[f.severity])

    @property
    def has_errors(self) -> bool:
        """True when at least one finding is an error."""
        return any(f.severity == "error" for f in self.findings)

    def counts_by_severity(self) -> dict[str, int]:
        """Number of findings per severity (every severity present, maybe 0)."""
        counts = Counter(f.severity for f in self.findings)
        return {s: counts.get(s, 0) for s in SEVERITIES}

    def counts_by_check(self) -> dict[str, int]:
        """Number of findings per check id, sorted by id."""
        return dict(sorted(Counter(f.check for f in self.findings).items()))

    def by_check(self, check: str) -> list[Finding]:
        """The findings of one check."""
        return [f for f in self.findings if f.check == check]

    def summary(self) -> dict[str, Any]:
        """Counts for the JSON ``summary`` object."""
        return {"images": self.num_images, "boxes": self.num_boxes,
                "checked_images": self.checked_images, "has_errors": self.has_errors,
                "by_severity": self.counts_by_severity(), "by_check": self.counts_by_check()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"summary": {...}, "findings": [...]}``."""
        return {"summary": self.summary(), "findings": [f.to_dict() for f in self.findings]}

    def summary_line(self) -> str:
        """One line, e.g. ``120 images, 900 boxes: 2 errors, 1 warning, 0 info``."""
        c = self.counts_by_severity()
        plural = "" if c["error"] == 1 else "s"
        wplural = "" if c["warning"] == 1 else "s"
        return (f"{self.num_images} images, {self.num_boxes} boxes: {c['error']} error{plural}, "
                f"{c['warning']} warning{wplural}, {c['info']} info")

    def to_text(self, limit_per_check: int = TEXT_LIMIT_PER_CHECK) -> str:
        """Human-readable report grouped by severity, ending with the summary line."""
        lines: list[str] = []
        for sev in SEVERITIES:
            group = [f for f in self.findings if f.severity == sev]
            if not group:
                continue
            lines.append(f"{sev.upper()}S ({len(group)})")
            lines.extend(_render_group(group, limit_per_check))
            lines.append("")
        lines.append(self.summary_line())
        return "\n".join(lines)


def _render_group(group: Iterable[Finding], limit: int) -> list[str]:
    shown: Counter[str] = Counter()
    hidden: Counter[str] = Counter()
    out: list[str] = []
    for f in group:
        if shown[f.check] >= limit:
            hidden[f.check] += 1
            continue
        shown[f.check] += 1
        out.append(f"  [{f.check}] {f.where()}: {f.message}")
        out.append(f"      fix: {f.fix}")
    for check, n in sorted(hidden.items()):
        out.append(f"  [{check}] ... and {n} more (use --json to see all)")
    return out
