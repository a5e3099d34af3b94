from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from detforge.core.classes import ClassMap
from detforge.core.errors import DatasetError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats import FORMATS, read_dataset, write_dataset
from detforge.data.synth import generate
from detforge.data.version import dataset_digest, dataset_version, file_sha256


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return generate(tmp_path_factory.mktemp("synth"), images=12, classes=3, seed=5)


def _copy(ds: Dataset) -> Dataset:
    return ds.subset(np.arange(ds.num_images))


def test_version_shape(synth: Dataset) -> None:
    version = dataset_version(synth)
    digest = dataset_digest(synth)
    assert len(version) == 16 and len(digest) == 64 and digest.startswith(version)
    assert int(digest, 16) >= 0
    assert dataset_version(synth) == version  # stable
    assert dataset_version(synth, include_images=False) != version


def test_order_does_not_matter(synth: Dataset) -> None:
    perm = np.random.default_rng(0).permutation(synth.num_images)
    shuffled = synth.subset(perm)
    box_perm = np.random.default_rng(1).permutation(shuffled.num_boxes)
    shuffled = replace(shuffled, boxes=shuffled.boxes.take(box_perm))
    assert dataset_version(shuffled) == dataset_version(synth)


def test_layout_folders_do_not_matter(synth: Dataset, tmp_path: Path) -> None:
    moved = _copy(synth)
    for i in range(moved.num_images):
        dst = tmp_path / "images" / "train" / str(moved.images.file[i])
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(synth.image_path(i).read_bytes())
        moved.images.file[i] = f"images/train/{moved.images.file[i]}"
    moved.root = tmp_path
    assert dataset_version(moved) == dataset_version(synth)


def test_sub_micro_pixel_noise_keeps_version(synth: Dataset) -> None:
    noisy = _copy(synth)
    noisy.boxes.xyxy += 1e-9
    assert dataset_version(noisy) == dataset_version(synth)


def _move_box(ds: Dataset) -> None:
    ds.boxes.xyxy[0, 2] += 1.0


def _change_class(ds: Dataset) -> None:
    ds.boxes.class_id[0] = (ds.boxes.class_id[0] + 1) % len(ds.classes)


def _rename_class(ds: Dataset) -> None:
    ds.classes = ClassMap(("circle", "square", "cone"))


def _change_split(ds: Dataset) -> None:
    ds.images.split[0] = "test"


def _drop_box(ds: Dataset) -> None:
    ds.boxes = ds.boxes.take(np.arange(1, ds.num_boxes))


def _flag_difficult(ds: Dataset) -> None:
    ds.boxes.difficult[0] = True


def _nan_box(ds: Dataset) -> None:
    ds.boxes.xyxy[0, 0] = np.nan


@pytest.mark.parametrize("edit", [_move_box, _change_class, _rename_class, _change_split,
                                  _drop_box, _flag_difficult, _nan_box],
                         ids=["box", "class-id", "class-name", "split", "drop-box",
                              "difficult", "nan"])
def test_any_label_change_changes_version(synth: Dataset,
                                          edit: Callable[[Dataset], None]) -> None:
    edited = _copy(synth)
    edit(edited)
    assert dataset_version(edited) != dataset_version(synth)
    assert dataset_version(edited, include_images=False) != dataset_version(
        synth, include_images=False)


def test_image_byte_change_changes_version(synth: Dataset, tmp_path: Path) -> None:
    edited = _copy(synth)
    for i in range(edited.num_images):
        data = bytearray(synth.image_path(i).read_bytes())
        if i == 3:
            data[-3] ^= 0x01
        (tmp_path / str(edited.images.file[i])).write_bytes(bytes(data))
    edited.root = tmp_path
    assert dataset_version(edited) != dataset_version(synth)
    assert dataset_version(edited, include_images=False) == dataset_version(
        synth, include_images=False)


def test_missing_image_is_a_dataset_error(synth: Dataset, tmp_path: Path) -> None:
    moved = replace(_copy(synth), root=tmp_path)
    with pytest.raises(DatasetError, match="synth_000000.jpg: image file not found"):
        dataset_version(moved)
    assert len(dataset_version(moved, include_images=False)) == 16


def test_duplicate_keys_are_a_dataset_error() -> None:
    ds = Dataset(ClassMap.from_names(["a"]),
                 ImageTable.build(["images/train/x.jpg", "images/val/x.jpg"], [4, 4], [4, 4]),
                 BoxTable.empty())
    with pytest.raises(DatasetError, match="same key 'x.jpg'"):
        dataset_version(ds, include_images=False)


def test_file_sha256(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert file_sha256(tmp_path / "f") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


_FORMATS = [f for f in FORMATS if importlib.util.find_spec(FORMATS[f]) is not None]


@pytest.mark.parametrize("fmt", _FORMATS or ["none"], ids=_FORMATS or ["none"])
def test_same_content_in_any_format_has_same_version(synth: Dataset, tmp_path: Path,
                                                     fmt: str) -> None:
    if fmt == "none":
        pytest.skip("no format modules written yet")
    write_dataset(synth, tmp_path / fmt, fmt)
    back = read_dataset(tmp_path / fmt, fmt)
    assert dataset_version(back) == dataset_version(synth)
