"""Contract tests run over every registered format (add a format to FORMATS to test it).

* every (src, dst) pair round-trips a small synthetic dataset with real image files;
* the BCCD VOC dataset goes through every format and back;
* malformed bytes fed to every reader only ever raise a DetforgeError naming the file.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from detforge.core.classes import ClassMap
from detforge.core.errors import DetforgeError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats import (
    FORMATS,
    WriteOptions,
    get_format,
    read_dataset,
    write_dataset,
)
from detforge.data.images import image_key

NAMES = ("car", "person", "traffic_light")  # one word each: KITTI types cannot hold spaces
# (file, width, height, split, number of boxes)
IMAGES = [("images/train/0001.jpg", 64, 48, "train", 3),
          ("images/train/straße_ü.png", 40, 72, "train", 2),
          ("images/train/0003.png", 50, 50, "train", 0),  # an empty image
          ("images/train/0004.jpg", 96, 32, "train", 1),
          ("images/val/0005.png", 33, 57, "val", 2),
          ("images/val/0006.jpg", 80, 60, "val", 0)]


def make_dataset(root: Path, seed: int = 0) -> Dataset:
    """A small dataset with real PNG/JPEG files under ``root`` and float boxes inside them."""
    rng = np.random.default_rng(seed)
    idx, xyxy, cls = [], [], []
    for i, (f, w, h, _, n) in enumerate(IMAGES):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (i * 30, 90, 200 - i * 20)).save(root / f)
        for _ in range(n):
            x1, y1 = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
            idx.append(i)
            xyxy.append([x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)])
            cls.append(int(rng.integers(0, len(NAMES))))
    images = ImageTable.build([i[0] for i in IMAGES], [i[1] for i in IMAGES],
                              [i[2] for i in IMAGES], split=[i[3] for i in IMAGES])
    return Dataset(ClassMap.from_names(NAMES), images, BoxTable.build(idx, xyxy, cls), root=root)


def by_key(ds: Dataset) -> dict[str, tuple[int, int, str, np.ndarray]]:
    """image_key -> (width, height, split, boxes sorted as rows of [class, x1, y1, x2, y2])."""
    per = ds.boxes_per_image()
    out = {}
    for i in range(ds.num_images):
        rows = per[i][~ds.boxes.ignore[per[i]]]
        b = np.column_stack([ds.boxes.class_id[rows], ds.boxes.xyxy[rows]])
        b = b[np.lexsort(np.round(b, 3).T[::-1])] if len(b) else b.reshape(0, 5)
        out[image_key(str(ds.images.file[i]))] = (int(ds.images.width[i]),
                                                  int(ds.images.height[i]),
                                                  str(ds.images.split[i]), b)
    return out


def assert_same(a: Dataset, b: Dataset, *, atol: float = 1e-6) -> None:
    assert a.classes.names == b.classes.names
    ka, kb = by_key(a), by_key(b)
    assert sorted(ka) == sorted(kb)
    for key, (w, h, split, boxes) in ka.items():
        w2, h2, split2, boxes2 = kb[key]
        assert (w, h, split) == (w2, h2, split2), key
        assert boxes.shape == boxes2.shape, key
        np.testing.assert_allclose(boxes2, boxes, rtol=0, atol=atol, err_msg=key)


PAIRS = list(itertools.product(FORMATS, FORMATS))


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{s}-to-{d}" for s, d in PAIRS])
def test_round_trip_between_formats(tmp_path: Path, src: str, dst: str) -> None:
    original = make_dataset(tmp_path / "orig")
    write_dataset(original, tmp_path / "a", src)
    first = read_dataset(tmp_path / "a", src)
    write_dataset(first, tmp_path / "b", dst)
    second = read_dataset(tmp_path / "b")  # auto-detected
    assert second.info["format"] == dst
    assert_same(original, first)
    assert_same(original, second)
    empty = [k for k, v in by_key(second).items() if len(v[3]) == 0]
    assert sorted(empty) == ["0003.png", "0006.jpg"]
    for i in range(second.num_images):  # images were placed, with their real sizes
        with Image.open(second.image_path(i)) as im:
            assert im.size == (second.images.width[i], second.images.height[i])


@pytest.fixture(scope="module")
def bccd(bccd_path: Path) -> Dataset:
    ds = read_dataset(bccd_path, "voc")
    assert ds.num_images > 300 and ds.num_boxes > 4000
    return ds


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FORMATS), ids=list(FORMATS))
def test_bccd_through_every_format_and_back(tmp_path: Path, bccd: Dataset, fmt: str) -> None:
    truncated = int((bccd.boxes.truncated != 0).sum())
    assert truncated > 1000  # BCCD marks truncated objects, which YOLO cannot store
    if fmt == "yolo":
        with pytest.raises(DetforgeError, match=f"truncated \\({truncated} boxes\\)"):
            write_dataset(bccd, tmp_path / fmt, fmt)
    written = write_dataset(bccd, tmp_path / fmt, fmt, options=WriteOptions(
        allow_loss=frozenset({"attributes"})))
    assert written.dropped == ({"truncated": truncated} if fmt == "yolo" else {})
    assert (written.images, written.image_files, written.boxes) == (
        bccd.num_images, bccd.num_images, bccd.num_boxes)
    there = read_dataset(tmp_path / fmt, fmt)
    results = [there]
    if fmt != "voc":
        write_dataset(there, tmp_path / "back", "voc")
        results.append(read_dataset(tmp_path / "back", "voc"))
    for ds in results:
        assert ds.num_images == bccd.num_images
        assert ds.num_boxes == bccd.num_boxes
        assert_same(bccd, ds)


# --- fuzzing: each reader gets a layout whose one annotation file is replaced by junk ----

def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 10)).save(path)


def _coco_layout(root: Path) -> tuple[Path, str]:
    _img(root / "images/train/a.png")
    return (root / "annotations/instances_train.json",
            '{"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}], '
            '"annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4],'
            ' "iscrowd": 0}], "categories": [{"id": 3, "name": "cat"}]}')


def _yolo_layout(root: Path) -> tuple[Path, str]:
    _img(root / "images/train/a.png")
    (root / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [cat]\n")
    return root / "labels/train/a.txt", "0 0.5 0.5 0.25 0.5\n0 0.1 0.1 0.1 0.1\n"


def _yolo_yaml_layout(root: Path) -> tuple[Path, str]:
    _img(root / "images/train/a.png")
    (root / "labels/train").mkdir(parents=True, exist_ok=True)
    (root / "labels/train/a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    return root / "data.yaml", "path: .\ntrain: images/train\nval: images/train\nnames: [cat]\n"


def _voc_layout(root: Path) -> tuple[Path, str]:
    _img(root / "JPEGImages/a.png")
    return (root / "Annotations/a.xml",
            "<annotation><filename>a.png</filename><size><width>20</width><height>10</height>"
            "<depth>3</depth></size><object><name>cat</name><difficult>0</difficult><bndbox>"
            "<xmin>1</xmin><ymin>2</ymin><xmax>5</xmax><ymax>6</ymax></bndbox></object>"
            "</annotation>\n")


def _kitti_layout(root: Path) -> tuple[Path, str]:
    _img(root / "image_2/a.png")
    return (root / "label_2/a.txt",
            "Car 0.00 0 -1.58 1.00 2.00 5.00 6.00 1.48 1.60 3.69 3.04 1.65 46.70 -1.59\n")


LAYOUTS: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "coco": _coco_layout, "yolo": _yolo_layout, "yolo-yaml": _yolo_yaml_layout,
    "voc": _voc_layout, "kitti": _kitti_layout,
}
FUZZ = [(fmt, layout) for fmt in FORMATS for layout in LAYOUTS if layout.split("-")[0] == fmt]

junk = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.integers(0, 400), st.text(max_size=12), st.integers(0, 400)),
)


@pytest.mark.parametrize(("fmt", "layout"), FUZZ, ids=[lay for _, lay in FUZZ])
@settings(max_examples=60, deadline=None)
@given(data=junk)
def test_readers_only_raise_detforge_errors_naming_the_file(
        tmp_path_factory: pytest.TempPathFactory, fmt: str, layout: str,
        data: bytes | tuple[int, str, int]) -> None:
    root = tmp_path_factory.mktemp(layout)
    target, valid = LAYOUTS[layout](root)
    if isinstance(data, tuple):  # a valid file with junk inserted and a tail cut off
        at, text, cut = data
        blob = (valid[:at] + text + valid[at:])[: len(valid) + len(text) - cut].encode()
    else:
        blob = data
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(blob)
    try:
        get_format(fmt).read(root)
    except DetforgeError as exc:
        assert target.name in str(exc), str(exc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("fmt", list(FORMATS), ids=list(FORMATS))
def test_valid_fuzz_seed_layouts_read(tmp_path: Path, fmt: str) -> None:
    for name in (lay for f, lay in FUZZ if f == fmt):
        root = tmp_path / name
        target, valid = LAYOUTS[name](root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(valid, encoding="utf-8")
        ds = get_format(fmt).read(root)
        assert ds.num_images == 1 and ds.num_boxes >= 1
