"""One tiny offline training run (session fixture) checked from every side."""

from __future__ import annotations

import importlib
import json
import math

import pytest

from detforge.data.formats import read_dataset
from detforge.train import load_train_config
from detforge.train.backends import get_backend
from detforge.train.sweep import SizeResult, SweepResult
from detforge.train.threads import allowed_cores

from .conftest import TinyRun

pytestmark = [pytest.mark.slow, pytest.mark.train]


def test_run_succeeds_without_any_network_attempt(tiny_run: TinyRun) -> None:
    assert tiny_run.attempts == []
    assert tiny_run.result.best.is_file() and tiny_run.result.last.is_file()
    assert tiny_run.result.epochs_done == 2


def test_training_used_every_allowed_core(tiny_run: TinyRun) -> None:
    import torch

    torch_utils = importlib.import_module("ultralytics.utils.torch_utils")
    assert torch.get_num_threads() == allowed_cores() == torch_utils.NUM_THREADS
    record = json.loads(tiny_run.result.run_json.read_text())
    assert record["hardware"]["threads_used"] == allowed_cores()


def test_run_directory_layout_and_config(tiny_run: TinyRun) -> None:
    r = tiny_run.result
    assert r.run_dir == tiny_run.out / "tiny" / "v1"
    for name in ("config.yaml", "run.json", "metrics.csv", "metrics.json", "weights/best.pt",
                 "weights/last.pt", "data/data.yaml", "results.csv"):
        assert (r.run_dir / name).is_file(), name
    assert load_train_config(r.run_dir / "config.yaml") == r.config


def test_run_json_records_lineage(tiny_run: TinyRun) -> None:
    from detforge.data.version import dataset_version

    record = json.loads(tiny_run.result.run_json.read_text())
    assert record["status"] == "finished" and record["epochs_done"] == 2
    assert record["dataset"]["version"] == dataset_version(read_dataset(tiny_run.source))
    assert record["dataset"]["version"] == tiny_run.result.dataset_version
    assert record["dataset"]["classes"] == ["circle", "square"]
    assert record["dataset"]["num_train"] + record["dataset"]["num_val"] == 16
    assert set(record["git"]) == {"commit", "dirty", "repo"}
    assert record["packages"]["ultralytics"] and record["packages"]["torch"]
    assert record["hardware"]["cores_allowed"] == allowed_cores()
    assert record["weights"] == {"best": "weights/best.pt", "last": "weights/last.pt"}
    assert set(record["final_metrics"]) >= {"mAP50", "mAP50-95", "precision", "recall"}
    assert record["mlflow"]["run_id"] == tiny_run.result.mlflow_run_id


def test_metrics_per_epoch(tiny_run: TinyRun) -> None:
    rows = json.loads(tiny_run.result.metrics_json.read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert {"train/box_loss", "mAP50", "mAP50-95", "lr/pg0"} <= set(row)
        assert row["train_images_per_s"] > 0 and math.isfinite(row["train/box_loss"])
    header = tiny_run.result.metrics_csv.read_text().splitlines()[0].split(",")
    assert header[0] == "epoch" and "mAP50-95" in header


def test_mlflow_run_has_params_metrics_tags_and_model(tiny_run: TinyRun) -> None:
    from mlflow.tracking import MlflowClient

    record = json.loads(tiny_run.result.run_json.read_text())
    uri = record["mlflow"]["tracking_uri"]
    assert uri == f"sqlite:///{tiny_run.out.resolve()}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(tiny_run.result.mlflow_run_id or "")
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["optim.nbs"] == "64"
    assert run.data.tags["dataset_version"] == tiny_run.result.dataset_version
    history = client.get_metric_history(run.info.run_id, "mAP50")
    assert sorted(m.step for m in history) == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "run.json", "metrics.csv", "weights"} <= artifacts
    version = client.get_model_version("tiny", tiny_run.result.model_version or "")
    assert version.run_id == run.info.run_id


def test_model_info_latency_and_sweep_table(tiny_run: TinyRun) -> None:
    backend = get_backend("ultralytics")
    info = backend.model_info(tiny_run.result.best, 64)
    assert 2_000_000 < info.params < 3_000_000 and info.gflops > 0
    latency = backend.cpu_latency_ms(tiny_run.result.best, 64, repeats=2)
    assert latency > 0
    table = SweepResult([SizeResult("n", "yolo11n.yaml", tiny_run.result, info.params,
                                    info.gflops, latency)]).table()
    assert "mAP50-95" in table and "yolo11n.yaml" in table and f"{info.params:,}" in table
