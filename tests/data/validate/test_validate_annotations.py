"""Box and dataset-wide checks on in-memory datasets (no image files)."""

from __future__ import annotations

import numpy as np
import pytest

from detforge.core.boxes import box_iou
from detforge.core.classes import ClassMap
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.validate import validate
from detforge.data.validate.annotations import duplicate_pairs


def _ds(boxes: list[tuple[int, list[float], int]], *, n_images: int = 1,
        classes: tuple[str, ...] = ("a", "b"), size: int = 100,
        ignore: list[bool] | None = None) -> Dataset:
    images = ImageTable.build([f"img{i}.jpg" for i in range(n_images)], [size] * n_images,
                              [size] * n_images)
    table = BoxTable.build([b[0] for b in boxes], [b[1] for b in boxes],
                           [b[2] for b in boxes], ignore=ignore)
    return Dataset(ClassMap.from_names(classes), images, table, info={"path": "ds"})


def _checks(ds: Dataset) -> list[str]:
    return sorted(f.check for f in validate(ds, check_images=False).findings)


@pytest.mark.parametrize(("box", "cls", "expected"), [
    ([10, 10, 20, 20], 0, []),
    ([10, 10, 10, 20], 0, ["box_too_small"]),
    ([10, 10, 10.5, 20], 0, ["box_too_small"]),
    ([20, 10, 10, 20], 0, ["box_too_small"]),
    ([np.nan, 10, 20, 20], 0, ["box_not_finite"]),
    ([10, 10, np.inf, 20], 0, ["box_not_finite"]),
    ([10, 10, 20, 20], 5, ["unknown_class"]),
    ([10, 10, 20, 20], -1, ["unknown_class"]),
    ([90, 10, 120, 20], 0, ["box_partly_outside"]),
    ([-5, 10, 20, 20], 0, ["box_partly_outside"]),
    ([100, 10, 120, 20], 0, ["box_outside_image"]),
    ([99.5, 10, 130, 20], 0, ["box_outside_image"]),
    ([0, 0, 100, 100], 0, []),
], ids=["ok", "zero-width", "half-pixel", "negative", "nan", "inf", "class-5", "class-minus1",
        "partly-right", "partly-left", "wholly-outside", "sliver-inside", "full-image"])
def test_single_box_checks(box: list[float], cls: int, expected: list[str]) -> None:
    # Two classes each used once elsewhere so dataset-wide checks stay quiet.
    ds = _ds([(0, box, cls), (1, [1, 1, 9, 9], 0), (1, [1, 1, 9, 9], 1)], n_images=2)
    assert _checks(ds) == expected


def test_ignore_regions_are_exempt_from_class_checks() -> None:
    ds = _ds([(0, [1, 1, 9, 9], 0), (0, [1, 1, 9, 9], 1), (1, [5, 5, 50, 50], -1)],
             n_images=2, ignore=[False, False, True])
    # Class -1 is fine for an ignore region; the image with only an ignore region is empty.
    assert _checks(ds) == ["empty_image"]


@pytest.mark.parametrize(("second", "same_class", "dup"), [
    ([10, 10, 50, 50], True, True),
    ([10.2, 10, 50.2, 50], True, True),
    ([12, 10, 52, 50], True, False),
    ([10, 10, 50, 50], False, False),
], ids=["identical", "shifted-0.2px", "shifted-2px", "other-class"])
def test_duplicate_boxes(second: list[float], same_class: bool, dup: bool) -> None:
    ds = _ds([(0, [10, 10, 50, 50], 0), (0, second, 0 if same_class else 1),
              (0, [60, 60, 70, 70], 1)])
    found = validate(ds, check_images=False).by_check("duplicate_box")
    assert [f.box_index for f in found] == ([1] if dup else [])


def test_duplicate_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    m = 600
    img = rng.integers(0, 20, m)
    cls = rng.integers(0, 3, m)
    xy = rng.uniform(0, 50, (m, 2))
    wh = rng.uniform(5, 20, (m, 2))
    xyxy = np.concatenate([xy, xy + wh], axis=1)
    copies = rng.choice(m, 60, replace=False)  # plant near-copies
    xyxy = np.concatenate([xyxy, xyxy[copies] + rng.uniform(-0.1, 0.1, (60, 4))])
    img, cls = np.concatenate([img, img[copies]]), np.concatenate([cls, cls[copies]])
    first, second, iou = duplicate_pairs(img, cls, xyxy)
    iou_all = box_iou(xyxy, xyxy)
    same = (img[:, None] == img[None]) & (cls[:, None] == cls[None])
    a, b = np.nonzero(np.triu(same & (iou_all > 0.95), k=1))
    assert sorted(zip(first.tolist(), second.tolist(), strict=True)) == \
        sorted(zip(a.tolist(), b.tolist(), strict=True))
    assert len(a) >= 60
    np.testing.assert_allclose(iou, iou_all[first, second])


@pytest.mark.parametrize(("counts", "expected"), [
    ((100, 2), ["class_imbalance"]),
    ((49, 1), []),
    ((50, 1), ["class_imbalance"]),
    ((5, 0), ["unused_class"]),
], ids=["100-to-2", "49-to-1", "50-to-1", "unused"])
def test_class_balance(counts: tuple[int, int], expected: list[str]) -> None:
    boxes: list[tuple[int, list[float], int]] = [
        (i, [1.0, 1.0, 9.0, 9.0], c) for c, n in enumerate(counts) for i in range(n)]
    ds = _ds(boxes, n_images=max(counts))
    assert _checks(ds) == expected


def test_empty_image_is_info() -> None:
    ds = _ds([(0, [1, 1, 9, 9], 0), (0, [1, 1, 9, 9], 1)], n_images=2)
    [finding] = validate(ds, check_images=False).findings
    assert (finding.check, finding.severity, finding.file) == ("empty_image", "info", "img1.jpg")


def test_box_size_outlier() -> None:
    rng = np.random.default_rng(1)
    sides = rng.uniform(18, 22, 40)
    boxes = [(0, [10, 10, 10 + s, 10 + s], 0) for s in sides] + [(0, [1, 1, 9, 9], 1)]
    boxes.append((0, [0, 0, 990, 990], 0))
    ds = _ds(boxes, size=1000)
    [finding] = validate(ds, check_images=False).by_check("box_size_outlier")
    assert finding.box_index == len(boxes) - 1 and finding.severity == "info"
    assert "typical" in finding.message


@pytest.mark.slow
def test_annotation_checks_scale_to_coco_size() -> None:
    """900k boxes on 120k images, annotation checks only: they run to a clean report (the
    time it takes is measured by benchmarks/bench_data_io.py, not asserted here)."""
    rng = np.random.default_rng(0)
    n, m = 120_000, 900_000
    img = np.sort(rng.integers(0, n, m))
    xy = rng.uniform(0, 500, (m, 2))
    wh = rng.uniform(2, 120, (m, 2))
    images = ImageTable.build([f"{i}.jpg" for i in range(n)], np.full(n, 640), np.full(n, 640))
    boxes = BoxTable.build(img, np.concatenate([xy, xy + wh], axis=1),
                           rng.integers(0, 80, m))
    ds = Dataset(ClassMap.from_names([f"c{i}" for i in range(80)]), images, boxes)
    report = validate(ds, check_images=False)
    assert not report.has_errors
