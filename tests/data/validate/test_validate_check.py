"""validate(): one planted defect of each kind is found with its check id, file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from detforge.data.dataset import Dataset
from detforge.data.validate import Finding, ValidationReport, validate

from .conftest import MakeDataset, plant_defects

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
