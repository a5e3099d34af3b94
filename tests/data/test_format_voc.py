"""Pascal VOC reader and writer: quirks, round trip, errors, and the real BCCD dataset."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detforge.core.classes import ClassMap
from detforge.core.errors import ConfigError, DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats import WriteOptions, detect_format, voc


def _image(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)


def _obj(name: str, box: tuple[str, str, str, str], flags: str = "") -> str:
    coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box,
                                                       strict=True))
    return f"<object><name>{name}</name>{flags}<bndbox>{coords}</bndbox></object>"


def _xml(root: Path, ident: str, filename: str | None, size: tuple[int, int] | None,
         objects: list[str]) -> Path:
    parts = ["<annotation><folder>JPEGImages</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height>"
                     "<depth>3</depth></size>")
    parts += [*objects, "</annotation>"]
    path = root / "Annotations" / f"{ident}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
    return path


@pytest.fixture()
def quirky(tmp_path: Path) -> Path:
    """A small VOC dataset with every quirk the reader must handle."""
    root = tmp_path / "voc"
    flags = "<truncated>1</truncated><difficult>1</difficult><occluded>1</occluded>"
    _image(root / "JPEGImages" / "a.jpg", (64, 48))
    _xml(root, "a", "a.jpg", (64, 48), [_obj("cat", ("10.25", "5", "30.5", "40"), flags),
                                        _obj("dog", ("1", "2", "3", "4"))])
    _image(root / "JPEGImages" / "b.png", (40, 30))
    _xml(root, "b", "b.png", None, [_obj("dog", ("0", "0", "39.999", "29"))])  # no <size>
    _xml(root, "c", "c.jpg", (0, 0), [_obj("cat", ("1", "1", "2", "2"))])  # no image either
    _image(root / "JPEGImages" / "d.png", (20, 10))
    _xml(root, "d", "d", (20, 10), [])  # <filename> without extension; empty image
    _image(root / "JPEGImages" / "e.jpg", (16, 16))
    _xml(root, "e", "renamed.jpg", (0, 0), [_obj("cat", ("2", "2", "9", "9"))])
    _image(root / "JPEGImages" / "w.jpg", (8, 8))
    _xml(root, "w", "C:\\labels\\w.jpg", (8, 8), [])  # Windows path in <filename>
    _image(root / "JPEGImages" / "ü 猫.jpg", (33, 22), "L")
    _xml(root, "ü 猫", "ü 猫.jpg", (33, 22), [_obj("猫", ("1.5", "2.5", "20", "21"))])
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("a\nb\nü 猫\n", encoding="utf-8")
    (sets / "val.txt").write_text("c\nd\n", encoding="utf-8")
    (sets / "trainval.txt").write_text("a\nb\nc\nd\nü 猫\n", encoding="utf-8")
    (sets / "cat_train.txt").write_text("a  1\nb -1\n", encoding="utf-8")  # per-class list
    (root / "labels.txt").write_text("dog\ncat\n", encoding="utf-8")
    return root


def _by_key(ds: Dataset) -> dict[str, int]:
    return {Path(str(f)).name: i for i, f in enumerate(ds.images.file)}


def test_detect(quirky: Path, tmp_path: Path) -> None:
    assert voc.detect(quirky)
    assert not voc.detect(tmp_path / "nothing")
    assert detect_format(quirky) == "voc"


def test_read_handles_quirks(quirky: Path) -> None:
    ds = voc.read(quirky)
    rows = _by_key(ds)
    assert ds.classes.names == ("dog", "cat", "猫")  # labels.txt order, then new names sorted
    assert set(rows) == {"a.jpg", "b.png", "c.jpg", "d.png", "e.jpg", "ü 猫.jpg", "w.jpg"}
    size = {k: (int(ds.images.width[i]), int(ds.images.height[i])) for k, i in rows.items()}
    assert size == {"a.jpg": (64, 48), "b.png": (40, 30), "c.jpg": (0, 0), "d.png": (20, 10),
                    "e.jpg": (16, 16), "ü 猫.jpg": (33, 22), "w.jpg": (8, 8)}
    split = {k: ds.images.split[i] for k, i in rows.items()}
    assert split == {"a.jpg": "train", "b.png": "train", "ü 猫.jpg": "train", "c.jpg": "val",
                     "d.png": "val", "e.jpg": "", "w.jpg": ""}
    assert ds.images.label_file[rows["a.jpg"]] == "Annotations/a.xml"
    a = np.flatnonzero(ds.boxes.image_index == rows["a.jpg"])
    np.testing.assert_array_equal(ds.boxes.xyxy[a[0]], [10.25, 5, 30.5, 40])
    assert (ds.boxes.difficult[a].tolist(), ds.boxes.truncated[a].tolist(),
            ds.boxes.occluded[a].tolist()) == ([True, False], [1.0, 0.0], [1, 0])
    assert ds.boxes.class_id[a].tolist() == [1, 0]
    assert not (ds.boxes.image_index == rows["d.png"]).any()
    assert ds.num_boxes == 6 and "split_conflicts" not in ds.info


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def _assert_same(a: Dataset, b: Dataset) -> None:
    ra, rb = _by_key(a), _by_key(b)
    assert set(ra) == set(rb) and a.classes.names == b.classes.names
    order_a = [ra[k] for k in sorted(ra)]
    order_b = [rb[k] for k in sorted(rb)]
    for col in ("width", "height", "split"):
        assert getattr(a.images, col)[order_a].tolist() == getattr(b.images, col)[order_b].tolist()
    for k in ra:
        ba = np.flatnonzero(a.boxes.image_index == ra[k])
        bb = np.flatnonzero(b.boxes.image_index == rb[k])
        np.testing.assert_allclose(a.boxes.xyxy[ba], b.boxes.xyxy[bb], rtol=0, atol=1e-6)
        for col in ("class_id", "difficult", "truncated", "occluded"):
            assert getattr(a.boxes, col)[ba].tolist() == getattr(b.boxes, col)[bb].tolist()


def test_round_trip_is_exact(quirky: Path, tmp_path: Path) -> None:
    before = _digest(quirky)
    ds = voc.read(quirky)
    voc.write(ds, tmp_path / "out")
    back = voc.read(tmp_path / "out")
    _assert_same(ds, back)
    assert _digest(quirky) == before  # the source is never modified
    xml = (tmp_path / "out" / "Annotations" / "a.xml").read_text(encoding="utf-8")
    assert "<xmin>10.25</xmin>" in xml and "<ymin>5</ymin>" in xml and "<depth>3</depth>" in xml
    assert "<depth>1</depth>" in (tmp_path / "out" / "Annotations" / "ü 猫.xml").read_text(
        encoding="utf-8")
    assert (tmp_path / "out" / "labels.txt").read_text(encoding="utf-8") == "dog\ncat\n猫\n"
    sets = tmp_path / "out" / "ImageSets" / "Main"
    assert sorted(p.name for p in sets.iterdir()) == ["train.txt", "trainval.txt", "val.txt"]
    assert (tmp_path / "out" / "JPEGImages" / "ü 猫.jpg").is_file()


def test_write_skips_ignore_regions_and_keeps_floats(tmp_path: Path) -> None:
    xyxy: list[list[float]] = [[0.1 + 0.2, 1, 7.000001, 8], [2, 2, 5, 5], [1, 1, 2, 2]]
    ds = Dataset(ClassMap.from_names(["car"]),
                 ImageTable.build(["images/train/cam/x.jpg", "images/val/cam/x.jpg"], [10, 10],
                                  [10, 10], split=["train", "val"]),
                 BoxTable.build([0, 0, 1], xyxy, [0, -1, 0], ignore=[False, True, False],
                                truncated=[0.25, 0, 0]))
    with pytest.raises(DatasetError, match="1 ignore regions without a class"):
        voc.write(ds, tmp_path / "out")
    summary = voc.write(ds, tmp_path / "out",
                        options=WriteOptions(allow_loss=frozenset({"ignore"})))
    assert summary.skipped == {"ignore": 1} and summary.boxes == 2
    back = voc.read(tmp_path / "out")
    assert back.num_boxes == 2 and back.images.file.tolist() == [
        "JPEGImages/train/cam/x.jpg", "JPEGImages/val/cam/x.jpg"]  # same key in two splits
    np.testing.assert_array_equal(back.boxes.xyxy, np.asarray(xyxy)[[0, 2]])
    assert back.boxes.truncated.tolist() == [0.25, 0.0]
    assert back.images.split.tolist() == ["train", "val"]


@pytest.mark.parametrize(("body", "expect"), [
    ("<annotation><object>", "malformed XML"),
    ("<annotation>" + _obj("cat", ("1", "1", "2", "2")) +
     "<object><name>dog</name></object></annotation>", "object #2 ('dog') has no <bndbox>"),
    ("<annotation>" + _obj("cat", ("1", "one", "2", "2")) + "</annotation>",
     "object #1 ('cat') <ymin> = 'one' is not a number"),
    ("<annotation><object><bndbox/></object></annotation>", "object #1 has no <name>"),
    ("<annotation>" + _obj("cat", ("1", "1", "2", "")) + "</annotation>", "<ymax> is missing"),
    ("<annotation><size><width>1.5</width></size></annotation>", "<size><width> = 1.5"),
    ("<annotation>" + _obj("cat", ("1", "1", "2", "2"), "<occluded>nan</occluded>") +
     "</annotation>", "<occluded> = nan is not an integer"),
    ("<annotation>" + _obj("cat", ("1", "1", "2", "2"), "<occluded>300</occluded>") +
     "</annotation>", "<occluded> = 300 is not an integer in [-128, 127]"),
    ("<annotation><size><width>1e12</width></size></annotation>",
     "<size><width> = 1000000000000 is not"),
    ("<root/>", "expected <annotation>"),
    ('<!DOCTYPE a [<!ENTITY x "y">]><annotation>&x;</annotation>', "refused for safety"),
], ids=["malformed", "no-bndbox", "bad-number", "no-name", "empty-coord", "bad-size",
        "nan-occluded", "big-occluded", "huge-size", "wrong-root", "entity"])
def test_bad_xml_names_file_and_object(tmp_path: Path, body: str, expect: str) -> None:
    path = tmp_path / "Annotations" / "bad ü.xml"
    path.parent.mkdir(parents=True)
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DatasetError, match="bad ü.xml") as err:
        voc.read(tmp_path)
    assert expect in str(err.value) and err.value.path == path


@pytest.mark.parametrize(("occupied", "error"), [
    (False, contextlib.nullcontext()),
    (True, pytest.raises(ConfigError, match="empty")),
], ids=["empty-folder", "non-empty-folder"])
def test_write_needs_an_empty_folder(quirky: Path, tmp_path: Path, occupied: bool,
                                     error: contextlib.AbstractContextManager[object]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if occupied:
        (out / "keep.txt").write_text("x", encoding="utf-8")
    with error:
        voc.write(voc.read(quirky), out)
    assert (out / "keep.txt").is_file() == occupied


def test_write_rejects_unknown_class_id(tmp_path: Path) -> None:
    ds = Dataset(ClassMap.from_names(["a"]), ImageTable.build(["x.jpg"], [4], [4]),
                 BoxTable.build([0], [[0, 0, 1, 1]], [3]))
    with pytest.raises(DatasetError, match=r"1 boxes whose class id is outside the class list "
                                           r"\(first: image x.jpg\).*unknown-class"):
        voc.write(ds, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_split_conflicts_and_dangling_ids_are_recorded(quirky: Path) -> None:
    (quirky / "ImageSets" / "Main" / "test.txt").write_text("a\nghost\n", encoding="utf-8")
    ds = voc.read(quirky)
    assert ds.info["split_conflicts"] == ["a in train and test"]
    assert ds.info["dangling_split_ids"] == [("test", "ghost")]


def test_bccd_reads_with_its_quirks(bccd_path: Path, tmp_path: Path) -> None:
    ds = voc.read(bccd_path)
    assert (ds.num_images, ds.num_boxes) == (364, 4888)
    assert ds.classes.names == ("Platelets", "RBC", "WBC")
    assert ds.class_counts().tolist() == [361, 4155, 372]
    assert {s: int((ds.images.split == s).sum()) for s in ds.split_names()} == {
        "train": 205, "val": 87, "test": 72}
    assert set(ds.images.width.tolist()) == {640} and set(ds.images.height.tolist()) == {480}
    # Two zero-area boxes are kept as read, for validate to report.
    xy = ds.boxes.xyxy
    zero = np.flatnonzero((xy[:, 2] <= xy[:, 0]) | (xy[:, 3] <= xy[:, 1]))
    assert [ds.images.file[ds.boxes.image_index[z]] for z in zero] == [
        "JPEGImages/BloodImage_00338.jpg", "JPEGImages/BloodImage_00343.jpg"]
    voc.write(ds, tmp_path / "bccd")
    _assert_same(ds, voc.read(tmp_path / "bccd"))
