"""Registry fixtures: one migrated MLflow SQLite store per session, copied for each user
(creating MLflow's tables takes seconds; copying the file takes none)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


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
