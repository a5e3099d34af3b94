"""``train(config) -> RunResult``: one tracked, versioned, resumable training run.

A run holds its ``run.lock`` while it trains (see :mod:`detforge.train.runs`). It records
``status: trained`` as soon as its weights are final and validated, and ``finished`` only
after MLflow has them and the model is registered. ``train --resume`` picks up wherever a
run stopped: mid-training it continues from ``last.pt``; after the last epoch (killed in
the final validation, the MLflow logging or the registration) it validates ``best.pt``,
logs and registers without training again. Runs of the same name whose process died are
marked ``died`` (and their MLflow runs ``KILLED``) when the next run of that name starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from detforge.core.atomic import atomic_write_text
from detforge.core.errors import ConfigError
from detforge.train.backends.base import BackendRun, TrainerBackend, get_backend
from detforge.train.config import (
    TrainConfig,
    config_to_yaml,
    load_train_config,
    overfit_config,
)
from detforge.train.dataset_prep import prepare_yolo_dataset
from detforge.train.devices import check_devices
from detforge.train.runs import (
    MetricsLog,
    RunLock,
    environment_info,
    git_info,
    latest_run_dir,
    new_run_dir,
    read_run_json,
    reap_dead_runs,
    update_run_json,
)
from detforge.train.threads import configure_threads
from detforge.train.tracking import Tracker, flatten_params, resolve_tracking_uri

__all__ = ["RunResult", "train"]

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """Where a training run put everything, and how it scored.

    Attributes:
        run_dir: ``<out>/<name>/v<N>``.
        config: The resolved config the run used.
        best: Best checkpoint (``weights/best.pt``).
        last: Last checkpoint (``weights/last.pt``).
        metrics_csv: Per-epoch metrics, CSV.
        metrics_json: Per-epoch metrics, JSON.
        run_json: Lineage record.
        data_yaml: The YOLO dataset the run trained on.
        final_metrics: Validation metrics of ``best`` (``mAP50-95``, ``mAP50``, ...).
        epochs_done: Epochs trained.
        dataset_version: Content hash of the source dataset, when available.
        mlflow_run_id: MLflow run, when tracking is on.
        model_version: Registered model version, when tracking is on.
    """

    run_dir: Path
    config: TrainConfig
    best: Path
    last: Path
    metrics_csv: Path
    metrics_json: Path
    run_json: Path
    data_yaml: Path
    final_metrics: dict[str, float] = field(default_factory=dict)
    epochs_done: int = 0
    dataset_version: str | None = None
    mlflow_run_id: str | None = None
    model_version: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git() -> dict[str, Any]:
    """The git state of the working directory, else of the detforge source tree."""
    info = git_info(Path.cwd())
    if info["commit"] is None:
        info = git_info(Path(__file__).resolve().parent)
    return info


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _start(config: TrainConfig, lock: list[RunLock],
           ) -> tuple[TrainConfig, Path, dict[str, Any]]:
    """New run: directory, config.yaml, dataset copy and the lineage record."""
    config = overfit_config(config)
    if config.data is None:
        raise ConfigError("no dataset: pass --data PATH (or set data: in the config file)")
    run_dir = new_run_dir(config.out, config.name)
    lock.append(RunLock(run_dir).acquire())
    update_run_json(run_dir, name=config.name, version=run_dir.name, status="running",
                    created=_now(), **_owner())
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(config))
    prep = prepare_yolo_dataset(config.data, run_dir / "data", classes=config.classes,
                                overfit=config.overfit, seed=config.seed)
    threads = configure_threads(config.threads)
    record = update_run_json(
        run_dir, name=config.name, version=run_dir.name, status="running", created=_now(),
        backend="ultralytics", model=config.model, config="config.yaml",
        input=_input_record(config),
        dataset={"source": str(Path(config.data).resolve()), "version": prep.version,
                 "classes": list(prep.classes), "num_train": prep.num_train,
                 "num_val": prep.num_val, "val_source": prep.val_source,
                 "prepared": str(prep.data_yaml)},
        git=_git(), **environment_info(threads))
    return config, run_dir, record


def _input_record(config: TrainConfig) -> dict[str, Any]:
    """The input the network trains at, as run.json records it; says so in the log when a
    rectangular ``imgsz`` is not what training uses (a square YOLO run without ``rect``)."""
    h, w = config.train_shape
    if not isinstance(config.imgsz, int) and tuple(config.imgsz) != (h, w):
        LOGGER.warning("imgsz %s,%s: %s trains on square %dx%d mosaics (the size is kept for "
                       "export); pass --set rect=true to train at %s,%s letterboxed",
                       *config.imgsz, config.model, h, w, *config.imgsz)
    return {"imgsz": [h, w], "letterbox": config.letterboxed,
            "multi_scale": config.augment.multi_scale}


def _reopen(config: TrainConfig, lock: list[RunLock],
            ) -> tuple[TrainConfig, Path, dict[str, Any]]:
    """Resume: the latest version of the named run, with the config it was started with."""
    run_dir = latest_run_dir(config.out, config.name)
    lock.append(RunLock(run_dir).acquire())
    last = run_dir / "weights" / "last.pt"
    if not last.is_file():
        raise ConfigError(f"{run_dir}: no weights/last.pt to resume from (the run stopped "
                          "before its first epoch ended); start it again without --resume")
    if read_run_json(run_dir).get("status") == "finished":
        raise ConfigError(f"{run_dir}: this run already finished; start a new run (without "
                          "--resume) to train more")
    stored = load_train_config(run_dir / "config.yaml")
    stored = stored.model_copy(update={"resume": True, "out": config.out,
                                       "device": config.device, "threads": config.threads})
    record = update_run_json(run_dir, status="running", resumed=_now(), **_owner())
    return stored, run_dir, record


def _reap(config: TrainConfig) -> None:
    """Mark the runs of this name whose process died, and end their MLflow runs as KILLED."""
    for run_dir, record in reap_dead_runs(config.out, config.name):
        LOGGER.warning("%s: its process died (pid %s); marked 'died'", run_dir,
                       record.get("pid"))
        mlflow = record.get("mlflow") or {}
        if not (config.tracking.enabled and mlflow.get("run_id")):
            continue
        with contextlib.suppress(Exception):  # a store that is gone must not block training
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=mlflow["tracking_uri"],
                                  registry_uri=mlflow["tracking_uri"])
            if client.get_run(mlflow["run_id"]).info.status == "RUNNING":
                client.set_terminated(mlflow["run_id"], "KILLED")


def _tracker(config: TrainConfig, run_dir: Path, record: dict[str, Any]) -> Tracker | None:
    if not config.tracking.enabled:
        return None
    uri = resolve_tracking_uri(config.tracking.uri, config.out)
    local = uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri
    tracker = Tracker(uri, config.tracking.experiment,
                      artifact_root=Path(config.out) / "mlartifacts" if local else None)
    dataset = record.get("dataset", {})
    tags = {"detforge.run_dir": str(run_dir.resolve()), "detforge.model": config.model,
            "dataset_version": str(dataset.get("version")),
            "dataset_source": str(dataset.get("source")),
            "git_commit": str(record.get("git", {}).get("commit"))}
    old = record.get("mlflow", {}).get("run_id") if config.resume else None
    run_id = tracker.start(f"{config.name}-{run_dir.name}", run_id=old, tags=tags,
                           params=flatten_params(config.model_dump(mode="json")))
    update_run_json(run_dir, mlflow={"tracking_uri": uri, "run_id": run_id,
                                     "experiment_id": tracker.experiment_id})
    return tracker


def train(config: TrainConfig, *, backend: TrainerBackend | None = None) -> RunResult:
    """Train one model and record the run (directory, lineage, metrics, MLflow).

    With ``config.resume`` the latest version of run ``config.name`` under ``config.out``
    continues from its ``weights/last.pt`` with the config it was started with (only
    ``device`` and ``threads`` are taken from ``config``); its epoch rows and MLflow run
    continue too. A run stopped after its last epoch is not trained again: ``best.pt`` is
    validated, logged and registered (each once).

    Args:
        config: The resolved training config.
        backend: A training backend; the Ultralytics one by default.

    Returns:
        The run's paths and final metrics.

    Raises:
        ConfigError: No dataset, nothing to resume (or the run is being trained by another
            process), a config the data contradicts, or a ``device`` GPU this machine lacks.
        DatasetError: The dataset cannot be read or has no training images.

    Example:
        >>> cfg = load_train_config(flags={"data": "ds", "epochs": 3, "imgsz": 160})
        >>> result = train(cfg)  # doctest: +SKIP
        >>> result.best  # doctest: +SKIP
        PosixPath('runs/train/v1/weights/best.pt')
    """
    check_devices(config.device)  # before anything is written
    backend = backend or get_backend("ultralytics")
    _reap(config)
    lock: list[RunLock] = []
    try:
        return _train(config, backend, lock)
    finally:
        for held in lock:
            held.release()


def _train(config: TrainConfig, backend: TrainerBackend, lock: list[RunLock]) -> RunResult:
    config, run_dir, record = _reopen(config, lock) if config.resume else _start(config, lock)
    data_yaml = run_dir / "data" / "data.yaml"
    log = MetricsLog(run_dir)
    trained = record.get("status") == "trained" or bool(record.get("trained"))
    done = config.resume and (trained or backend.training_done(
        config, run_dir / "weights" / "last.pt"))
    tracker = _tracker(config, run_dir, record)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        log.append(epoch, metrics)
        if tracker is not None:
            tracker.log_epoch(epoch, metrics)

    try:
        if trained:  # killed while tracking: the weights and their metrics are final
            weights = run_dir / "weights"
            run: BackendRun = BackendRun(run_dir, weights / "best.pt", weights / "last.pt",
                                         dict(record.get("final_metrics") or {}),
                                         int(record.get("epochs_done") or 0))
        elif done:  # killed after the last epoch: validate, log and register what it made
            run = backend.finish(config, run_dir=run_dir, data_yaml=data_yaml,
                                 epochs_done=int(log.rows[-1]["epoch"]) if log.rows else 0)
        elif config.resume:
            run = backend.resume(config, last=run_dir / "weights" / "last.pt",
                                 data_yaml=data_yaml, run_dir=run_dir, on_epoch=on_epoch)
        else:
            run = backend.fit(config, data_yaml=data_yaml, run_dir=run_dir, on_epoch=on_epoch)
    except BaseException:
        update_run_json(run_dir, status="failed", finished=_now())
        if tracker is not None:
            tracker.end("FAILED")
        raise
    record = update_run_json(
        run_dir, status="trained", trained=_now(), epochs_done=run.epochs_done,
        final_metrics=run.final_metrics,
        weights={"best": str(run.best.relative_to(run_dir)),
                 "last": str(run.last.relative_to(run_dir))})
    try:
        model_version = _finish_tracking(tracker, config, run_dir, run)
    except BaseException:
        if tracker is not None:
            with contextlib.suppress(Exception):
                tracker.end("FAILED")
        LOGGER.error("%s: trained, but tracking failed; `detforge train --resume --name %s "
                     "--out %s` logs and registers it", run_dir, config.name, config.out)
        raise
    record = update_run_json(run_dir, status="finished", finished=_now())
    return RunResult(
        run_dir=run_dir, config=config, best=run.best, last=run.last,
        metrics_csv=log.csv_path, metrics_json=log.json_path, run_json=run_dir / "run.json",
        data_yaml=data_yaml, final_metrics=run.final_metrics, epochs_done=run.epochs_done,
        dataset_version=record.get("dataset", {}).get("version"),
        mlflow_run_id=tracker.run_id if tracker else None, model_version=model_version)


def _finish_tracking(tracker: Tracker | None, config: TrainConfig, run_dir: Path,
                     run: BackendRun) -> str | None:
    if tracker is None:
        return None
    tracker.log_epoch(run.epochs_done + 1, {f"final/{k}": v for k, v in
                                            run.final_metrics.items()})
    tracker.log_artifacts([run_dir / n for n in ("config.yaml", "metrics.csv", "metrics.json",
                                                 "results.csv", "results.png", "args.yaml")])
    tracker.log_artifacts([run.best], "weights")
    version = tracker.register(config.tracking.registered_model or config.name)  # once per run
    update_run_json(run_dir, mlflow={**read_run_json(run_dir).get("mlflow", {}),
                                     "registered_model": config.tracking.registered_model
                                     or config.name, "model_version": version})
    tracker.log_artifacts([run_dir / "run.json"])
    tracker.end("FINISHED")
    return version
