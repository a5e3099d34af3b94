"""Runtime fixtures: a YOLO11n ONNX exported once per session by Ultralytics (offline)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from detforge.testing import seeded_yolo11n


@pytest.fixture(scope="session")
def yolo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``yolo11n.onnx`` (320x320, 80 classes) from :func:`detforge.testing.seeded_yolo11n`."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("yolo")
    yolo = seeded_yolo11n(320, 320)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        with warnings.catch_warnings():  # torch's legacy-exporter DeprecationWarning
            warnings.simplefilter("ignore")
            out = Path(yolo.export(format="onnx", imgsz=320, simplify=False, verbose=False))
        yolo.save(str(root / "yolo11n.pt"))
    finally:
        os.chdir(cwd)
    return out if out.is_absolute() else root / out
