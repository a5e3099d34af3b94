"""Dataset-wide checks: class imbalance, unused classes, empty images, split files.

Ignore regions (``ignore=True``) are not objects of any class, so they count neither
towards class totals nor towards an image being non-empty.
"""

from __future__ import annotations

import numpy as np

from detforge.data.dataset import Dataset
from detforge.data.validate.report import Finding, dataset_location

__all__ = ["IMBALANCE_RATIO", "dataset_findings"]

IMBALANCE_RATIO = 50.0
"""A most/least frequent class box-count ratio at or above this is reported."""


def dataset_findings(ds: Dataset, *, imbalance_ratio: float = IMBALANCE_RATIO,
                     ) -> list[Finding]:
    """Class balance, unused classes and empty images.

    Args:
        ds: The dataset.
        imbalance_ratio: Ratio of the largest to the smallest non-zero class count that
            triggers ``class_imbalance``.

    Returns:
        The findings (``empty_image`` ones have ``image_index`` set).
    """
    out: list[Finding] = []
    where = dataset_location(ds)
    counts = ds.class_counts()
    names = ds.classes.names
    for cid in np.flatnonzero(counts == 0).tolist():
        out.append(Finding("warning", "unused_class", where, None,
                           f"class {cid} {names[cid]!r} is defined but has no boxes",
                           "label some examples or remove the class from the class list"))
    used = np.flatnonzero(counts > 0)
    if len(used) >= 2:
        hi = int(used[np.argmax(counts[used])])
        lo = int(used[np.argmin(counts[used])])
        ratio = counts[hi] / counts[lo]
        if ratio >= imbalance_ratio:
            out.append(Finding(
                "warning", "class_imbalance", where, None,
                f"class {names[hi]!r} has {counts[hi]} boxes, class {names[lo]!r} only "
                f"{counts[lo]} ({ratio:.0f}x, threshold {imbalance_ratio:g}x)",
                f"label more {names[lo]!r} examples, or use class weights / oversampling"))
    for conflict in ds.info.get("split_conflicts", []):
        out.append(Finding("error", "split_leak", where, None,
                           f"image listed in two splits: {conflict} (the reader kept the first)",
                           "list each image in one split file only (--fix writes the copy "
                           "with the first split)"))
    for split, ident in ds.info.get("dangling_split_ids", []):
        out.append(Finding("warning", "dangling_split_id", where, None,
                           f"split {split!r} lists {ident!r}, which has no labels and no image",
                           "remove the id from the split file or add the image"))
    objects = ds.boxes.image_index[~ds.boxes.ignore]
    per_image = np.bincount(objects, minlength=ds.num_images)
    for i in np.flatnonzero(per_image == 0).tolist():
        out.append(Finding("info", "empty_image", str(ds.images.file[i]), None,
                           "image has no boxes (a background image)",
                           "fine as a negative example; otherwise label it", image_index=i))
    return out
