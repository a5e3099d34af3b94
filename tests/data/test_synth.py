from __future__ import annotations

import contextlib
import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detforge.core.errors import ConfigError
from detforge.data.synth import (
    MAX_CLASSES,
    SHAPES,
    class_names,
    generate,
    parse_ratios,
    parse_size,
    synthesize,
)


def _has_format(name: str) -> bool:
    return importlib.util.find_spec(f"detforge.data.formats.{name}") is not None


needs_yolo = pytest.mark.skipif(not _has_format("yolo"), reason="yolo format not written yet")


def test_generate_is_deterministic(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", images=12, classes=4, seed=7)
    b = generate(tmp_path / "b", images=12, classes=4, seed=7)
    c = generate(tmp_path / "c", images=12, classes=4, seed=8)
    assert np.array_equal(a.boxes.xyxy, b.boxes.xyxy)
    assert np.array_equal(a.boxes.class_id, b.boxes.class_id)
    assert a.images.split.tolist() == b.images.split.tolist()
    for i in range(a.num_images):
        assert a.image_path(i).read_bytes() == b.image_path(i).read_bytes()
    assert a.image_path(0).read_bytes() != c.image_path(0).read_bytes()


def test_generate_content(tmp_path: Path) -> None:
    n = 80
    ds = generate(tmp_path, images=n, classes=5, seed=0, size=(320, 256))
    per_image = [len(rows) for rows in ds.boxes_per_image()]
    assert per_image.count(0) == 4  # 5 % of 80
    assert max(per_image) <= 8
    assert set(ds.boxes.class_id.tolist()) == set(range(5))
    xyxy = ds.boxes.xyxy
    assert (xyxy[:, :2] >= 0).all() and (xyxy[:, 2] <= 320).all() and (xyxy[:, 3] <= 256).all()
    assert np.array_equal(xyxy, np.rint(xyxy))  # integer boxes: exact format round trips
    sides = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
    assert sides.min() >= 10
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    assert (area < 32**2).any() and ((area >= 32**2) & (area < 96**2)).any()
    assert (area >= 96**2).any()  # COCO small, medium and large all present
    assert Counter(ds.images.split.tolist()) == {"train": 64, "val": 16}
    assert (ds.images.width == 320).all() and (ds.images.height == 256).all()
    from PIL import Image

    with Image.open(ds.image_path(0)) as im:
        assert (im.format, im.size) == ("JPEG", (320, 256))


def test_generate_objects_overlap_sometimes(tmp_path: Path) -> None:
    ds = generate(tmp_path, images=40, classes=3, seed=1)
    overlaps = 0
    for rows in ds.boxes_per_image():
        b = ds.boxes.xyxy[rows]
        for i in range(len(b)):
            for j in range(i):
                iw = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0])
                ih = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1])
                overlaps += int(iw > 0 and ih > 0)
    assert overlaps > 0


@pytest.mark.parametrize(("k", "expected"), [
    (1, ["circle"]),
    (3, ["circle", "square", "triangle"]),
    (len(SHAPES), list(SHAPES)),
    (len(SHAPES) + 2, [*SHAPES, "circle2", "square2"]),
], ids=["one", "three", "all-shapes", "hue-bands"])
def test_class_names(k: int, expected: list[str]) -> None:
    assert class_names(k) == expected


@pytest.mark.parametrize("splits", [None, (1.0,), (0.5, 0.3, 0.2)], ids=["none", "one", "three"])
def test_generate_splits(tmp_path: Path, splits: tuple[float, ...] | None) -> None:
    ds = generate(tmp_path, images=10, classes=2, seed=0, splits=splits)
    counts = Counter(ds.images.split.tolist())
    expected = {"": 10} if splits is None else {
        name: round(r * 10) for name, r in zip(("train", "val", "test"), splits, strict=False)}
    assert counts == expected


@pytest.mark.parametrize("kwargs", [
    {"images": 0}, {"classes": 0}, {"classes": MAX_CLASSES + 1}, {"size": (32, 320)},
    {"empty_fraction": 1.5}, {"splits": (0.5, 0.2)}, {"splits": (0.5, 0.2, 0.2, 0.1)},
], ids=["no-images", "no-classes", "too-many-classes", "too-small", "empty-fraction",
        "ratios-sum", "four-splits"])
def test_generate_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        generate(tmp_path, **kwargs)


@pytest.mark.parametrize(("text", "expected"), [
    ("320,256", contextlib.nullcontext((320, 256))),
    ("640x384", contextlib.nullcontext((640, 384))),
    ("416", contextlib.nullcontext((416, 416))),
    ("a,b", pytest.raises(ConfigError)),
    ("0,320", pytest.raises(ConfigError)),
    ("1,2,3", pytest.raises(ConfigError)),
], ids=["comma", "x", "square", "letters", "zero", "three"])
def test_parse_size(text: str, expected: Any) -> None:
    with expected as value:
        assert parse_size(text) == value


@pytest.mark.parametrize(("text", "expected"), [
    ("0.8,0.2", contextlib.nullcontext((0.8, 0.2))),
    ("0.7,0.2,0.1", contextlib.nullcontext((0.7, 0.2, 0.1))),
    ("0.8,x", pytest.raises(ConfigError)),
    ("0.8,0.3", pytest.raises(ConfigError)),
], ids=["two", "three", "letters", "sum"])
def test_parse_ratios(text: str, expected: Any) -> None:
    with expected as value:
        assert parse_ratios(text) == value


@needs_yolo
def test_synthesize_yolo_is_byte_identical(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a", images=10, classes=3, seed=3, fmt="yolo")
    synthesize(tmp_path / "b", images=10, classes=3, seed=3, fmt="yolo")
    assert a.num_images == 10 and a.classes.names == ("circle", "square", "triangle")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                     if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*")
                     if p.is_file())
    assert files_a == files_b and any(p.suffix == ".txt" for p in files_a)
    for rel in files_a:
        if rel.name == "data.yaml":  # holds its own absolute path
            continue
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert [p.name for p in tmp_path.iterdir()] != [] and not any(
        p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left behind
    assert set(a.split_names()) == {"train", "val"}


@needs_yolo
def test_synthesize_refuses_non_empty_output(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        synthesize(tmp_path, images=2, fmt="yolo")
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_synthesize_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset format"):
        synthesize(tmp_path / "ds", images=2, fmt="pascal")
    assert not (tmp_path / "ds").exists()
