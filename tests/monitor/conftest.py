"""Monitor fixtures: a tiny ONNX detector whose scores follow image brightness, a dataset it
is "known" on, its reference, and shifted (darkened) copies of the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detforge.data.synth import synthesize
from detforge.monitor import Reference, build_reference
from detforge.testing import tiny_onnx_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64x64, classes cat/dog; class scores are fixed weights times the mean intensity."""
    return tiny_onnx_model(tmp_path_factory.mktemp("monitor-model") / "tiny.onnx")


@pytest.fixture(scope="session")
def known_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic 96x96 images with train/val splits."""
    path = tmp_path_factory.mktemp("monitor-data") / "ds"
    synthesize(path, images=40, classes=2, seed=3, size=(96, 96))
    return path


@pytest.fixture(scope="session")
def reference(tiny_model: Path, known_data: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Reference, Path]:
    """The tiny model's reference on every image of ``known_data``, and its file."""
    ref = build_reference(tiny_model, known_data, split=None, device="cpu")
    return ref, ref.write(tmp_path_factory.mktemp("monitor-ref") / "ref.json")


def image_files(root: Path) -> list[Path]:
    """The dataset's image files, sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".png"})


def darken(src: Path, dst: Path, factor: float = 0.35) -> Path:
    """Copies of every image under ``src`` with intensities times ``factor`` (PNG)."""
    dst.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(image_files(src)):
        img = np.asarray(Image.open(path).convert("RGB"), np.float32) * factor
        Image.fromarray(img.astype(np.uint8)).save(dst / f"dark_{i:03d}.png")
    return dst


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow store; tests copy it (migrating one takes seconds)."""
    pytest.importorskip("mlflow")
    from detforge.deploy.registry import open_registry

    db = tmp_path_factory.mktemp("monitor-mlflow") / "mlflow.db"
    open_registry(f"sqlite:///{db}").list_models()
    return db


@pytest.fixture()
def runs_dir(mlflow_template: Path, tmp_path: Path) -> Path:
    """A runs folder holding a private copy of the template store (``runs/mlflow.db``)."""
    import shutil

    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copyfile(mlflow_template, runs / "mlflow.db")
    return runs
