from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats import WriteOptions, yolo


def _img(path: Path, size: tuple[int, int] = (40, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size).save(path)


def _label(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _layout(root: Path, data: dict[str, Any] | None = None) -> Path:
    _img(root / "images/train/a.png")
    _img(root / "images/train/ü b.jpg", (10, 10))
    _img(root / "images/val/c.png", (100, 50))
    _label(root / "labels/train/a.txt", "0 0.5 0.5 0.5 0.5\n\n7 0.25 0.5 0.1 0.2\n")
    _label(root / "labels/train/ü b.txt", "")  # empty label file
    _label(root / "labels/val/orphan.txt", "1 0.5 0.5 0.2 0.2\n")  # label without image
    (root / "data.yaml").write_text(yaml.safe_dump(data or {
        "path": "/nowhere/moved", "train": "images/train", "val": "images/val",
        "names": {0: "cat", 1: "dog"}}))
    return root


def test_read_layout(tmp_path: Path) -> None:
    ds = yolo.read(_layout(tmp_path))
    assert ds.root == tmp_path  # absolute path that does not exist: the yaml's folder
    assert ds.classes.names == ("cat", "dog")
    rows = {f: i for i, f in enumerate(ds.images.file.tolist())}
    assert set(rows) == {"images/train/a.png", "images/train/ü b.jpg", "images/val/c.png",
                         "images/val/orphan.jpg"}
    a, c, orphan = rows["images/train/a.png"], rows["images/val/c.png"], \
        rows["images/val/orphan.jpg"]
    assert (ds.images.width[a], ds.images.height[a]) == (40, 20)
    assert ds.images.label_file[a] == "labels/train/a.txt"
    assert ds.images.label_file[c] == ""  # no label file: an empty image
    assert (ds.images.width[orphan], ds.images.height[orphan]) == (0, 0)
    assert ds.images.label_file[orphan] == "labels/val/orphan.txt"
    sel = ds.boxes.image_index == a
    np.testing.assert_allclose(ds.boxes.xyxy[sel], [[10, 5, 30, 15], [8, 8, 12, 12]])
    assert ds.boxes.class_id[sel].tolist() == [0, 7]  # unknown class kept as read
    assert ds.boxes.line[sel].tolist() == [1, 3]
    osel = ds.boxes.image_index == orphan
    assert ds.boxes.class_id[osel].tolist() == [1] and np.isnan(ds.boxes.xyxy[osel]).all()
    assert ds.images.split[orphan] == "val"


@pytest.mark.parametrize(("text", "line", "expect"), [
    ("0 0.5 0.5 0.5\n", 1, "expected 5 fields"),
    ("0 0.5 0.5 0.5 0.5\n1 0.5 x 0.5 0.5\n", 2, "non-numeric value"),
    ("\n\n0.5 0.5 0.5 0.5 0.5\n", 3, "is not an integer"),
    ("0 0.1 0.1 0.1 0.1 0.9 0.9\n", 1, "expected 5 fields"),
], ids=["four-fields", "not-a-number", "float-class", "segment"])
def test_malformed_line(tmp_path: Path, text: str, line: int, expect: str) -> None:
    _layout(tmp_path)
    _label(tmp_path / "labels/train/a.txt", text)
    with pytest.raises(DatasetError, match=expect) as info:
        yolo.read(tmp_path)
    assert info.value.line == line
    assert info.value.path == tmp_path / "labels/train/a.txt"


@pytest.mark.parametrize(("data", "ctx"), [
    ({"train": "images/train", "names": ["a", "b"]}, contextlib.nullcontext()),
    ({"train": "images/train", "names": {0: "a", 1: "b"}, "nc": 2}, contextlib.nullcontext()),
    ({"train": "images/train", "names": ["a", "b"], "nc": 3},
     pytest.raises(DatasetError, match="nc is 3")),
    ({"train": "images/train", "names": {0: "a", 2: "b"}},
     pytest.raises(DatasetError, match="class ids 0..1")),
    ({"train": "images/train", "names": ["a", "a"]}, pytest.raises(DatasetError, match="repeat")),
    ({"names": ["a"]}, pytest.raises(DatasetError, match="no train, val or test")),
    ({"train": "images/nope", "names": ["a"]},
     pytest.raises(DatasetError, match="does not exist")),
    ({"train": 3, "names": ["a"]}, pytest.raises(DatasetError, match="must be a path")),
], ids=["list", "dict-nc", "nc-mismatch", "gap-in-ids", "repeated", "no-split", "bad-path",
        "not-a-path"])
def test_data_yaml(tmp_path: Path, data: dict[str, Any],
                   ctx: contextlib.AbstractContextManager[Any]) -> None:
    _layout(tmp_path, data)
    with ctx:
        ds = yolo.read(tmp_path / "data.yaml")
        assert ds.classes.names == ("a", "b")


def test_list_file_split(tmp_path: Path) -> None:
    _layout(tmp_path, {"train": "train.txt", "val": ["images/val"], "names": ["a", "b"]})
    (tmp_path / "train.txt").write_text("./images/train/a.png\n\n")
    ds = yolo.read(tmp_path)
    got = dict(zip(ds.images.file.tolist(), ds.images.split.tolist(), strict=True))
    assert got["images/train/a.png"] == "train" and "images/train/ü b.jpg" not in got


def _big(root: Path) -> Dataset:
    sizes = [(4000, 3000), (7, 5)]
    for i, s in enumerate(sizes):
        _img(root / f"images/{i}.png", s)
    rng = np.random.default_rng(1)
    xy = np.sort(rng.uniform(0, 1, (50, 2, 2)), axis=1).reshape(50, 4)[:, [0, 2, 1, 3]]
    idx = np.repeat([0, 1], 25)
    xyxy = xy * np.array([[*s, *s] for s in sizes])[idx]
    boxes = BoxTable.build(idx, xyxy, rng.integers(0, 3, 50), difficult=np.ones(50),
                           ignore=np.arange(50) == 3)
    return Dataset(ClassMap(("a", "b", "c"), (4, 9, 11)),
                   ImageTable.build([f"images/{i}.png" for i in range(2)],
                                    [w for w, _ in sizes], [h for _, h in sizes]),
                   boxes, root=root)


def test_write_round_trip_precision_and_unsplit(tmp_path: Path) -> None:
    ds = _big(tmp_path / "src")
    with pytest.raises(DatasetError, match="no val split.*--val-split train"):
        yolo.write(ds, tmp_path / "out")  # unsplit: validation on training images, if asked
    with pytest.raises(DatasetError, match=r"1 ignore regions without a class \(first: image "
                                           r"images/0.png\); per-box values difficult \(49 "
                                           r"boxes\).*--allow-loss ignore,attributes"):
        yolo.write(ds, tmp_path / "out", options=WriteOptions(val_split="train"))
    assert not (tmp_path / "out").exists()
    summary = yolo.write(ds, tmp_path / "out", options=WriteOptions(
        val_split="train", allow_loss=frozenset({"ignore", "attributes"})))
    assert summary.skipped == {"ignore": 1} and summary.dropped == {"difficult": 49}
    assert summary.boxes == 49
    data = yaml.safe_load((tmp_path / "out/data.yaml").read_text())
    assert data["train"] == data["val"] == "images"
    assert data["names"] == {0: "a", 1: "b", 2: "c"}
    back = yolo.read(tmp_path / "out")
    assert set(back.images.split.tolist()) == {""}
    assert back.num_boxes == 49  # the ignore region is not written
    keep = ~ds.boxes.ignore
    err = np.abs(back.boxes.xyxy - ds.boxes.xyxy[keep]).max()
    assert err < 1e-6, err
    assert back.boxes.class_id.tolist() == ds.boxes.class_id[keep].tolist()
    assert not back.boxes.difficult.any()  # YOLO cannot store flags


def test_write_needs_every_image_in_a_split(tmp_path: Path) -> None:
    ds = _big(tmp_path / "src").with_split(["train", ""])
    with pytest.raises(DatasetError, match="no split"):
        yolo.write(ds, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_detect(tmp_path: Path) -> None:
    assert not yolo.detect(tmp_path)
    _layout(tmp_path)
    assert yolo.detect(tmp_path) and yolo.detect(tmp_path / "data.yaml")
    assert yolo.label_path(Path("d/images/x/images/a.b.jpg")) == Path("d/images/x/labels/a.b.txt")


def test_write_refuses_images_sharing_a_label_file(tmp_path: Path) -> None:
    ds = Dataset(ClassMap.from_names(["a"]),
                 ImageTable.build(["x/a.jpg", "x/a.png"], [5, 5], [5, 5]), BoxTable.empty())
    with pytest.raises(DatasetError, match="would share the label file labels/x/a.txt"):
        yolo.write(ds, tmp_path / "out", options=WriteOptions(val_split="train"))
