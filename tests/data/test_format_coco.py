from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detforge.core.classes import ClassMap
from detforge.core.errors import ConfigError, DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats import WriteOptions, coco


def _coco(images: list[dict[str, Any]], anns: list[dict[str, Any]],
          cats: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"images": images, "annotations": anns,
            "categories": cats if cats is not None else [{"id": 1, "name": "a"},
                                                          {"id": 5, "name": "b"},
                                                          {"id": 90, "name": "c"}]}


def _write(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


IMAGES = [{"id": 42, "file_name": "ü/straße.jpg", "width": 640, "height": 480},
          {"id": 7, "file_name": "b.jpg", "width": 100, "height": 50},
          {"id": 9, "file_name": "empty.jpg", "width": 10, "height": 10}]
ANNS = [{"id": 1, "image_id": 42, "category_id": 90, "bbox": [10.5, 20.25, 30, 40], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 100, 50], "iscrowd": 1},
        {"id": 3, "image_id": 42, "category_id": 5, "bbox": [1, 2, 3, 4]}]


def test_read_maps_ids_bbox_crowd_and_empty_images(tmp_path: Path) -> None:
    ds = coco.read(_write(tmp_path / "annotations/instances_val2017.json", _coco(IMAGES, ANNS)))
    assert ds.root == tmp_path
    assert ds.classes.names == ("a", "b", "c") and ds.classes.source_ids == (1, 5, 90)
    assert ds.images.id.tolist() == [42, 7, 9]
    assert set(ds.images.split.tolist()) == {"val"}
    assert ds.images.file[0] == "annotations/ü/straße.jpg"  # no images/ folder: JSON's folder
    assert ds.boxes.xyxy.dtype == np.float64
    np.testing.assert_array_equal(ds.boxes.xyxy[0], [10.5, 20.25, 40.5, 60.25])
    assert ds.boxes.class_id.tolist() == [2, 0, 1]
    assert ds.boxes.image_index.tolist() == [0, 1, 0]
    assert ds.boxes.iscrowd.tolist() == [False, True, False]
    assert np.bincount(ds.boxes.image_index, minlength=3)[2] == 0  # empty image kept


def test_images_resolved_under_images_split_folder(tmp_path: Path) -> None:
    (tmp_path / "images/train").mkdir(parents=True)
    _write(tmp_path / "annotations/instances_train.json", _coco(IMAGES[:1], []))
    _write(tmp_path / "annotations/instances.json", _coco(IMAGES[1:2], []))
    _write(tmp_path / "annotations/captions_train.json", {"images": "not read"})
    ds = coco.read(tmp_path)
    got = dict(zip(ds.images.file.tolist(), ds.images.split.tolist(), strict=True))
    assert got == {"images/train/ü/straße.jpg": "train", "images/b.jpg": ""}


def test_write_round_trip_keeps_ids_flags_and_places_images(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    Image.new("RGB", (8, 6)).save(src / "images/straße.png")
    ds = Dataset(ClassMap(("x", "y"), (3, 17)),
                 ImageTable.build(["images/straße.png", "images/gone.png"], [8, 20], [6, 20],
                                  id=[5, 6], split=["train", "val"]),
                 BoxTable.build([0, 1, 1], [[0.1, 0.2, 7.9, 5.5], [1, 1, 2, 2], [3, 3, 9, 9]],
                                [1, 0, -1], iscrowd=[1, 0, 0], difficult=[0, 1, 0],
                                truncated=[0.25, 0, 0], occluded=[2, 0, 0],
                                ignore=[0, 0, 1]), root=src)
    with pytest.raises(DatasetError, match="1 ignore regions without a class.*allow-loss ignore"):
        coco.write(ds, tmp_path / "out")
    summary = coco.write(ds, tmp_path / "out",
                         options=WriteOptions(allow_loss=frozenset({"ignore"})))
    assert (summary.images, summary.image_files, summary.boxes) == (2, 1, 2)
    assert summary.skipped == {"ignore": 1}
    out = tmp_path / "out"
    assert (out / "images/train/straße.png").is_file()
    assert not (out / "images/val").exists()  # missing source image skipped
    val = json.loads((out / "annotations/instances_val.json").read_text(encoding="utf-8"))
    assert val["images"][0]["file_name"] == "gone.png"
    assert val["categories"] == [{"id": 3, "name": "x"}, {"id": 17, "name": "y"}]
    assert len(val["annotations"]) == 1  # the class-less ignore region is not written
    back = coco.read(out)
    assert back.classes == ds.classes
    assert back.images.id.tolist() == [5, 6]
    np.testing.assert_allclose(back.boxes.xyxy, ds.boxes.xyxy[:2], atol=1e-9)
    for flag in ("iscrowd", "difficult", "truncated", "occluded"):
        assert getattr(back.boxes, flag).tolist() == getattr(ds.boxes, flag)[:2].tolist(), flag
    assert not list(tmp_path.glob(".out.*"))  # staging folder gone


def test_unknown_category_is_kept_as_class_minus_one(tmp_path: Path) -> None:
    anns = [{"id": 8, "image_id": 7, "category_id": 3, "bbox": [0, 0, 1, 1]}]
    ds = coco.read(_write(tmp_path / "a.json", _coco(IMAGES, anns)))
    assert ds.boxes.class_id.tolist() == [-1]


@pytest.mark.parametrize(("obj", "expect"), [
    (_coco(IMAGES, [{"id": 77, "image_id": 1234, "category_id": 1, "bbox": [0, 0, 1, 1]}]),
     "annotation id 77 refers to image_id 1234"),
    (_coco(IMAGES, [{"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 1]}]),
     "annotation id 3 (annotations[0]) has bbox [0, 0, 1]"),
    (_coco(IMAGES, [{"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, "0", 1, 1]}]),
     "has bbox"),
    (_coco(IMAGES + IMAGES[:1], []), "image id 42 is used by more than one image"),
    (_coco([{"id": "x", "file_name": "a.jpg"}], []), 'images[0] "id" must be an integer'),
    (_coco([{"id": 1}], []), '"file_name" must be a non-empty string'),
    (_coco(IMAGES, [{"id": 1, "image_id": 7, "bbox": [0, 0, 1, 1]}]), 'has no "category_id"'),
    (_coco(IMAGES, [], [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]), "has two ids"),
    ({"images": 3}, 'an "images" list'),
    ([1, 2], 'an "images" list'),
], ids=["unknown-image-id", "short-bbox", "string-in-bbox", "duplicate-image-id", "string-id",
        "no-file-name", "no-category", "duplicate-category-name", "images-not-list",
        "not-object"])
def test_malformed_json_names_file_and_entry(tmp_path: Path, obj: Any, expect: str) -> None:
    path = _write(tmp_path / "bad.json", obj)
    with pytest.raises(DatasetError) as info:
        coco.read(path)
    assert str(path) in str(info.value) and expect in str(info.value)


def test_invalid_json_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DatasetError, match=r"bad.json:2: not valid JSON") as info:
        coco.read(path)
    assert info.value.line == 2


@pytest.mark.parametrize(("setup", "ctx"), [
    ("missing", contextlib.nullcontext()),
    ("empty-dir", contextlib.nullcontext()),
    ("non-empty", pytest.raises(ConfigError, match="not an empty folder")),
], ids=["missing", "empty-dir", "non-empty"])
def test_write_refuses_non_empty_output(tmp_path: Path, setup: str,
                                        ctx: contextlib.AbstractContextManager[Any]) -> None:
    ds = coco.read(_write(tmp_path / "src/a.json", _coco(IMAGES, ANNS)))
    out = tmp_path / "out"
    if setup != "missing":
        out.mkdir()
    if setup == "non-empty":
        (out / "keep.txt").write_text("mine")
    with ctx:
        coco.write(ds, out)
        assert (out / "annotations/instances.json").is_file()
    if setup == "non-empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_detect(tmp_path: Path) -> None:
    assert not coco.detect(tmp_path)
    _write(tmp_path / "annotations/x.json", _coco([], []))
    assert coco.detect(tmp_path) and coco.detect(tmp_path / "annotations/x.json")
