"""Synthetic datasets for the validation tests: real image files, in-memory labels."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detforge.core.classes import ClassMap
from detforge.data.dataset import BoxTable, Dataset, ImageTable

W, H = 96, 64
CLASSES = ("car", "person", "sign")

MakeDataset = Callable[..., Dataset]


def noise_image(seed: int) -> Image.Image:
    """A random RGB image; distinct seeds give perceptually distinct images."""
    rng = np.random.default_rng(seed)
    # Smooth the noise a little so JPEG re-encoding keeps the perceptual hash stable.
    small = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((W, H), Image.Resampling.BILINEAR)


def build(root: Path, *, n_images: int = 12, seed: int = 0,
          classes: tuple[str, ...] = CLASSES) -> Dataset:
    """A clean dataset: ``n_images`` JPEG/PNG files, one box per class per image.

    Labels look like YOLO's: ``labels/<split>/<stem>.txt`` with one box per line.
    Images alternate train/val (3 of 4 train).
    """
    rng = np.random.default_rng(seed)
    files, splits, label_files = [], [], []
    img_idx, xyxy, cls, lines = [], [], [], []
    for i in range(n_images):
        split = "val" if i % 4 == 3 else "train"
        ext = ".png" if i % 3 == 0 else ".jpg"
        rel = f"images/{split}/img_{i:02d}{ext}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        noise_image(seed * 1000 + i).save(root / rel)
        files.append(rel)
        splits.append(split)
        label_files.append(f"labels/{split}/img_{i:02d}.txt")
        for c in range(len(classes)):
            w, h = rng.uniform(12, 30), rng.uniform(10, 24)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            img_idx.append(i)
            xyxy.append([x, y, x + w, y + h])
            cls.append(c)
            lines.append(c + 1)
    images = ImageTable.build(files, [W] * n_images, [H] * n_images, split=splits,
                              label_file=label_files)
    boxes = BoxTable.build(img_idx, xyxy, cls, line=lines)
    return Dataset(ClassMap.from_names(classes), images, boxes, root=root,
                   info={"format": "yolo", "path": str(root)})


def _add_images(ds: Dataset, new: list[tuple[str, str, int]]) -> Dataset:
    """Append images (file, split, copy labels of image row) with their own label files."""
    im, b = ds.images, ds.boxes
    files = [*im.file.tolist(), *(f for f, _, _ in new)]
    splits = [*im.split.tolist(), *(s for _, s, _ in new)]
    labels = [*im.label_file.tolist(),
              *(f.replace("images/", "labels/").rsplit(".", 1)[0] + ".txt" for f, _, _ in new)]
    n0 = len(im)
    tables = [b]
    for k, (_, _, src) in enumerate(new):
        rows = b.take(b.image_index == src)
        rows.image_index = np.full(len(rows), n0 + k, np.int32)
        tables.append(rows)
    images = ImageTable.build(files, [*im.width, *[W] * len(new)],
                              [*im.height, *[64] * len(new)], split=splits, label_file=labels)
    return Dataset(ds.classes, images, BoxTable.concat(tables), ds.root, dict(ds.info))


def plant_defects(root: Path) -> Dataset:
    """The clean dataset with one defect of each kind (see EXPECTED)."""
    ds = build(root)
    (root / "images/train/img_00.png").unlink()
    (root / "images/train/img_01.jpg").write_bytes(b"this is not an image")
    data = (root / "images/train/img_02.jpg").read_bytes()
    (root / "images/train/img_02.jpg").write_bytes(data[: len(data) // 2])
    ds.images.width[4] = 128
    xyxy = ds.boxes.xyxy
    xyxy[3 * 5 + 0, 2] = W + 10
    xyxy[3 * 5 + 1] = [W + 20, 10, W + 40, 30]
    xyxy[3 * 6 + 0, 2] = xyxy[3 * 6 + 0, 0]
    xyxy[3 * 6 + 1, 1] = np.nan
    ds.boxes.class_id[3 * 6 + 2] = 7
    shutil.copy(root / "images/train/img_09.png", root / "images/train/copy_09.png")
    (root / "images/val").mkdir(exist_ok=True)
    shutil.copy(root / "images/train/img_08.jpg", root / "images/val/leak_08.jpg")
    with Image.open(root / "images/train/img_10.jpg") as im:
        brighter = Image.fromarray(np.clip(np.asarray(im, np.int16) + 4, 0, 255).astype(np.uint8))
    brighter.save(root / "images/train/near_10.jpg", quality=90)
    ds = _add_images(ds, [("images/train/copy_09.png", "train", 9),
                          ("images/train/near_10.jpg", "train", 10),
                          ("images/val/leak_08.jpg", "val", 8)])
    dup = ds.boxes.take(np.array([3 * 8]))
    dup.xyxy = dup.xyxy + 0.1
    dup.line[:] = 4
    return Dataset(ds.classes, ds.images, BoxTable.concat([ds.boxes, dup]), root, ds.info)


@pytest.fixture
def make_dataset(tmp_path: Path) -> MakeDataset:
    """Factory: ``make_dataset(n_images=12, seed=0)`` builds a clean dataset in tmp_path."""
    counter = iter(range(1000))

    def make(**kwargs: object) -> Dataset:
        root = tmp_path / f"ds{next(counter)}"
        root.mkdir()
        return build(root, **kwargs)  # type: ignore[arg-type]

    return make
