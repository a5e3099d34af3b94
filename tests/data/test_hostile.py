"""Hostile inputs found by fuzzing end in one DatasetError line, fast and small.

Each case was a traceback, a hang or a memory blow-up: a class id of 2^31, an XML
``encoding="bogus"``, NUL and overlong file names, a YAML alias bomb (and its error that
printed the expanded value), ``val: /`` walking the disk, multi-line YAML errors, and
8,000 identical boxes in the quadratic duplicate check.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detforge.core.errors import DatasetError
from detforge.data.formats import read_dataset, write_dataset
from detforge.data.fuzz.mutate import ALIAS_BOMB
from detforge.data.validate import validate
from detforge.data.validate.box_duplicates import duplicate_pairs


def _yolo(root: Path, yaml_text: str, label: str = "0 0.5 0.5 0.2 0.2\n") -> Path:
    (root / "images/train").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(root / "images/train/a.png")
    (root / "labels/train").mkdir(parents=True)
    (root / "labels/train/a.txt").write_text(label)
    (root / "data.yaml").write_text(yaml_text)
    return root


YAML_OK = "train: images/train\nval: images/train\nnames: [a]\n"


@pytest.mark.parametrize(("yaml_text", "label", "expect"), [
    (YAML_OK, "2147483648 0.5 0.5 0.1 0.1\n", "a.txt:1: class id '2147483648' is outside"),
    (YAML_OK, "-9223372036854775809 0.5 0.5 0.1 0.1\n", "outside the 32-bit range"),
    ("train: images/train\nval: /\nnames: [a]\n", "", "val: '/' lies outside the dataset"
                                                     " folder"),
    ("train: images/train\nval: ../../..\nnames: [a]\n", "", "--allow-outside-root"),
    (ALIAS_BOMB, "", "more than 200000 values once its aliases are expanded"),
    ("train: [images/train\nval: x\n", "", "not valid YAML: .* at column"),
    ("train: !!python/object:os.system [ls]\nnames: [a]\n", "", "could not determine a "
                                                                "constructor"),
    ("train: images/train\nval: images/train\nnames: [a]\nnc: " + "9" * 5000 + "\n", "",
     "YAML value cannot be read"),
    ("train: images/train\nval: images/train\nnames: [[1, 2]]\n", "", "is not a name"),
], ids=["class-2^31", "class-2^63", "val-root", "val-up", "alias-bomb", "bad-yaml",
        "python-tag", "huge-int", "name-list"])
def test_yolo_hostile_yaml_and_labels(tmp_path: Path, yaml_text: str, label: str,
                                      expect: str) -> None:
    root = _yolo(tmp_path / "ds", yaml_text, label or "0 0.5 0.5 0.2 0.2\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DatasetError, match=expect) as err:
        read_dataset(root)
    message = str(err.value)
    assert "\n" not in message and len(message) < 500, message
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100


def test_outside_root_is_read_only_when_allowed(tmp_path: Path) -> None:
    root = _yolo(tmp_path / "ds", "train: ../shared/images\nval: ../shared/images\n"
                                  "names: [a]\n")
    (tmp_path / "shared/images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "shared/images/x.png")
    with pytest.raises(DatasetError, match="outside the dataset folder"):
        read_dataset(root)
    ds = read_dataset(root, allow_outside_root=True)
    assert ds.images.file.tolist() == ["../shared/images/x.png"]


def test_yaml_path_elsewhere_is_a_moved_dataset(tmp_path: Path) -> None:
    root = _yolo(tmp_path / "ds", "path: /\ntrain: images/train\nval: images/train\n"
                                  "names: [a]\n")
    ds = read_dataset(root)  # `path: /` is not followed: the folder holds the dataset
    assert ds.root == root and ds.info["ignored_path"] == "/" and ds.num_images == 1


@pytest.mark.parametrize(("file_name", "expect"), [
    ("a\u0000.png", "holds a NUL character"),
    ("\ud800.png", "lone surrogate"),
], ids=["nul", "surrogate"])
def test_coco_file_names_the_os_cannot_take(tmp_path: Path, file_name: str,
                                            expect: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": file_name}],
                                "annotations": [], "categories": []}))
    with pytest.raises(DatasetError, match=expect):
        read_dataset(path)


def test_overlong_file_name_is_reported_and_refused_on_write(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "x" * 5000 + ".png"}],
                                "annotations": [], "categories": []}))
    ds = read_dataset(path)
    assert validate(ds, progress=False).has_errors  # the image cannot be opened
    with pytest.raises(DatasetError, match="path component longer than 255 bytes"):
        write_dataset(ds, tmp_path / "out", "coco")


@pytest.mark.parametrize(("value", "expect"), [
    ({"width": 1e300}, '"width" = 1e\\+300 is not a whole number of pixels'),
    ({"width": 12.5}, '"width" = 12.5 is not a whole number'),
    ({"id": 2**64}, '"id" must be an integer'),
], ids=["huge-width", "fractional-width", "id-2^64"])
def test_coco_numbers_out_of_range(tmp_path: Path, value: dict[str, object],
                                   expect: str) -> None:
    path = tmp_path / "a.json"
    image = {"id": 1, "file_name": "a.png", "width": 4, "height": 4, **value}
    path.write_text(json.dumps({"images": [image], "annotations": [], "categories": []}))
    with pytest.raises(DatasetError, match=expect):
        read_dataset(path)


@pytest.mark.parametrize("declaration", [
    '<?xml version="1.0" encoding="bogus"?>',
    '<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
], ids=["bogus-encoding", "external-entity", "entity-bomb"])
def test_voc_hostile_xml(tmp_path: Path, declaration: str) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations/a.xml").write_text(f"{declaration}<annotation/>")
    with pytest.raises(DatasetError, match="a.xml: XML") as err:
        read_dataset(tmp_path, "voc")
    assert "\n" not in str(err.value)


def test_8000_identical_boxes_are_fast_and_small(tmp_path: Path) -> None:
    anns = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}
            for i in range(1, 8001)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 9,
                                            "height": 9}],
                                "annotations": anns, "categories": [{"id": 1, "name": "a"}]}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = validate(read_dataset(path), check_images=False)
    dups = report.by_check("duplicate_box")
    assert len(dups) == 7999 and all("duplicates annotation id 1 " in f.message for f in dups)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200


def _brute(image: np.ndarray, cls: np.ndarray, xyxy: np.ndarray, t: float) -> np.ndarray:
    from detforge.data.validate.box_duplicates import _pair_iou

    best = np.full(len(image), -1)
    for j in range(len(image)):
        for i in range(j):
            if image[i] == image[j] and cls[i] == cls[j] and \
                    _pair_iou(xyxy[i:i + 1], xyxy[j:j + 1])[0] > t:
                best[j] = i
                break
    return best


@pytest.mark.parametrize("groups", [1, 3], ids=["crowded", "spread"])
def test_duplicate_pairs_equal_brute_force(groups: int) -> None:
    rng = np.random.default_rng(groups)
    n = 300
    base = rng.uniform(0, 100, (25, 2))
    size = rng.uniform(1, 50, (25, 2)) * rng.choice([1, 2**0.5, 1.9, 2.0], (25, 1))
    k = rng.integers(0, 25, n)
    corner = base[k] + rng.normal(0, 0.3, (n, 2)) * rng.choice([0, 1, 0.1], (n, 1))
    wh = size[k] * (1 + rng.normal(0, 0.02, (n, 2)) * rng.choice([0, 1], (n, 1)))
    xyxy = np.concatenate([corner, corner + wh], 1)
    image, cls = rng.integers(0, groups, n), rng.integers(0, groups, n)
    first, second, iou = duplicate_pairs(image, cls, xyxy, iou=0.95)
    expected = _brute(image, cls, xyxy, 0.95)
    assert second.tolist() == np.flatnonzero(expected >= 0).tolist()
    assert first.tolist() == expected[second].tolist() and (iou > 0.95).all()
