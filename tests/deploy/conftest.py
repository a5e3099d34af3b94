"""Deploy fixtures.

A detector trained here (once per machine: cached by recipe), for the tests that need real
detections: the emulated DeepStream pipeline only means something on boxes that follow the
image content. Registry fixtures: one migrated MLflow SQLite store per session, copied for
each user (creating MLflow's tables takes seconds; copying the file takes none)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest

RECIPE = {"images": 64, "classes": 1, "size": 96, "epochs": 20, "batch": 8, "seed": 0,
          "model": "yolo11n.yaml"}
CACHE = Path(os.environ.get("DETFORGE_TEST_CACHE",
                            Path(tempfile.gettempdir()) / "detforge-test-cache"))


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``best.pt`` of a YOLO11n trained on a synthetic one-class dataset (about 40 s on two
    cores the first time; later sessions reuse the cached weights)."""
    pytest.importorskip("ultralytics")
    import ultralytics

    key = hashlib.sha256(json.dumps({**RECIPE, "ultralytics": ultralytics.__version__},
                                    sort_keys=True).encode()).hexdigest()[:16]
    cached = CACHE / f"deploy-detector-{key}.pt"
    if cached.is_file():
        return cached
    from detforge.data.synth import synthesize
    from detforge.train.config import TrainConfig
    from detforge.train.runner import train

    work = tmp_path_factory.mktemp("train")
    size = RECIPE["size"]
    synthesize(work / "ds", images=RECIPE["images"], classes=RECIPE["classes"],
               seed=RECIPE["seed"], size=(size, size))
    config = TrainConfig(data=work / "ds", model=RECIPE["model"], epochs=RECIPE["epochs"],
                         imgsz=size, batch=RECIPE["batch"], seed=RECIPE["seed"], name="det",
                         out=work / "runs", plots=False, val=False,
                         optim={"nbs": RECIPE["batch"], "warmup_epochs": 1.0},
                         augment={"close_mosaic": 5}, tracking={"enabled": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(config)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    shutil.copyfile(result.best, tmp)
    tmp.replace(cached)
    return cached


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow store (``mlflow.db``); copy it, never write to it."""
    from detforge.deploy.registry import open_registry

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    open_registry(f"sqlite:///{db}").list_models()
    return db


def copy_store(template: Path, folder: Path) -> str:
    """A private copy of the template store in ``folder``; returns its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"
