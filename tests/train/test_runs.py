from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detforge.core.errors import ConfigError
from detforge.train.runs import (
    MetricsLog,
    RunLock,
    environment_info,
    git_info,
    latest_run_dir,
    new_run_dir,
    read_run_json,
    reap_dead_runs,
    run_alive,
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


HOLDER = """
import os, signal, sys
from detforge.train.runs import RunLock, update_run_json
lock = RunLock(sys.argv[1]).acquire()
update_run_json(sys.argv[1], status="running", pid=os.getpid())
print("held", flush=True)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()  # hold the lock until the parent closes stdin
"""


def test_a_run_whose_process_died_is_marked_died(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path, "exp")
    killed = subprocess.run([sys.executable, "-c", HOLDER, str(run_dir), "kill"],
                            capture_output=True, text=True, check=False)
    assert killed.returncode == -9 and "held" in killed.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert run_alive(run_dir) is False
    assert read_run_json(run_dir)["status"] == "died"
    [(marked, record)] = reap_dead_runs(tmp_path, "exp")
    assert marked == run_dir and record["status"] == "died" and "died_noticed" in record
    assert json.loads((run_dir / "run.json").read_text())["status"] == "died"
    assert reap_dead_runs(tmp_path, "exp") == []


def test_a_live_run_is_not_marked_and_cannot_be_taken(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path, "exp")
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), "hold"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        assert run_alive(run_dir) is True
        assert read_run_json(run_dir)["status"] == "running"
        assert reap_dead_runs(tmp_path, "exp") == []
        with pytest.raises(ConfigError, match=r"being trained by another process \(pid "
                                              rf"{proc.pid}"):
            RunLock(run_dir, wait_s=0).acquire()
        proc.stdin.close()
        assert proc.wait(60) == 0
    assert run_alive(run_dir) is False
    with RunLock(run_dir):
        assert run_alive(run_dir) is True
