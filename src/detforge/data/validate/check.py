"""``validate``: run every check on a dataset and collect the findings."""

from __future__ import annotations

from pathlib import Path

from detforge.data.dataset import Dataset
from detforge.data.formats.policy import WriteOptions
from detforge.data.validate.annotations import box_findings
from detforge.data.validate.dataset import dataset_findings
from detforge.data.validate.duplicates import NEAR_DUPLICATE_BITS, duplicate_findings
from detforge.data.validate.fix import FixResult, fix
from detforge.data.validate.images import (
    ImageProbe,
    check_sizes,
    image_findings,
    probe_images,
)
from detforge.data.validate.report import Finding, ValidationReport, dataset_location

__all__ = ["validate", "validate_path"]


def validate(dataset: Dataset, *, check_images: bool = True, progress: bool = True,
             near_duplicate_bits: int = NEAR_DUPLICATE_BITS) -> ValidationReport:
    """Check a dataset for problems that hurt training or evaluation.

    Annotation checks (vectorised, seconds for COCO size): non-finite coordinates,
    unknown class ids, boxes under 1 px, boxes wholly or partly outside the image,
    duplicate boxes, box size outliers, class imbalance, unused classes, empty images.
    Image checks (``check_images``; each file read once in a thread pool): missing,
    unreadable and truncated images, label size vs file size, exact and near-duplicate
    images and the same image in two splits.

    Args:
        dataset: The dataset; image paths are resolved against ``dataset.root``.
        check_images: Open the image files. Without a ``root`` there is nothing to open
            and an ``images_not_checked`` info finding says so.
        progress: Show a progress bar while reading images.
        near_duplicate_bits: Hamming distance (of 64 perceptual-hash bits) at or under
            which two images are near duplicates; -1 turns the near-duplicate check off.

    Returns:
        The report; ``report.has_errors`` tells whether the dataset needs fixing.

    Example:
        >>> report = validate(ds, check_images=False)  # doctest: +SKIP
        >>> [f.check for f in report.findings]  # doctest: +SKIP
        ['box_too_small']
    """
    findings: list[Finding] = []
    probes: list[ImageProbe] | None = None
    if check_images and dataset.root is None:
        findings.append(Finding(
            "info", "images_not_checked", dataset_location(dataset), None,
            "the dataset has no root folder, so image files were not checked",
            "read the dataset from disk (detforge.data.read_dataset) to check its images"))
        check_images = False
    if check_images:
        probes = probe_images(dataset, progress=progress)
        findings.extend(image_findings(dataset, probes))
    width, height = check_sizes(dataset, probes)
    findings.extend(box_findings(dataset, width, height))
    findings.extend(dataset_findings(dataset))
    if probes is not None:
        findings.extend(duplicate_findings(dataset, probes, max_distance=near_duplicate_bits))
    return ValidationReport(findings, num_images=dataset.num_images,
                            num_boxes=dataset.num_boxes, checked_images=check_images)


def validate_path(path: str | Path, *, fmt: str | None = None, check_images: bool = True,
                  progress: bool = True, fix_out: str | Path | None = None,
                  fix_format: str | None = None, options: WriteOptions | None = None,
                  allow_outside_root: bool = False,
                  ) -> tuple[ValidationReport, FixResult | None]:
    """Read a dataset from disk, validate it and, with ``fix_out``, write a repaired copy.

    Args:
        path: Dataset file or folder.
        fmt: Format name (``coco``, ``yolo``, ``voc``, ``kitti``); detected when None.
        check_images: Open the image files (see :func:`validate`).
        progress: Show a progress bar.
        fix_out: New folder for a repaired copy (see :func:`~detforge.data.validate.fix`);
            None writes nothing.
        fix_format: Format of the repaired copy (default: the source's).
        options: Losses the repaired copy's writer may incur (default none).
        allow_outside_root: Let a YOLO ``data.yaml`` name folders outside the dataset.

    Returns:
        ``(report, fix_result)``; ``fix_result`` is None without ``fix_out``. The report
        describes the source, so it keeps its errors after a fix.

    Raises:
        DatasetError: The dataset cannot be read (unknown layout, malformed file).
        ConfigError: ``fmt`` is not a known format, or ``fix_out`` overlaps the source.

    Example:
        >>> report, fixed = validate_path("ds", fix_out="ds_fixed")  # doctest: +SKIP
    """
    from detforge.data.formats import read_dataset

    dataset = read_dataset(path, fmt, allow_outside_root=allow_outside_root)
    dataset.info.setdefault("path", str(path))
    report = validate(dataset, check_images=check_images, progress=progress)
    fixed = None if fix_out is None else fix(dataset, report, fix_out, fix_format,
                                             options=options)
    return report, fixed
