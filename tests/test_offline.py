"""Runs make zero network attempts by detforge's own doing (telemetry included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import GUARDED_CLI, LearnedRun, guarded_env


@pytest.mark.slow
@pytest.mark.train
def test_training_makes_no_network_attempt(learned_run: LearnedRun) -> None:
    """The session's training run: MLflow tracking on, CI/pytest variables removed."""
    assert not learned_run.network_log.exists(), learned_run.network_log.read_text()
    assert list(learned_run.run_dir.parents[2].rglob("mlflow.db")), "tracked in MLflow"


def test_the_guard_sees_mlflow_telemetry_when_it_is_on(tmp_path: Path) -> None:
    """With MLflow's telemetry on (MLFLOW_DISABLE_TELEMETRY=false, a choice detforge keeps),
    its first tracked call is caught by the guard: the guard detects what the training test
    relies on it to detect."""
    pytest.importorskip("mlflow")
    log = tmp_path / "attempts.txt"
    env = {**guarded_env(log, tmp_path), "MLFLOW_DISABLE_TELEMETRY": "false"}
    code = GUARDED_CLI.replace("from detforge.cli import main\nmain()", """
import time
import mlflow
from mlflow.telemetry.client import get_telemetry_client
get_telemetry_client().activate()  # what MLflow's first tracked call does
deadline = time.monotonic() + 30  # the telemetry client fetches its config in a thread
while not os.path.exists(os.environ["NETWORK_LOG"]) and time.monotonic() < deadline:
    time.sleep(0.1)""")
    subprocess.run([sys.executable, "-c", code], env=env, timeout=300, check=True,
                   capture_output=True)
    assert log.exists() and "mlflow-telemetry" in log.read_text()


def test_disable_telemetry_keeps_a_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from detforge.integrations.telemetry import TELEMETRY_SWITCHES, disable_telemetry

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")
    for name in TELEMETRY_SWITCHES:
        if name != "RAY_USAGE_STATS_ENABLED":
            monkeypatch.delenv(name, raising=False)
    disable_telemetry()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"
