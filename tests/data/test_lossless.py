"""Nothing silently lost or changed by the format writers (one test per case).

Each writer keeps what its format can hold, or refuses in one line naming the first case
and the ``--allow-loss`` kind; with the kind allowed it leaves the data out and counts it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats import WriteOptions, read_dataset, write_dataset
from detforge.data.formats.convert import convert
from detforge.data.validate import validate

ALLOW = WriteOptions.lossy


def _img(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path)


def _ds(root: Path, splits: list[str], **boxes: Any) -> Dataset:
    files = [f"images/{i}.png" for i in range(len(splits))]
    for f in files:
        _img(root / f)
    n = len(boxes.get("cls", [0]))
    cols = {"iscrowd": None, "difficult": None, "truncated": None, "ignore": None, **boxes}
    return Dataset(ClassMap.from_names(["car", "person"]),
                   ImageTable.build(files, [40] * len(files), [30] * len(files), split=splits),
                   BoxTable.build(cols.pop("idx", [0] * n),
                                  cols.pop("xyxy", [[1, 1, 10, 10]] * n), cols.pop("cls", [0]),
                                  **{k: v for k, v in cols.items() if v is not None}),
                   root=root)


# --- 1. YOLO split names, train without val, unsplit datasets ---------------------------

@pytest.mark.parametrize(("splits", "expect"), [
    (["trainval", "val"], "split 'trainval' has no data.yaml key.*--split-map trainval=train"),
    (["default", "default"], "split 'default' has no data.yaml key"),
    (["train", "test"], "no val split.*--val-split train.*--split-map test=val"),
    (["", ""], "no val split.*--val-split train"),
    (["val", "val"], "no train split; map one with --split-map val=train"),
], ids=["trainval", "cvat-default", "train-test", "unsplit", "val-only"])
def test_yolo_refuses_splits_ultralytics_rejects(tmp_path: Path, splits: list[str],
                                                 expect: str) -> None:
    ds = _ds(tmp_path / "src", splits)
    with pytest.raises(DatasetError, match=expect) as err:
        write_dataset(ds, tmp_path / "out", "yolo")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("splits", "split_map", "val_split", "keys"), [
    (["trainval", "test"], {"trainval": "train", "test": "val"}, None,
     {"train": "images/train", "val": "images/val"}),
    (["train", "test"], {}, "train",
     {"train": "images/train", "val": "images/train", "test": "images/test"}),
    (["", ""], {}, "train", {"train": "images", "val": "images"}),
], ids=["mapped", "val-from-train", "unsplit-val-from-train"])
def test_yolo_options_give_a_data_yaml_ultralytics_accepts(
        tmp_path: Path, splits: list[str], split_map: dict[str, str], val_split: str | None,
        keys: dict[str, str]) -> None:
    from ultralytics.data.utils import check_det_dataset

    src = tmp_path / "src"
    write_dataset(_ds(tmp_path / "orig", splits), src, "coco")
    convert(src, tmp_path / "out", to="yolo", split_map=split_map,
            options=WriteOptions(val_split=val_split))
    data = yaml.safe_load((tmp_path / "out/data.yaml").read_text())
    assert {k: data[k] for k in ("train", "val", "test") if k in data} == keys
    checked = check_det_dataset(str(tmp_path / "out/data.yaml"), autodownload=False)
    assert checked["nc"] == 2 and Path(checked["train"]).is_dir()


def test_yolo_train_val_on_the_same_images_round_trips(tmp_path: Path) -> None:
    ds = _ds(tmp_path / "src", ["train", "train"])
    write_dataset(ds, tmp_path / "a", "yolo", options=WriteOptions(val_split="train"))
    back = read_dataset(tmp_path / "a")
    assert back.info["val_split"] == "train" and set(back.images.split) == {"train"}
    write_dataset(back, tmp_path / "b", "yolo")  # the source's own choice: no option needed
    assert yaml.safe_load((tmp_path / "b/data.yaml").read_text())["val"] == "images/train"


# --- 2. boxes of images whose size is unknown ---------------------------------------------

def _coco_file(root: Path, images: list[dict[str, Any]], anns: list[dict[str, Any]],
               name: str = "instances_train.json", cats: Any = None) -> Path:
    path = root / "annotations" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": cats or [{"id": 1, "name": "car"}]}))
    return path


def test_yolo_reads_unknown_sizes_from_the_images_and_refuses_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _img(src / "images/train/a.png", (40, 20))  # b.png does not exist
    _coco_file(src, [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
               [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 10]},
                {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]}])
    opts = {"val_split": "train"}
    with pytest.raises(DatasetError, match=r"1 boxes of images of unknown size \(first: "
                                           r"annotations/instances_train.json annotation id 2"):
        convert(src, tmp_path / "out", to="yolo", options=WriteOptions(**opts))
    r = convert(src, tmp_path / "out", to="yolo",
                options=WriteOptions(allow_loss=frozenset({"unsized"}), **opts))
    assert (r.source_boxes, r.boxes, r.written and r.written.skipped) == (2, 1, {"unsized": 1})
    assert (tmp_path / "out/labels/train/a.txt").read_text() == "0 0.5 0.5 0.5 0.5\n"


def test_voc_without_size_or_image_is_refused_by_yolo(tmp_path: Path) -> None:
    (tmp_path / "voc/Annotations").mkdir(parents=True)
    (tmp_path / "voc/Annotations/a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>car</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(DatasetError, match="unknown size.*Annotations/a.xml"):
        convert(tmp_path / "voc", tmp_path / "out", to="yolo",
                options=WriteOptions(val_split="train"))


# --- 3. COCO files not named instances_*.json ---------------------------------------------

def test_coco_split_files_keep_their_split_and_image_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for split in ("train", "val"):
        _img(src / "images" / split / "a.png")
        _coco_file(src, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
                   [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
                   name=f"{split}.json")
    ds = read_dataset(src)
    assert ds.images.file.tolist() == ["images/train/a.png", "images/val/a.png"]
    assert ds.images.split.tolist() == ["train", "val"]
    assert "missing_image" not in validate(ds).counts_by_check()
    r = convert(src, tmp_path / "out", to="yolo")
    assert (r.images, r.written and r.written.image_files) == (2, 2)


def test_coco_keypoint_file_and_subfolder_file_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _img(src / "images/val2017/sub/a.png")
    _coco_file(src, [{"id": 1, "file_name": "val2017/sub/a.png", "width": 40, "height": 30}],
               [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                 "keypoints": [2, 2, 2], "num_keypoints": 1}],
               name="person_keypoints_val2017.json")
    ds = read_dataset(src)
    assert ds.images.file.tolist() == ["images/val2017/sub/a.png"]  # not doubled
    assert ds.images.split.tolist() == ["val"]
    assert validate(ds).counts_by_check().get("missing_image") is None


def test_two_unsplit_coco_files_do_not_collide(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("day", "night"):
        _coco_file(src, [{"id": 1, "file_name": "a.png", "width": 4, "height": 4}], [],
                   name=f"{name}.json")
    ds = read_dataset(src)
    assert ds.images.split.tolist() == ["day", "night"]
    write_dataset(ds, tmp_path / "out", "coco")
    assert sorted(p.name for p in (tmp_path / "out/annotations").iterdir()) == [
        "instances_day.json", "instances_night.json"]


# --- 4, 5, 7. NaN coordinates, unknown class ids, crowd regions ---------------------------

CASES = [("nonfinite", {"xyxy": [[np.nan, 1, 5, 5]]},
          "1 boxes with NaN or infinite coordinates"),
         ("unknown-class", {"cls": [7]}, "1 boxes whose class id is outside the class list"),
         ("crowd", {"iscrowd": [1]}, "1 crowd regions")]


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc", "kitti"])
@pytest.mark.parametrize(("kind", "boxes", "expect"), CASES, ids=[c[0] for c in CASES])
def test_writers_refuse_then_skip_and_count(tmp_path: Path, fmt: str, kind: str,
                                            boxes: dict[str, Any], expect: str) -> None:
    ds = _ds(tmp_path / "src", ["train", "val"], idx=[0, 0], xyxy=[[2, 2, 9, 9]] +
             boxes.get("xyxy", [[1, 1, 5, 5]]), cls=[0] + boxes.get("cls", [1]),
             iscrowd=[0] + boxes.get("iscrowd", [0]))
    if fmt == "coco" and kind == "crowd":  # COCO holds crowd regions
        summary = write_dataset(ds, tmp_path / "out", fmt)
        assert summary.boxes == 2
        return
    with pytest.raises(DatasetError, match=f"{expect} \\(first: image images/0.png\\).*"
                                           f"--allow-loss {kind}"):
        write_dataset(ds, tmp_path / "out", fmt)
    assert not (tmp_path / "out").exists()
    summary = write_dataset(ds, tmp_path / "out", fmt,
                            options=WriteOptions(allow_loss=frozenset({kind})))
    assert (summary.boxes, summary.skipped) == (1, {kind: 1})
    back = read_dataset(tmp_path / "out", fmt)
    assert back.num_boxes == 1 and np.isfinite(back.boxes.xyxy).all()
    if fmt == "coco":  # strict JSON: no NaN literal
        for f in (tmp_path / "out/annotations").iterdir():
            assert "NaN" not in f.read_text() and "Infinity" not in f.read_text()


# --- 6. COCO categories from a non-COCO source start at 1 ---------------------------------

def _datumaro_label(category_id: int, label_map: dict[int, int]) -> int | None:
    """Datumaro's COCO importer (``_get_label_id`` in datumaro/plugins/data_formats/coco/
    base.py, Datumaro 1.13): ``if not cat_id: return None`` -- id 0 gets no label."""
    return None if not category_id else label_map[category_id]


def test_coco_from_non_coco_source_numbers_categories_from_1(tmp_path: Path) -> None:
    ds = _ds(tmp_path / "src", ["train"], cls=[0])
    write_dataset(ds, tmp_path / "yolo", "yolo", options=WriteOptions(val_split="train"))
    convert(tmp_path / "yolo", tmp_path / "coco", to="coco")
    doc = json.loads((tmp_path / "coco/annotations/instances_train.json").read_text())
    assert [c["id"] for c in doc["categories"]] == [1, 2]
    label_map = {c["id"]: i for i, c in enumerate(doc["categories"])}
    assert all(_datumaro_label(a["category_id"], label_map) == 0 for a in doc["annotations"])


def test_coco_source_ids_are_kept_even_from_0(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _coco_file(src, [{"id": 1, "file_name": "a.png", "width": 9, "height": 9}],
               [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [1, 1, 2, 2]}],
               cats=[{"id": 0, "name": "cells"}, {"id": 5, "name": "rbc"}])
    convert(src, tmp_path / "out", to="coco")
    doc = json.loads((tmp_path / "out/annotations/instances_train.json").read_text())
    assert [c["id"] for c in doc["categories"]] == [0, 5]


# --- 8. COCO -> COCO passes everything through --------------------------------------------

def test_coco_to_coco_passes_everything_through(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    src = tmp_path / "src"
    _img(src / "images/train/a.png")
    ann = {"id": 17, "image_id": 3, "category_id": 2, "bbox": [0.1, 0.2, 10, 3.7],
           "area": 20.5, "iscrowd": 0, "segmentation": [[0.1, 0.2, 10.1, 0.2, 10.1, 3.9]],
           "keypoints": [1, 2, 2, 0, 0, 0], "num_keypoints": 1,
           "attributes": {"occluded": False, "track_id": 4}}
    doc = {"info": {"year": 2024, "description": "cvat"}, "licenses": [{"id": 1, "name": "x"}],
           "images": [{"id": 3, "file_name": "a.png", "width": 40, "height": 30, "license": 1,
                       "coco_url": "http://example/a.png", "date_captured": "2024-01-01"}],
           "annotations": [ann],
           "categories": [{"id": 2, "name": "person", "supercategory": "human",
                           "keypoints": ["nose", "eye"], "skeleton": [[1, 2]]}]}
    (src / "annotations").mkdir()
    (src / "annotations/instances_train.json").write_text(json.dumps(doc))
    r = convert(src, tmp_path / "out", to="coco")
    assert r.written is not None and r.written.dropped == {} and r.written.skipped == {}
    got = json.loads((tmp_path / "out/annotations/instances_train.json").read_text())
    assert got["info"] == doc["info"] and got["licenses"] == doc["licenses"]
    assert got["categories"] == doc["categories"]
    assert got["images"] == doc["images"]
    assert got["annotations"] == [ann]  # segmentation, keypoints, attributes, area, id
    coco = COCO(str(tmp_path / "out/annotations/instances_train.json"))
    assert coco.anns[17]["area"] == 20.5  # not recomputed as w x h (37.0)


def test_other_formats_count_what_coco_pass_through_they_drop(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _img(src / "images/train/a.png")
    _coco_file(src, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
               [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 9,
                 "segmentation": [[1, 1, 6, 1, 6, 6]]}])
    with pytest.raises(DatasetError, match=r"area \(1 boxes\), segmentation \(1 boxes\)"):
        convert(src, tmp_path / "out", to="voc")
    r = convert(src, tmp_path / "out", to="voc",
                options=WriteOptions(allow_loss=frozenset({"attributes"})))
    assert r.written is not None and r.written.dropped == {"area": 1, "segmentation": 1}
    assert "dropped area (1), segmentation (1)" in r.summary_line()


# --- 9. findings name file, annotation id and image; summary; comments; float noise -------

def test_coco_findings_name_the_file_the_annotation_and_the_image(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _coco_file(src, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
               [{"id": 11, "image_id": 1, "category_id": 1, "bbox": [1, 1, 0.5, 5]},
                {"id": 12, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]},
                {"id": 13, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}])
    report = validate(read_dataset(src), check_images=False)
    small = report.by_check("box_too_small")[0]
    assert small.file == "annotations/instances_train.json"
    assert small.message.startswith("annotation id 11 of image annotations/a.png: box")
    dup = report.by_check("duplicate_box")[0]
    assert "annotation id 13 of image" in dup.message and "duplicates annotation id 12" \
        in dup.message


def test_voc_image_sets_skip_comment_lines(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    _img(root / "JPEGImages/a.jpg")
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations/a.xml").write_text("<annotation><filename>a.jpg</filename>"
                                            "</annotation>")
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "ImageSets/Main/train.txt").write_text("# made by a tool\na\n")
    ds = read_dataset(root)
    assert ds.images.split.tolist() == ["train"] and "dangling_split_ids" not in ds.info


def test_json_output_has_no_float_noise(tmp_path: Path) -> None:
    ds = _ds(tmp_path / "src", ["train"], xyxy=[[0.1, 0.2, 30.1, 0.2 + 10.3]],
             truncated=[0.37])
    write_dataset(ds, tmp_path / "out", "coco")
    text = (tmp_path / "out/annotations/instances_train.json").read_text()
    assert '"truncated": 0.37' in text and "0.3700000047683716" not in text
    assert '"bbox": [0.1, 0.2, 30.0, 10.3]' in text  # not 29.999999999999996, 10.299999...
    back = read_dataset(tmp_path / "out")
    np.testing.assert_array_equal(back.boxes.xyxy, ds.boxes.xyxy)  # still exact
