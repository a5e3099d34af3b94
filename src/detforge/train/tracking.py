"""MLflow tracking of training runs: params, per-epoch metrics, artifacts, model registry.

The store is, in order: ``tracking.uri`` (``--tracking-uri``), ``$MLFLOW_TRACKING_URI``,
else a local SQLite database ``<out>/mlflow.db`` with artifacts in ``<out>/mlartifacts``
(the file store warns it is deprecated in MLflow 3; SQLite is silent and supports the
model registry). The client API is used instead of MLflow's global "active run", so runs
in one process never leak into each other.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detforge.core.errors import ConfigError, MissingExtraError
from detforge.integrations.telemetry import disable_telemetry

__all__ = ["Tracker", "check_store", "flatten_params", "resolve_tracking_uri", "store_lock_path"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_MLFLOW_TABLES = frozenset({"alembic_version", "experiments", "runs"})


def resolve_tracking_uri(uri: str | None, out: str | Path) -> str:
    """The tracking URI to use: ``uri``, ``$MLFLOW_TRACKING_URI`` or ``sqlite:///<out>/mlflow.db``."""
    if uri:
        return uri
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    return f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_store(uri: str) -> None:
    """Refuse a ``sqlite:///`` store that is not a SQLite file, is corrupt, or belongs to
    another application, before MLflow reads it (or adds its tables to it).

    A missing or empty file is fine (MLflow creates the store). Other URIs are not checked.

    Raises:
        ConfigError: One line naming the file and what is wrong with it.
    """
    path = sqlite_path(uri)
    if path is None or not path.exists():
        return
    fix = "point --tracking-uri (or $MLFLOW_TRACKING_URI) at an MLflow store or a new file"
    if not path.is_file():
        raise ConfigError(f"{path}: the tracking store is not a file; {fix}")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if not head:
        return
    if head != _SQLITE_MAGIC:
        raise ConfigError(f"{path}: not a SQLite database (it starts with {head[:8]!r}); {fix}")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            bad = conn.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: the SQLite store is unreadable or corrupt ({exc}); restore "
                          f"it from a backup or {fix}") from exc
    if bad and bad[0] != "ok":
        raise ConfigError(f"{path}: the SQLite store is corrupt ({' '.join(bad[0].split())}); "
                          f"restore it from a backup or {fix}")
    if tables and not _MLFLOW_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:5])
        raise ConfigError(f"{path}: a SQLite database of another application (tables: "
                          f"{shown}); detforge will not add MLflow's tables to it; {fix}")


def store_lock_path(uri: str) -> Path:
    """The lock file that serialises registry changes to the store ``uri``.

    Beside the database for a SQLite store; otherwise in the user's cache folder, keyed by
    the URI (which serialises the processes of this machine only).
    """
    path = sqlite_path(uri)
    if path is not None:
        return path.with_name(path.name + ".lock")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "detforge" / "locks" / (hashlib.sha256(uri.encode()).hexdigest()[:16]
                                           + ".lock")


def flatten_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optim": {"lr0": 0.01}}`` -> ``{"optim.lr0": "0.01"}`` (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


class Tracker:
    """One MLflow run: start or reopen it, log epochs and artifacts, register the model.

    Args:
        uri: Resolved tracking URI.
        experiment: Experiment name (created when missing).
        artifact_root: Artifact location for a newly created experiment (local stores).

    Raises:
        MissingExtraError: MLflow is not installed.

    Example:
        >>> t = Tracker("sqlite:///runs/mlflow.db", "detforge")  # doctest: +SKIP
        >>> run_id = t.start("train-v1", params={"epochs": "3"}, tags={})  # doctest: +SKIP
    """

    def __init__(self, uri: str, experiment: str, *, artifact_root: Path | None = None):
        disable_telemetry()  # before mlflow is imported: it phones home at import
        try:
            from mlflow.tracking import MlflowClient
        except ModuleNotFoundError as exc:
            raise MissingExtraError("MLflow tracking needs mlflow: pip install 'detforge[train]'"
                                    " (or pass --set tracking.enabled=false)") from exc
        check_store(uri)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = artifact_root.resolve().as_uri() if artifact_root is not None else None
            self.experiment_id = self.client.create_experiment(experiment,
                                                               artifact_location=location)
        self.run_id: str | None = None

    def start(self, run_name: str, *, params: Mapping[str, str], tags: Mapping[str, str],
              run_id: str | None = None) -> str:
        """Create a run (or reopen ``run_id`` on resume) and log ``params`` and ``tags``."""
        from mlflow.entities import Param, RunTag

        if run_id:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name)
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        return self.run_id

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Log one epoch's metrics at step ``epoch``."""
        import math
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, epoch) for k, v in metrics.items()
                 if math.isfinite(float(v))]
        self.client.log_batch(self._run(), metrics=batch)

    def log_artifacts(self, files: list[Path], artifact_path: str | None = None) -> None:
        """Upload existing ``files`` (missing ones are skipped)."""
        for f in files:
            if f.is_file():
                self.client.log_artifact(self._run(), str(f), artifact_path)

    def register(self, name: str, artifact_path: str = "weights") -> str:
        """Register the run's ``artifact_path`` as a new version of model ``name``, once: a
        version this run already registered (before an interruption) is returned instead.

        Returns:
            The model version number.
        """
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        for mv in self.client.search_model_versions(f"name='{quoted}'"):
            if mv.run_id == self._run():
                return str(mv.version)
        run = self.client.get_run(self._run())
        version = self.client.create_model_version(
            name, source=f"{run.info.artifact_uri}/{artifact_path}", run_id=self._run())
        return str(version.version)

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with ``status`` (FINISHED, FAILED or KILLED)."""
        self.client.set_terminated(self._run(), status=status)

    def _run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("Tracker.start() must be called before logging")
        return self.run_id
