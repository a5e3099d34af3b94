"""Common export layouts are detected and read: Roboflow COCO, Darknet/CVAT "YOLO 1.1",
YOLO with classes.txt, VOC with CVAT's labelmap.txt, KITTI with one folder per split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detforge.core.errors import DatasetError
from detforge.data.formats import WriteOptions, detect_format, read_dataset, write_dataset


def _img(path: Path, size: tuple[int, int] = (40, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_roboflow_coco_export(tmp_path: Path) -> None:
    for folder in ("train", "valid", "test"):
        _img(tmp_path / folder / f"{folder}_x.jpg")
        _text(tmp_path / folder / "_annotations.coco.json", json.dumps({
            "images": [{"id": 0, "file_name": f"{folder}_x.jpg", "width": 40, "height": 20}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [1, 1, 4, 4],
                             "area": 16, "iscrowd": 0}],
            "categories": [{"id": 0, "name": "cells", "supercategory": "none"},
                           {"id": 1, "name": "rbc", "supercategory": "cells"}]}))
    assert detect_format(tmp_path) == "coco"
    ds = read_dataset(tmp_path)
    got = dict(zip(ds.images.file.tolist(), ds.images.split.tolist(), strict=True))
    assert got == {"train/train_x.jpg": "train", "valid/valid_x.jpg": "val",
                   "test/test_x.jpg": "test"}
    assert all((tmp_path / f).is_file() for f in got)
    assert ds.classes.names == ("cells", "rbc") and ds.classes.source_ids == (0, 1)


def _darknet(root: Path) -> None:
    _img(root / "obj_train_data/f0.jpg")
    _img(root / "obj_train_data/f1.jpg")
    _text(root / "obj_train_data/f0.txt", "0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.1 0.1\n")
    _text(root / "obj_train_data/f1.txt", "")
    _text(root / "obj.names", "car\nperson\n")
    _text(root / "obj.data", "classes = 2\ntrain = data/train.txt\nnames = data/obj.names\n"
                             "backup = backup/\n")
    _text(root / "train.txt", "data/obj_train_data/f0.jpg\ndata/obj_train_data/f1.jpg\n")


def test_darknet_cvat_yolo_1_1(tmp_path: Path) -> None:
    _darknet(tmp_path)
    assert detect_format(tmp_path) == "yolo"
    ds = read_dataset(tmp_path)
    assert ds.info["layout"] == "darknet" and ds.classes.names == ("car", "person")
    assert ds.images.file.tolist() == ["obj_train_data/f0.jpg", "obj_train_data/f1.jpg"]
    assert ds.images.split.tolist() == ["train", "train"]
    assert ds.images.label_file.tolist() == ["obj_train_data/f0.txt", "obj_train_data/f1.txt"]
    np.testing.assert_allclose(ds.boxes.xyxy, [[16, 8, 24, 12], [8, 4, 12, 6]])


def test_darknet_class_count_must_match(tmp_path: Path) -> None:
    _darknet(tmp_path)
    _text(tmp_path / "obj.data", "classes = 3\ntrain = data/train.txt\nnames = data/obj.names\n")
    with pytest.raises(DatasetError, match="obj.data: classes = '3' but obj.names lists 2"):
        read_dataset(tmp_path)


@pytest.mark.parametrize("layout", ["side-by-side", "images-labels"])
def test_yolo_with_classes_txt_and_no_data_yaml(tmp_path: Path, layout: str) -> None:
    _text(tmp_path / "classes.txt", "dog\ncat\n")
    if layout == "side-by-side":  # LabelImg
        _img(tmp_path / "a.jpg")
        _text(tmp_path / "a.txt", "1 0.5 0.5 0.5 0.5\n")
        expect = {"a.jpg": ""}
    else:
        _img(tmp_path / "images/train/a.jpg")
        _img(tmp_path / "images/valid/b.jpg")
        _text(tmp_path / "labels/train/a.txt", "1 0.5 0.5 0.5 0.5\n")
        expect = {"images/train/a.jpg": "train", "images/valid/b.jpg": "val"}
    assert detect_format(tmp_path) == "yolo"
    ds = read_dataset(tmp_path)
    assert ds.info["layout"] == "classes.txt" and ds.classes.names == ("dog", "cat")
    assert dict(zip(ds.images.file.tolist(), ds.images.split.tolist(), strict=True)) == expect
    assert ds.boxes.class_id.tolist() == [1]
    np.testing.assert_allclose(ds.boxes.xyxy, [[10, 5, 30, 15]])


def test_voc_labelmap_gives_class_order_and_unused_classes(tmp_path: Path) -> None:
    _img(tmp_path / "JPEGImages/a.jpg")
    _text(tmp_path / "Annotations/a.xml",
          "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>1"
          "</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    _text(tmp_path / "labelmap.txt", "# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                     "dog:1,2,3::\ncat:4,5,6::\n")
    _text(tmp_path / "ImageSets/Main/default.txt", "a\n")  # CVAT: no subset
    ds = read_dataset(tmp_path)
    assert ds.classes.names == ("dog", "cat") and ds.boxes.class_id.tolist() == [1]
    assert ds.images.split.tolist() == [""]
    write_dataset(ds, tmp_path / "out", "voc")
    assert (tmp_path / "out/labelmap.txt").read_text().splitlines()[1:] == [
        "background:0,0,0::", "dog:1,2,3::", "cat:4,5,6::"]
    with pytest.raises(DatasetError, match="VOC labelmap colours/parts/actions"):
        write_dataset(ds, tmp_path / "coco", "coco")
    write_dataset(ds, tmp_path / "coco", "coco",
                  options=WriteOptions(allow_loss=frozenset({"metadata"})))


def test_kitti_with_one_folder_per_split(tmp_path: Path) -> None:
    line = "Car 0.00 0 -1.58 1.00 2.00 5.00 6.00 1.48 1.60 3.69 3.04 1.65 46.70 -1.59\n"
    for split in ("train", "val"):
        _img(tmp_path / split / "image_2/000001.png")
        _text(tmp_path / split / "label_2/000001.txt", line)
    assert detect_format(tmp_path) == "kitti"
    ds = read_dataset(tmp_path)
    assert ds.images.file.tolist() == ["train/image_2/000001.png", "val/image_2/000001.png"]
    assert ds.images.split.tolist() == ["train", "val"]
    assert ds.images.label_file.tolist() == ["train/label_2/000001.txt",
                                             "val/label_2/000001.txt"]
    write_dataset(ds, tmp_path / "out", "kitti")
    back = read_dataset(tmp_path / "out")
    assert sorted(back.images.split.tolist()) == ["train", "val"] and back.num_boxes == 2
