from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detforge.core.classes import ClassMap
from detforge.core.errors import ConfigError, DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.images import image_key
from detforge.data.split import (
    check_ratios,
    format_split_report,
    image_groups,
    image_keys,
    parse_ratios,
    split_dataset,
    split_dataset_files,
)

CLASS_P = (0.55, 0.3, 0.1, 0.04, 0.01)


def make_dataset(n: int = 600, *, seed: int = 0, frames: int = 1, p: Sequence[float] = CLASS_P,
                 empty: float = 0.2, groups: Sequence[str] | None = None) -> Dataset:
    """``n`` images ``images/vid<j>_<i>.jpg`` (``frames`` per video), random classes."""
    rng = np.random.default_rng(seed)
    files = [f"images/vid{i // frames}_{i:05d}.jpg" for i in range(n)]
    idx: list[int] = []
    cls: list[int] = []
    for i in range(n):
        if rng.random() < empty:
            continue
        for _ in range(int(rng.integers(1, 4))):
            idx.append(i)
            cls.append(int(rng.choice(len(p), p=np.asarray(p))))
    xyxy = np.tile([10.0, 10.0, 50.0, 60.0], (len(idx), 1))
    return Dataset(ClassMap.from_names([f"c{k}" for k in range(len(p))]),
                   ImageTable.build(files, [100] * n, [100] * n, group=groups),
                   BoxTable.build(idx, xyxy, cls))


def split_of(ds: Dataset) -> dict[str, str]:
    return dict(zip(ds.images.file.tolist(), ds.images.split.tolist(), strict=True))


def test_same_seed_gives_identical_split() -> None:
    ds = make_dataset()
    a = split_dataset(ds, seed=3).dataset
    b = split_dataset(ds, seed=3).dataset
    assert split_of(a) == split_of(b)
    assert set(a.images.split.tolist()) == {"train", "val", "test"}


def test_different_seed_gives_different_split() -> None:
    ds = make_dataset()
    a, b = split_dataset(ds, seed=0).dataset, split_dataset(ds, seed=1).dataset
    assert split_of(a) != split_of(b)


def test_split_does_not_depend_on_row_order() -> None:
    ds = make_dataset(300)
    perm = np.random.default_rng(9).permutation(ds.num_images)
    shuffled = ds.subset(perm)
    assert split_of(split_dataset(ds, seed=5).dataset) == \
        split_of(split_dataset(shuffled, seed=5).dataset)


def test_input_is_not_modified_and_boxes_are_kept() -> None:
    ds = make_dataset(100)
    out = split_dataset(ds).dataset
    assert set(ds.images.split.tolist()) == {""}
    assert out.num_boxes == ds.num_boxes and out.num_images == ds.num_images
    np.testing.assert_array_equal(out.boxes.class_id, ds.boxes.class_id)


@pytest.mark.parametrize("regex", [r"^(vid\d+)_", r"^vid\d+(?=_)"], ids=["group1", "whole-match"])
def test_no_group_crosses_splits(regex: str) -> None:
    ds = make_dataset(600, frames=8)
    res = split_dataset(ds, seed=0, group_by=regex)
    out = res.dataset
    by_group: dict[str, set[str]] = {}
    for f, s in zip(out.images.file.tolist(), out.images.split.tolist(), strict=True):
        by_group.setdefault(f.split("/")[1].split("_")[0], set()).add(s)
    assert all(len(s) == 1 for s in by_group.values())
    assert len(by_group) == 75 and int(res.report.groups.sum()) == 75
    assert out.images.group[0] == "vid0"


def test_images_not_matching_the_regex_are_their_own_group() -> None:
    ds = make_dataset(40, frames=40)  # one video ...
    ds.images.file[20:] = [f"images/other_{i}.jpg" for i in range(20)]  # ... and 20 singles
    groups = image_groups(ds, r"^(vid\d+)_")
    assert len(set(groups[:20].tolist())) == 1
    assert len(set(groups[20:].tolist())) == 20
    res = split_dataset(ds, seed=0, group_by=r"^(vid\d+)_")
    assert len(set(res.dataset.images.split[:20].tolist())) == 1
    assert int(res.report.groups.sum()) == 21
    assert res.dataset.images.group[25] == ""


def test_existing_group_column_is_honoured() -> None:
    n = 200
    ds = make_dataset(n, groups=[f"scene{i % 25}" if i % 2 else "" for i in range(n)])
    out = split_dataset(ds, seed=2).dataset
    by_group: dict[str, set[str]] = {}
    for g, s in zip(out.images.group.tolist(), out.images.split.tolist(), strict=True):
        if g:
            by_group.setdefault(g, set()).add(s)
    assert len(by_group) == 25 and all(len(s) == 1 for s in by_group.values())


@pytest.mark.parametrize("seed", [0, 1, 2, 3], ids=lambda s: f"seed{s}")
def test_every_class_reaches_every_split(seed: int) -> None:
    # 600 images: the rarest class (1%) still has a few images, spread to all three splits
    ds = make_dataset(600, seed=seed)
    rep = split_dataset(ds, seed=seed).report
    assert (rep.class_images > 0).all(), rep.class_images
    assert rep.missing() == []


@pytest.mark.parametrize("n_rare", [3, 4, 5], ids=lambda n: f"{n}-images")
def test_rare_class_with_as_many_images_as_splits_reaches_every_split(n_rare: int) -> None:
    ds = make_dataset(300, p=(1.0,), empty=0.0)
    rare = np.arange(n_rare) * 50
    extra = BoxTable.build(rare, np.tile([0.0, 0.0, 5.0, 5.0], (n_rare, 1)), [1] * n_rare)
    ds = Dataset(ClassMap.from_names(["common", "rare"]), ds.images,
                 BoxTable.concat([ds.boxes, extra]))
    rep = split_dataset(ds, seed=0).report
    assert (rep.class_images[:, 1] >= 1).all()
    assert int(rep.class_images[0, 1]) == n_rare - 2


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.3), (0.6, 0.2, 0.2)],
                         ids=["80-10-10", "70-30", "60-20-20"])
def test_achieved_ratios_within_tolerance(ratios: tuple[float, ...]) -> None:
    rep = split_dataset(make_dataset(1000), ratios=ratios, seed=0).report
    np.testing.assert_allclose(rep.achieved, ratios, atol=0.01)
    # every class follows the ratios too (classes with >= 100 images)
    big = rep.class_images.sum(axis=0) >= 100
    np.testing.assert_allclose(rep.class_ratios()[:, big], np.array(ratios)[:, None] *
                               np.ones((1, int(big.sum()))), atol=0.03)


def test_grouped_ratios_within_tolerance() -> None:
    rep = split_dataset(make_dataset(1000, frames=5), seed=0, group_by=r"^(vid\d+)_").report
    np.testing.assert_allclose(rep.achieved, (0.8, 0.1, 0.1), atol=0.03)


def test_empty_images_are_distributed() -> None:
    ds = make_dataset(400, empty=0.5)
    out = split_dataset(ds, seed=0).dataset
    has_box = np.zeros(ds.num_images, bool)
    has_box[ds.boxes.image_index] = True
    for split, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        empties = int(((out.images.split == split) & ~has_box).sum())
        assert abs(empties - share * int((~has_box).sum())) <= 0.05 * ds.num_images, split


def test_ignore_regions_and_unknown_ids_are_not_classes() -> None:
    ds = Dataset(ClassMap.from_names(["a"]), ImageTable.build([f"{i}.jpg" for i in range(10)]),
                 BoxTable.build([0, 1, 2], np.ones((3, 4)), [0, -1, 7],
                                ignore=[False, True, False]))
    rep = split_dataset(ds, ratios=(0.5, 0.5)).report
    assert int(rep.class_images.sum()) == 1 and int(rep.class_boxes.sum()) == 1
    assert int(rep.boxes.sum()) == 2  # the ignore region is not an object box
    assert int(rep.images.sum()) == 10


def test_report_is_json_and_text() -> None:
    res = split_dataset(make_dataset(100), seed=0)
    d = json.loads(json.dumps(res.report.to_dict()))
    assert set(d["splits"]) == {"train", "val", "test"}
    assert sum(s["images"] for s in d["splits"].values()) == 100
    text = format_split_report(res.report)
    assert text.splitlines()[0].split() == ["split", "images", "boxes", "groups", "ratio",
                                            "target"]
    assert "total" in text and "c0" in text


@pytest.mark.parametrize(("ratios", "expectation"), [
    ((0.8, 0.1, 0.1), contextlib.nullcontext()),
    ((0.5, 0.5), contextlib.nullcontext()),
    ((0.7, 0.2, 0.1000001), contextlib.nullcontext()),
    ((1.0,), pytest.raises(ConfigError, match="1 values")),
    ((0.4, 0.3, 0.2, 0.1), pytest.raises(ConfigError, match="4 values")),
    ((0.5, 0.5, 0.5), pytest.raises(ConfigError, match="sum to 1.5")),
    ((0.9, 0.1, 0.0), pytest.raises(ConfigError, match="positive")),
    ((1.1, -0.1), pytest.raises(ConfigError, match="positive")),
    ((float("nan"), 0.5), pytest.raises(ConfigError, match="positive")),
    ((80, 10, 10), pytest.raises(ConfigError, match="percentages")),
], ids=["three", "two", "rounding", "one", "four", "sum", "zero", "negative", "nan", "percent"])
def test_check_ratios(ratios: tuple[float, ...], expectation: Any) -> None:
    with expectation:
        assert len(check_ratios(ratios)) == len(ratios)


@pytest.mark.parametrize(("text", "expectation"), [
    ("0.8,0.1,0.1", contextlib.nullcontext()),
    (" 0.7 , 0.3 ", contextlib.nullcontext()),
    ("0.8,x,0.1", pytest.raises(ConfigError, match="'x' is not a number")),
    ("0.8;0.2", pytest.raises(ConfigError, match="not a number")),
], ids=["three", "spaces", "letter", "semicolon"])
def test_parse_ratios(text: str, expectation: Any) -> None:
    with expectation:
        assert abs(sum(parse_ratios(text)) - 1) < 1e-9


def test_bad_ratios_raise_before_splitting() -> None:
    with pytest.raises(ConfigError, match="e.g. 0.8,0.1,0.1"):
        split_dataset(make_dataset(10), ratios=(0.5, 0.6))


def test_bad_regex_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        split_dataset(make_dataset(10), group_by="(vid")


def test_empty_dataset_is_a_dataset_error() -> None:
    ds = Dataset(ClassMap.from_names(["a"]), ImageTable.build([]), BoxTable.empty())
    with pytest.raises(DatasetError, match="no images"):
        split_dataset(ds)


@pytest.mark.parametrize("where", ["same", "inside", "non-empty"])
def test_split_files_refuses_unsafe_output(tmp_path: Path, where: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.yaml").write_text("names: [a]\n")
    out = {"same": src, "inside": src / "split", "non-empty": tmp_path / "full"}[where]
    if where == "non-empty":
        out.mkdir()
        (out / "x.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="choose"):
        split_dataset_files(src, out)
    assert (src / "data.yaml").read_text() == "names: [a]\n"


@pytest.mark.parametrize("file", [
    "a.jpg", "images/a.jpg", "images/train/cam1/0001.jpg", "JPEGImages/x/y.png", "train/a.jpg",
    "images/images/a.jpg", "train", "images/", "./images/a.jpg", "a//b.jpg", "/abs/a.jpg",
    "images/..", "images/.", "x/train/a.jpg", "image_2/000001.png",
], ids=lambda f: f)
def test_image_keys_match_image_key(file: str) -> None:
    assert image_keys([file, file]) == [image_key(file)] * 2
