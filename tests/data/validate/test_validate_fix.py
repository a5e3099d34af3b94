"""fix(): the repaired copy validates without errors, the log names every change,
and the source is never modified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from detforge.core.errors import ConfigError
from detforge.data.validate import FIX_LOG, fix, validate
from detforge.data.validate.fix import repair

from .conftest import H, MakeDataset, W, plant_defects


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_repair_in_memory_validates_clean(tmp_path: Path) -> None:
    ds = plant_defects(tmp_path)
    fixed, log = repair(ds, validate(ds, progress=False))
    again = validate(fixed, progress=False)
    assert not again.has_errors, again.to_text()
    assert fixed.num_images == ds.num_images - 4  # missing, unreadable, truncated, leak
    actions = {(e["action"], e["check"], e["file"], e["line"]) for e in log}
    assert ("clip_box", "box_partly_outside", "labels/train/img_05.txt", 1) in actions
    for check, line in [("box_outside_image", 2)]:
        assert ("drop_box", check, "labels/train/img_05.txt", line) in actions
    for check, line in [("box_too_small", 1), ("box_not_finite", 2), ("unknown_class", 3)]:
        assert ("drop_box", check, "labels/train/img_06.txt", line) in actions
    assert ("drop_box", "duplicate_box", "labels/train/img_08.txt", 4) in actions
    dropped = {e["before"] for e in log if e["action"] == "drop_image"}
    assert dropped == {"images/train/img_00.png", "images/train/img_01.jpg",
                       "images/train/img_02.jpg", "images/val/leak_08.jpg"}
    clip = next(e for e in log if e["action"] == "clip_box")
    assert clip["before"][2] == W + 10 and clip["after"][2] == W
    nan_drop = next(e for e in log if e["check"] == "box_not_finite")
    assert nan_drop["before"][1] is None and nan_drop["after"] is None
    json.dumps(log)  # every entry is JSON-serialisable (NaN written as null)


@pytest.mark.parametrize(("label_size", "scale"), [((2 * W, 2 * H), 0.5), ((W + 40, H), 1.0)],
                         ids=["resized-rescales", "other-aspect-keeps"])
def test_size_mismatch_fix(make_dataset: MakeDataset, label_size: tuple[int, int],
                           scale: float) -> None:
    ds = make_dataset(n_images=4)
    ds.images.width[1], ds.images.height[1] = label_size
    report = validate(ds, progress=False)
    assert [f.check for f in report.findings] == ["size_mismatch"]
    fixed, log = repair(ds, report)
    rows = ds.boxes.image_index == 1
    np.testing.assert_allclose(fixed.boxes.xyxy[rows], ds.boxes.xyxy[rows] * scale)
    assert (int(fixed.images.width[1]), int(fixed.images.height[1])) == (W, H)
    assert log[0]["before"] == list(label_size) and log[0]["after"] == [W, H]
    assert not validate(fixed, progress=False).has_errors


def test_fix_writes_copy_and_log_and_keeps_source(tmp_path: Path) -> None:
    pytest.importorskip("detforge.data.formats.yolo")
    from detforge.data.formats import read_dataset

    src = tmp_path / "src"
    src.mkdir()
    ds = plant_defects(src)
    before = _tree_digest(src)
    report = validate(ds, progress=False)
    result = fix(ds, report, tmp_path / "fixed")
    assert _tree_digest(src) == before
    assert result.format == "yolo" and result.log == tmp_path / "fixed" / FIX_LOG
    lines = result.log.read_text().splitlines()
    assert len(lines) == sum(result.changes.values()) > 0
    assert set(json.loads(lines[0])) == {"action", "check", "file", "line", "before", "after"}
    again = validate(read_dataset(result.out, "yolo"), progress=False)
    assert not again.has_errors, again.to_text()


@pytest.mark.parametrize("where", ["same", "inside", "non-empty"])
def test_fix_refuses_unsafe_output(make_dataset: MakeDataset, tmp_path: Path,
                                   where: str) -> None:
    ds = make_dataset(n_images=2)
    assert ds.root is not None
    out = {"same": ds.root, "inside": ds.root / "fixed", "non-empty": tmp_path / "full"}[where]
    if where == "non-empty":
        out.mkdir()
        (out / "x.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="(?i)choose"):
        fix(ds, validate(ds, progress=False), out, "yolo")


def test_fix_without_format_is_a_config_error(make_dataset: MakeDataset, tmp_path: Path) -> None:
    ds = make_dataset(n_images=2)
    ds.info.pop("format")
    with pytest.raises(ConfigError, match="output format"):
        fix(ds, validate(ds, progress=False), tmp_path / "out")
