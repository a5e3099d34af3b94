"""Shared fixtures. Tests build their own data and never touch the network."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

BCCD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bccd" / "BCCD"


def pytest_configure(config: pytest.Config) -> None:
    """Import Ultralytics the offline way once, before any test imports it directly.

    Its import would otherwise patch ``PIL.Image.open`` (a pip install on undecodable
    images) and probe the network, whichever test happens to import it first.
    """
    try:
        from detforge.train.offline import import_ultralytics

        import_ultralytics(Path(tempfile.gettempdir()) / "detforge-tests-ultralytics")
    except ImportError:  # the train extra is absent: those tests skip
        pass


@pytest.fixture(scope="session")
def bccd_path() -> Path:
    """The BCCD VOC dataset from ../shared/datasets, or skip when absent."""
    if not (BCCD / "Annotations").is_dir():
        pytest.skip("BCCD dataset not present in ../shared/datasets/bccd")
    return BCCD
