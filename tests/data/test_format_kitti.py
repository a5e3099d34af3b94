"""KITTI label_2 reader and writer: DontCare, extras, line numbers, round trip, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats import detect_format, kitti, voc

CAR = "Car 0.37 2 -1.57 599.41 156.4 629.75 189.25 2.85 2.63 12.34 0.47 1.49 69.44 -1.56"
PED = "Pedestrian 0.00 0 0.21 712.4 143.0 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01"
DONTCARE = "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10"


def _image(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, 90).save(path)


def _labels(root: Path, stem: str, lines: list[str]) -> Path:
    path = root / "label_2" / f"{stem}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    """A KITTI dataset under training/: DontCare, a blank line, scores, an empty image."""
    base = tmp_path / "kitti" / "training"
    _image(base / "image_2" / "000000.png", (1242, 375))
    _labels(base, "000000", [CAR, "", DONTCARE, PED])
    _image(base / "image_2" / "000001.png", (1224, 370))
    _labels(base, "000001", [])  # empty image
    _labels(base, "000002", [f"{CAR} 0.93", "Cyclist 0.5 1 0 1.5 2.25 30 40.125 1 1 1 1 1 1 1"])
    _image(base / "image_2" / "ü 猫.png", (64, 32))
    _labels(base, "ü 猫", [PED])
    sets = tmp_path / "kitti" / "ImageSets"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("000000\n000001\n", encoding="utf-8")
    (sets / "val.txt").write_text("000002\nü 猫\n", encoding="utf-8")
    return tmp_path / "kitti"


def test_detect(small: Path, tmp_path: Path) -> None:
    assert kitti.detect(small) and kitti.detect(small / "training")
    assert not kitti.detect(tmp_path / "missing")
    assert detect_format(small) == "kitti"


def test_read(small: Path) -> None:
    ds = kitti.read(small)
    assert ds.classes.names == ("Car", "Cyclist", "Pedestrian")  # sorted, DontCare excluded
    assert ds.images.file.tolist() == ["training/image_2/000000.png",
                                       "training/image_2/000001.png",
                                       "training/image_2/000002.png",
                                       "training/image_2/ü 猫.png"]
    assert ds.images.label_file[0] == "training/label_2/000000.txt"
    assert ds.images.width.tolist() == [1242, 1224, 0, 64]  # 000002 has no image
    assert ds.images.split.tolist() == ["train", "train", "val", "val"]
    b = ds.boxes
    assert b.image_index.tolist() == [0, 0, 0, 2, 2, 3]
    assert b.line.tolist() == [1, 3, 4, 1, 2, 1]  # 1-based, blank line counted
    assert b.ignore.tolist() == [False, True, False, False, False, False]
    assert b.class_id.tolist() == [0, -1, 2, 0, 1, 2]
    assert ds.class_counts().tolist() == [2, 1, 2]
    np.testing.assert_array_equal(b.xyxy[0], [599.41, 156.4, 629.75, 189.25])
    assert b.truncated[0] == np.float32(0.37) and b.occluded.tolist()[:3] == [2, -1, 0]
    np.testing.assert_array_equal(b.extra["dimensions"][0], [2.85, 2.63, 12.34])
    np.testing.assert_array_equal(b.extra["location"][0], [0.47, 1.49, 69.44])
    assert (b.extra["alpha"][0], b.extra["rotation_y"][0]) == (-1.57, -1.56)
    assert b.extra["score"][3] == 0.93 and np.isnan(b.extra["score"][0])


def _assert_same(a: Dataset, b: Dataset) -> None:
    key = {Path(str(f)).name: i for i, f in enumerate(b.images.file)}
    order = [key[Path(str(f)).name] for f in a.images.file]
    for col in ("width", "height", "split"):
        assert getattr(a.images, col).tolist() == getattr(b.images, col)[order].tolist()
    assert a.classes.names == b.classes.names
    for i, j in enumerate(order):
        ra = np.flatnonzero(a.boxes.image_index == i)
        rb = np.flatnonzero(b.boxes.image_index == j)
        np.testing.assert_allclose(a.boxes.xyxy[ra], b.boxes.xyxy[rb], rtol=0, atol=1e-6)
        for col in ("class_id", "ignore", "truncated", "occluded"):
            assert getattr(a.boxes, col)[ra].tolist() == getattr(b.boxes, col)[rb].tolist()
        for name, values in a.boxes.extra.items():
            np.testing.assert_array_equal(values[ra], b.boxes.extra[name][rb])


def test_round_trip_is_exact(small: Path, tmp_path: Path) -> None:
    ds = kitti.read(small)
    kitti.write(ds, tmp_path / "out")
    back = kitti.read(tmp_path / "out")
    _assert_same(ds, back)
    assert back.boxes.line.tolist() == [1, 2, 3, 1, 2, 1]  # blank line not written
    text = (tmp_path / "out" / "label_2" / "000000.txt").read_text(encoding="utf-8")
    assert text.splitlines()[:2] == [CAR, DONTCARE]  # numbers written as read
    assert (tmp_path / "out" / "label_2" / "000001.txt").read_text(encoding="utf-8") == ""
    assert (tmp_path / "out" / "ImageSets" / "val.txt").read_text(encoding="utf-8") == \
        "000002\nü 猫\n"
    assert (tmp_path / "out" / "image_2" / "ü 猫.png").is_file()


def test_write_defaults_for_data_without_3d_fields(tmp_path: Path) -> None:
    xyxy: list[list[float]] = [[1, 2, 3.5, 4], [0, 0, 5, 5]]
    ds = Dataset(ClassMap.from_names(["car", "truck"]), ImageTable.build(["a.jpg"], [9], [9]),
                 BoxTable.build([0, 0], xyxy, [1, -1],
                                ignore=[False, True], truncated=[0.5, 0], occluded=[3, 0]))
    kitti.write(ds, tmp_path / "out")
    lines = (tmp_path / "out" / "label_2" / "a.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ["truck 0.5 3 -10 1 2 3.5 4 -1 -1 -1 -1000 -1000 -1000 -10",
                     "DontCare 0 0 -10 0 0 5 5 -1 -1 -1 -1000 -1000 -1000 -10"]
    assert (tmp_path / "out" / "labels.txt").read_text(encoding="utf-8") == "car\ntruck\n"


@pytest.mark.parametrize(("line", "expect"), [
    ("Car 0 0 0 1 2 3", "7 fields, expected 15 or 16"),
    (CAR.replace("599.41", "6OO"), "x1 = '6OO' is not a number"),
    (CAR.replace(" 2 -1.57", " 1.5 -1.57"), "occluded = '1.5' is not an integer"),
    (CAR.replace(" 2 -1.57", " 200 -1.57"), "occluded = '200' is not an integer"),
    (f"{CAR} high", "score = 'high' is not a number"),
    (f"{CAR} 1 2", "17 fields, expected 15 or 16"),
], ids=["too-few-fields", "bad-x1", "float-occluded", "big-occluded", "bad-score",
        "too-many-fields"])
def test_malformed_line_names_file_line_and_value(tmp_path: Path, line: str, expect: str) -> None:
    path = _labels(tmp_path, "007", [CAR, line])
    with pytest.raises(DatasetError) as err:
        kitti.read(tmp_path)
    msg = str(err.value)
    assert (err.value.path, err.value.line) == (path, 2)
    assert msg.startswith(f"{path}:2: ") and expect in msg and "rotation_y [score]" in msg


@pytest.mark.parametrize("name", ["road sign", "DontCare"], ids=["space", "dontcare"])
def test_write_rejects_class_names_kitti_cannot_hold(tmp_path: Path, name: str) -> None:
    ds = Dataset(ClassMap.from_names([name]), ImageTable.build(["a.jpg"], [9], [9]),
                 BoxTable.build([0], [[1, 1, 2, 2]], [0]))
    with pytest.raises(DatasetError, match="cannot be a KITTI type"):
        kitti.write(ds, tmp_path / "out")


def test_labels_txt_sets_class_order(small: Path) -> None:
    (small / "training" / "labels.txt").write_text("Pedestrian\nVan\n", encoding="utf-8")
    ds = kitti.read(small)
    assert ds.classes.names == ("Pedestrian", "Van", "Car", "Cyclist")
    assert ds.boxes.class_id.tolist() == [2, -1, 0, 2, 3, 0]


def test_bccd_through_kitti_keeps_boxes(bccd_path: Path, tmp_path: Path) -> None:
    src = voc.read(bccd_path)
    kitti.write(src, tmp_path / "kitti")
    back = kitti.read(tmp_path / "kitti")
    assert (back.num_images, back.num_boxes, back.classes.names) == (
        364, 4888, src.classes.names)
    np.testing.assert_array_equal(back.boxes.xyxy, src.boxes.xyxy)
    assert back.images.split.tolist() == src.images.split.tolist()
    assert set(back.images.width.tolist()) == {640}


def test_out_of_range_truncated_reads_as_inf_without_warning(tmp_path: Path) -> None:
    _labels(tmp_path, "a", [CAR.replace("Car 0.37", "Car 1e39")])
    ds = kitti.read(tmp_path)
    assert np.isinf(ds.boxes.truncated[0])  # kept for validate to report
