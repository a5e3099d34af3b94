"""``detforge data validate``: exit codes 0/1/2, JSON keys, --fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.classes import ClassMap
from detforge.data.dataset import BoxTable, Dataset, ImageTable

runner = CliRunner()


@pytest.fixture
def yolo_ds(tmp_path: Path) -> Path:
    """A clean 4-image YOLO dataset (train/val) with two classes."""
    pytest.importorskip("detforge.data.formats.yolo")
    from detforge.data.formats import write_dataset

    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    files, idx, xyxy, cls = [], [], [], []
    for i in range(4):
        rel = f"img_{i}.jpg"
        small = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
        src.mkdir(exist_ok=True)
        Image.fromarray(small).resize((96, 64)).save(src / rel)
        files.append(rel)
        for c in range(2):
            idx.append(i)
            xyxy.append([10 + 30 * c, 10, 30 + 30 * c, 40])
            cls.append(c)
    ds = Dataset(ClassMap.from_names(["car", "person"]),
                 ImageTable.build(files, [96] * 4, [64] * 4,
                                  split=["train", "train", "train", "val"]),
                 BoxTable.build(idx, xyxy, cls), root=src)
    out = tmp_path / "yolo"
    write_dataset(ds, out, "yolo")
    return out


def _break(ds: Path) -> None:
    with (ds / "labels/train/img_0.txt").open("a") as fh:
        fh.write("7 0.5 0.5 0.1 0.1\n0 0.5 0.5 0 0.1\n")


def test_clean_dataset_exits_0(yolo_ds: Path) -> None:
    result = runner.invoke(app, ["data", "validate", str(yolo_ds)])
    assert result.exit_code == 0, result.output
    assert "4 images, 8 boxes: 0 errors, 0 warnings, 0 info" in result.stdout


def test_errors_exit_1_with_file_and_line(yolo_ds: Path) -> None:
    _break(yolo_ds)
    result = runner.invoke(app, ["data", "validate", str(yolo_ds)])
    assert result.exit_code == 1, result.output
    assert "ERRORS (2)" in result.stdout
    assert "[unknown_class] labels/train/img_0.txt:3" in result.stdout
    assert "[box_too_small] labels/train/img_0.txt:4" in result.stdout
    assert "fix: " in result.stdout


def test_json_output(yolo_ds: Path) -> None:
    _break(yolo_ds)
    result = runner.invoke(app, ["data", "validate", str(yolo_ds), "--json", "--from", "yolo"])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"summary", "findings"}
    assert payload["summary"]["by_severity"]["error"] == 2
    finding = payload["findings"][0]
    assert set(finding) == {"severity", "check", "file", "line", "message", "fix"}
    assert {(f["check"], f["line"]) for f in payload["findings"]} == \
        {("unknown_class", 3), ("box_too_small", 4)}


@pytest.mark.parametrize("args", [["missing-dir"], ["notads", "--from", "voc"], ["x", "--json"]],
                         ids=["missing", "wrong-format", "missing-json"])
def test_unreadable_dataset_exits_2(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "notads").mkdir()
    args = [str(tmp_path / args[0]), *args[1:]]
    result = runner.invoke(app, ["data", "validate", *args])
    assert result.exit_code == 2, result.output
    assert "Error: " in result.output and "Traceback" not in result.output


def test_fix_writes_copy_that_validates_clean(yolo_ds: Path, tmp_path: Path) -> None:
    _break(yolo_ds)
    before = (yolo_ds / "labels/train/img_0.txt").read_bytes()
    out = tmp_path / "fixed"
    result = runner.invoke(app, ["data", "validate", str(yolo_ds), "--fix", str(out)])
    assert result.exit_code == 1, result.output
    assert f"fixed copy (yolo): {out}" in result.stdout
    assert f"change log: {out / 'fix_log.jsonl'} (2 drop_box)" in result.stdout
    assert (yolo_ds / "labels/train/img_0.txt").read_bytes() == before
    again = runner.invoke(app, ["data", "validate", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["summary"]["has_errors"] is False


def test_fix_into_another_format_refuses_losses_unless_allowed(tmp_path: Path) -> None:
    src = tmp_path / "coco"
    (src / "images").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(src / "images/a.png")
    (src / "annotations").mkdir()
    (src / "annotations/instances_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 5, 9, 9],
                         "iscrowd": 1}],
        "categories": [{"id": 1, "name": "car"}]}))
    args = ["data", "validate", str(src), "--fix", str(tmp_path / "fixed"), "--to", "yolo"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "DatasetError" in refused.output
    assert "--val-split train" in refused.output and "1 crowd regions" in refused.output
    assert not (tmp_path / "fixed").exists()
    done = runner.invoke(app, [*args, "--val-split", "train", "--allow-loss", "crowd"])
    assert done.exit_code == 0, done.output
    assert "left out (allowed): skipped 1 crowd regions" in done.output
    assert (tmp_path / "fixed/labels/train/a.txt").read_text().count("\n") == 1
