from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from detforge.cli import app

runner = CliRunner()


def _coco_src(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(root / "images/a.png")
    Image.new("RGB", (8, 8)).save(root / "images/b.png")
    (root / "annotations").mkdir()
    (root / "annotations/instances_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10},
                   {"id": 2, "file_name": "b.png", "width": 8, "height": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [1, 1, 5, 5]},
                        {"id": 2, "image_id": 1, "category_id": 4, "bbox": [2, 2, 5, 5]},
                        {"id": 3, "image_id": 2, "category_id": 4, "bbox": [0, 0, 8, 8],
                         "iscrowd": 1}],
        "categories": [{"id": 4, "name": "cat"}]}))
    return root


@pytest.mark.parametrize("extra", [[], ["--from", "coco"]], ids=["detected", "explicit"])
def test_convert_coco_to_yolo(tmp_path: Path, extra: list[str]) -> None:
    src = _coco_src(tmp_path / "src")
    out = tmp_path / "out"
    base = ["data", "convert", str(src), str(out), "--to", "yolo", *extra]
    refused = runner.invoke(app, base)
    assert refused.exit_code == 2 and "--val-split train" in refused.output
    assert "1 crowd regions (first: annotations/instances_train.json annotation id 3 (image " \
           "images/b.png))" in refused.output and not out.exists()
    result = runner.invoke(app, [*base, "--val-split", "train", "--allow-loss", "crowd"])
    assert result.exit_code == 0, result.output
    assert (f"converted coco -> yolo: 2 images (2 image files), 2 boxes, 1 classes -> {out}"
            in result.output)  # what was written: the crowd region is not among them
    assert "left out (allowed): skipped 1 crowd regions" in result.output
    assert (out / "data.yaml").is_file() and (out / "images/train/a.png").is_file()
    assert len((out / "labels/train/a.txt").read_text().splitlines()) == 2
    back = runner.invoke(app, ["data", "convert", str(out), str(tmp_path / "c"), "--to", "coco",
                               "--json"])
    assert back.exit_code == 0, back.output
    summary = json.loads(back.output)
    assert summary["written"]["boxes"] == 2 and summary["written"]["skipped"] == {}
    assert (tmp_path / "c/annotations/instances_train.json").is_file()


def test_convert_split_map_renames_splits(tmp_path: Path) -> None:
    src = _coco_src(tmp_path / "src")
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "convert", str(src), str(out), "--to", "coco",
                                 "--split-map", "train=val"])
    assert result.exit_code == 0, result.output
    assert (out / "annotations/instances_val.json").is_file()


@pytest.mark.parametrize(("args", "expect"), [
    (["{src}", "{src}", "--to", "yolo"], "ConfigError: output"),
    (["{src}", "{src}/sub", "--to", "yolo"], "lies inside it"),
    (["{src}", "{tmp}/o", "--to", "pascal"], "ConfigError: unknown dataset format 'pascal'"),
    (["{tmp}/none", "{tmp}/o", "--to", "yolo"], "DatasetError"),
    (["{src}", "{tmp}/o", "--to", "yolo", "--from", "voc"], "DatasetError"),
    (["{src}", "{tmp}/o", "--to", "voc", "--allow-loss", "everything"],
     "ConfigError: unknown loss kind(s) ['everything']"),
    (["{src}", "{tmp}/o", "--to", "voc", "--split-map", "train"], "must be SRC=DST"),
], ids=["out-is-src", "out-inside-src", "unknown-format", "missing-src", "wrong-from",
        "bad-loss-kind", "bad-split-map"])
def test_convert_errors(tmp_path: Path, args: list[str], expect: str) -> None:
    src = _coco_src(tmp_path / "src")
    argv = [a.format(src=src, tmp=tmp_path) for a in args]
    result = runner.invoke(app, ["data", "convert", *argv])
    assert result.exit_code == 2, result.output
    assert expect in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "o").exists()


def test_convert_help_shows_interface() -> None:
    result = runner.invoke(app, ["data", "convert", "--help"])
    assert result.exit_code == 0
    for option in ("--to", "--from", "--allow-loss", "--split-map", "--val-split",
                   "--allow-outside-root"):
        assert option in result.output
