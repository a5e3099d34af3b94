"""Calibration and check images: picked from a dataset, preprocessed like inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import DatasetError
from detforge.data.dataset import Dataset

__all__ = ["calibration_files"]


def calibration_files(dataset: Dataset, n: int, *, split: str | None = "train") -> list[Path]:
    """``n`` existing image files spread evenly over ``split`` (all images if it is empty).

    Raises:
        DatasetError: No image file of the dataset exists on disk.
    """
    rows = np.flatnonzero(dataset.images.split == split) if split else np.array([], int)
    if len(rows) == 0:
        rows = np.arange(dataset.num_images)
    files = [p for p in (dataset.image_path(int(r)) for r in rows) if p.is_file()]
    if not files:
        raise DatasetError("no image files found for calibration; check the dataset root",
                           path=dataset.root)
    pick: NDArray[np.intp] = np.linspace(0, len(files) - 1, min(n, len(files))).astype(np.intp)
    return [files[i] for i in np.unique(pick)]
