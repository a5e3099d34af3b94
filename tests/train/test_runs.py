from __future__ import annotations

import json
from pathlib import Path

import pytest

from detforge.core.errors import ConfigError
from detforge.train.runs import (
    MetricsLog,
    environment_info,
    git_info,
    latest_run_dir,
    new_run_dir,
    read_run_json,
    update_run_json,
)


def test_run_dirs_are_versioned(tmp_path: Path) -> None:
    first, second = new_run_dir(tmp_path, "exp"), new_run_dir(tmp_path, "exp")
    assert (first.name, second.name) == ("v1", "v2")
    (tmp_path / "exp" / "v10").mkdir()
    assert latest_run_dir(tmp_path, "exp").name == "v10"
    assert new_run_dir(tmp_path, "exp").name == "v11"


def test_latest_run_dir_names_known_runs(tmp_path: Path) -> None:
    new_run_dir(tmp_path, "exp")
    with pytest.raises(ConfigError, match=r"no run named 'other'.*\['exp'\]"):
        latest_run_dir(tmp_path, "other")


def test_metrics_log_rewrites_and_resumes(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.append(1, {"mAP50": 0.1})
    log.append(2, {"mAP50": 0.2, "lr/pg0": 0.01})
    reopened = MetricsLog(tmp_path)  # a resumed run redoes epoch 2
    reopened.append(2, {"mAP50": 0.25})
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert rows == [{"epoch": 1, "mAP50": 0.1}, {"epoch": 2, "mAP50": 0.25}]
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,mAP50" and lines[2] == "2,0.25"


def test_run_json_merges(tmp_path: Path) -> None:
    assert read_run_json(tmp_path) == {}
    update_run_json(tmp_path, status="running", a=1)
    record = update_run_json(tmp_path, status="finished")
    assert record["a"] == 1 and record["status"] == "finished" and "updated" in record


def test_lineage_helpers() -> None:
    info = git_info(Path(__file__).parent)
    assert set(info) == {"commit", "dirty", "repo"}
    env = environment_info(threads=2)
    assert env["packages"]["detforge"] and env["hardware"]["threads_used"] == 2
    assert env["hardware"]["cores_allowed"] >= 1
