"""Shared fixtures. Tests build their own data and never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

BCCD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bccd" / "BCCD"


@pytest.fixture(scope="session")
def bccd_path() -> Path:
    """The BCCD VOC dataset from ../shared/datasets, or skip when absent."""
    if not (BCCD / "Annotations").is_dir():
        pytest.skip("BCCD dataset not present in ../shared/datasets/bccd")
    return BCCD
