"""validate(): one planted defect of each kind is found with its check id, file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.validate import Finding, ValidationReport, validate

from .conftest import MakeDataset, W, build

EXPECTED = [
    ("missing_image", "error", "images/train/img_00.png", None),
    ("unreadable_image", "error", "images/train/img_01.jpg", None),
    ("truncated_image", "error", "images/train/img_02.jpg", None),
    ("size_mismatch", "error", "labels/train/img_04.txt", None),
    ("box_partly_outside", "warning", "labels/train/img_05.txt", 1),
    ("box_outside_image", "error", "labels/train/img_05.txt", 2),
    ("box_too_small", "error", "labels/train/img_06.txt", 1),
    ("box_not_finite", "error", "labels/train/img_06.txt", 2),
    ("unknown_class", "error", "labels/train/img_06.txt", 3),
    ("duplicate_box", "warning", "labels/train/img_08.txt", 4),
    ("exact_duplicate_image", "warning", "images/train/copy_09.png", None),
    ("near_duplicate_image", "warning", "images/train/near_10.jpg", None),
    ("split_leak", "error", "images/val/leak_08.jpg", None),
]


def _add_images(ds: Dataset, new: list[tuple[str, str, int]]) -> Dataset:
    """Append images (file, split, copy labels of image row) with their own label files."""
    im, b = ds.images, ds.boxes
    files = [*im.file.tolist(), *(f for f, _, _ in new)]
    splits = [*im.split.tolist(), *(s for _, s, _ in new)]
    labels = [*im.label_file.tolist(),
              *(f.replace("images/", "labels/").rsplit(".", 1)[0] + ".txt" for f, _, _ in new)]
    n0 = len(im)
    tables = [b]
    for k, (_, _, src) in enumerate(new):
        rows = b.take(b.image_index == src)
        rows.image_index = np.full(len(rows), n0 + k, np.int32)
        tables.append(rows)
    images = ImageTable.build(files, [*im.width, *[W] * len(new)],
                              [*im.height, *[64] * len(new)], split=splits, label_file=labels)
    return Dataset(ds.classes, images, BoxTable.concat(tables), ds.root, dict(ds.info))


def plant_defects(root: Path) -> Dataset:
    """The clean dataset with one defect of each kind (see EXPECTED)."""
    ds = build(root)
    (root / "images/train/img_00.png").unlink()
    (root / "images/train/img_01.jpg").write_bytes(b"this is not an image")
    data = (root / "images/train/img_02.jpg").read_bytes()
    (root / "images/train/img_02.jpg").write_bytes(data[: len(data) // 2])
    ds.images.width[4] = 128
    xyxy = ds.boxes.xyxy
    xyxy[3 * 5 + 0, 2] = W + 10
    xyxy[3 * 5 + 1] = [W + 20, 10, W + 40, 30]
    xyxy[3 * 6 + 0, 2] = xyxy[3 * 6 + 0, 0]
    xyxy[3 * 6 + 1, 1] = np.nan
    ds.boxes.class_id[3 * 6 + 2] = 7
    shutil.copy(root / "images/train/img_09.png", root / "images/train/copy_09.png")
    (root / "images/val").mkdir(exist_ok=True)
    shutil.copy(root / "images/train/img_08.jpg", root / "images/val/leak_08.jpg")
    with Image.open(root / "images/train/img_10.jpg") as im:
        brighter = Image.fromarray(np.clip(np.asarray(im, np.int16) + 4, 0, 255).astype(np.uint8))
    brighter.save(root / "images/train/near_10.jpg", quality=90)
    ds = _add_images(ds, [("images/train/copy_09.png", "train", 9),
                          ("images/train/near_10.jpg", "train", 10),
                          ("images/val/leak_08.jpg", "val", 8)])
    dup = ds.boxes.take(np.array([3 * 8]))
    dup.xyxy = dup.xyxy + 0.1
    dup.line[:] = 4
    return Dataset(ds.classes, ds.images, BoxTable.concat([ds.boxes, dup]), root, ds.info)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, ValidationReport]:
    root = tmp_path_factory.mktemp("planted")
    ds = plant_defects(root)
    return ds, validate(ds, progress=False)


def test_clean_dataset_has_no_findings(make_dataset: MakeDataset) -> None:
    report = validate(make_dataset(), progress=False)
    assert report.findings == []
    assert not report.has_errors
    assert report.summary()["by_severity"] == {"error": 0, "warning": 0, "info": 0}


@pytest.mark.parametrize(("check", "severity", "file", "line"), EXPECTED,
                         ids=[e[0] for e in EXPECTED])
def test_planted_defect_is_found(planted: tuple[Dataset, ValidationReport], check: str,
                                 severity: str, file: str, line: int | None) -> None:
    _, report = planted
    found = report.by_check(check)
    assert [(f.severity, f.file, f.line) for f in found] == [(severity, file, line)]
    assert found[0].message and found[0].fix


def test_planted_defects_and_nothing_else(planted: tuple[Dataset, ValidationReport]) -> None:
    _, report = planted
    got = sorted((f.check, f.severity, f.file, f.line or 0) for f in report.findings)
    assert got == sorted((c, s, f, ln or 0) for c, s, f, ln in EXPECTED)
    assert report.has_errors
    assert [f.severity for f in report.findings] == sorted(
        (f.severity for f in report.findings), key=["error", "warning", "info"].index)


def test_report_json_and_text(planted: tuple[Dataset, ValidationReport]) -> None:
    _, report = planted
    d = report.to_dict()
    assert set(d) == {"summary", "findings"}
    assert set(d["findings"][0]) == {"severity", "check", "file", "line", "message", "fix"}
    assert d["summary"]["by_severity"] == {"error": 9, "warning": 4, "info": 0}
    assert d["summary"]["by_check"]["split_leak"] == 1
    text = report.to_text()
    assert text.index("ERRORS (9)") < text.index("WARNINGS (4)")
    assert "labels/train/img_06.txt:2" in text
    assert text.splitlines()[-1] == report.summary_line() == \
        "15 images, 46 boxes: 9 errors, 4 warnings, 0 info"


def test_text_limits_findings_per_check() -> None:
    findings = [Finding("info", "empty_image", f"{i}.jpg", None, "no boxes", "label it")
                for i in range(30)]
    text = ValidationReport(findings, num_images=30).to_text(limit_per_check=5)
    assert text.count("[empty_image] ") == 6
    assert "... and 25 more" in text


def test_annotation_only_skips_image_checks(tmp_path: Path) -> None:
    report = validate(plant_defects(tmp_path), check_images=False)
    checks = set(report.counts_by_check())
    assert "box_too_small" in checks and "duplicate_box" in checks
    assert not checks & {"missing_image", "split_leak", "exact_duplicate_image"}
    assert report.summary()["checked_images"] is False


def test_no_root_reports_images_not_checked(make_dataset: MakeDataset) -> None:
    ds = make_dataset(n_images=4)
    ds.root = None
    report = validate(ds, progress=False)
    assert [f.check for f in report.findings] == ["images_not_checked"]


def test_bccd_zero_area_boxes_are_reported(bccd_path: Path) -> None:
    voc = pytest.importorskip("detforge.data.formats.voc")
    ds = voc.read(bccd_path)
    report = validate(ds, check_images=False)
    small = report.by_check("box_too_small")
    assert small, "BCCD has zero-area boxes"
    assert all(f.severity == "error" and f.file.endswith(".xml") for f in small)
    assert all("width and height must be at least 1 px" in f.message for f in small)
