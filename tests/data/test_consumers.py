"""Every written dataset is read by the program that consumes it: Ultralytics'
``check_det_dataset``, pycocotools' ``COCO``, supervision's ``DetectionDataset.from_*``
(Datumaro cannot be installed beside this environment's Pillow/OpenCV: its COCO category
rule is encoded in test_lossless.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detforge.data.dataset import Dataset
from detforge.data.formats import WriteOptions, read_dataset, write_dataset
from detforge.data.synth import synthesize


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("synth") / "ds"
    return synthesize(root, images=12, classes=3, seed=3, size=(96, 64), fmt="voc",
                      splits=(0.5, 0.5))


def _counts(ds: Dataset, split: str) -> tuple[int, int]:
    rows = ds.images.split == split
    return int(rows.sum()), int(rows[ds.boxes.image_index].sum())


def test_yolo_output_passes_ultralytics_and_supervision(source: Dataset, tmp_path: Path) -> None:
    import supervision as sv
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "yolo"
    write_dataset(source, out, "yolo")
    data = check_det_dataset(str(out / "data.yaml"), autodownload=False)
    assert data["names"] == dict(enumerate(source.classes.names))
    for split in ("train", "val"):
        got = sv.DetectionDataset.from_yolo(str(out / "images" / split),
                                            str(out / "labels" / split), str(out / "data.yaml"))
        assert (len(got), sum(len(d) for _, _, d in got)) == _counts(source, split)
        assert got.classes == list(source.classes.names)


def test_coco_output_passes_pycocotools_and_supervision(source: Dataset,
                                                        tmp_path: Path) -> None:
    import supervision as sv
    from pycocotools.coco import COCO

    out = tmp_path / "coco"
    write_dataset(source, out, "coco")
    for split in ("train", "val"):
        ann = out / "annotations" / f"instances_{split}.json"
        coco = COCO(str(ann))
        assert (len(coco.imgs), len(coco.anns)) == _counts(source, split)
        assert sorted(coco.cats) == [1, 2, 3]  # not from 0: a non-COCO source
        got = sv.DetectionDataset.from_coco(str(out / "images" / split), str(ann))
        assert (len(got), sum(len(d) for _, _, d in got)) == _counts(source, split)
        assert got.classes == list(source.classes.names)


def test_voc_output_passes_supervision(source: Dataset, tmp_path: Path) -> None:
    import supervision as sv

    out = tmp_path / "voc"
    write_dataset(source, out, "voc")
    got = sv.DetectionDataset.from_pascal_voc(str(out / "JPEGImages"), str(out / "Annotations"))
    assert len(got) == source.num_images
    assert sum(len(d) for _, _, d in got) == source.num_boxes
    assert sorted(got.classes) == sorted(source.classes.names)


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc", "kitti"])
def test_every_format_round_trips_the_source(source: Dataset, tmp_path: Path, fmt: str) -> None:
    written = write_dataset(source, tmp_path / fmt, fmt, options=WriteOptions())
    assert (written.images, written.image_files, written.boxes) == (
        source.num_images, source.num_images, source.num_boxes)
    back = read_dataset(tmp_path / fmt)
    assert back.classes.names == source.classes.names and back.num_boxes == source.num_boxes
    order = np.lexsort(source.boxes.xyxy.T)
    np.testing.assert_allclose(np.sort(back.boxes.xyxy, axis=0),
                               np.sort(source.boxes.xyxy[order], axis=0), atol=1e-6)
