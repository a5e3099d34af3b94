"""Synthetic datasets for the validation tests: real image files, in-memory labels."""

from __future__ import annotations

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


@pytest.fixture
def make_dataset(tmp_path: Path) -> MakeDataset:
    """Factory: ``make_dataset(n_images=12, seed=0)`` builds a clean dataset in tmp_path."""
    counter = iter(range(1000))

    def make(**kwargs: object) -> Dataset:
        root = tmp_path / f"ds{next(counter)}"
        root.mkdir()
        return build(root, **kwargs)  # type: ignore[arg-type]

    return make
