"""Dataset validation: find what is wrong with a dataset, and write a repaired copy.

Example:
    >>> from detforge.data import read_dataset
    >>> from detforge.data.validate import fix, validate
    >>> ds = read_dataset("datasets/ppe")  # doctest: +SKIP
    >>> report = validate(ds)  # doctest: +SKIP
    >>> if report.has_errors:  # doctest: +SKIP
    ...     fix(ds, report, "datasets/ppe_fixed")

Check ids (``Finding.check``) and severities:

=========================  ========  ===============================================
check                      severity  --fix
=========================  ========  ===============================================
missing_image              error     drop the image
unreadable_image           error     drop the image
truncated_image            error     drop the image
size_mismatch              error     use the file's size (rescale boxes if resized)
box_not_finite             error     drop the box
unknown_class              error     drop the box
box_too_small              error     drop the box
box_outside_image          error     drop the box
split_leak                 error     drop the copy outside the representative split
box_partly_outside         warning   clip the box
duplicate_box              warning   drop the later box
exact_duplicate_image      warning   (left alone)
near_duplicate_image       warning   (left alone)
class_imbalance            warning   (left alone)
unused_class               warning   (left alone)
box_size_outlier           info      (left alone)
empty_image                info      (left alone)
images_not_checked         info      (left alone)
=========================  ========  ===============================================
"""

from detforge.data.validate.check import validate, validate_path
from detforge.data.validate.fix import FIX_LOG, FixResult, fix
from detforge.data.validate.report import Finding, ValidationReport

__all__ = ["FIX_LOG", "Finding", "FixResult", "ValidationReport", "fix", "validate",
           "validate_path"]
