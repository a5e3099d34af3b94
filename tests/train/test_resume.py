"""A run killed outright (kill -9) is marked died, resumes after its first epoch, and when
killed after its last epoch, finishes on the next ``--resume`` without training again.

The killed runs are fresh interpreters that kill themselves right after an epoch's row is
written (Ultralytics has saved ``last.pt`` by then), so where they die does not depend on
timing. Every socket connect and DNS lookup in them, from ``import detforge`` on, is
recorded and refused by an audit hook: with Ultralytics imported for the first time there,
this covers its import-time checks as well as training and validation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detforge.train import load_train_config, train
from detforge.train.runner import _reap
from detforge.train.runs import read_run_json

pytestmark = [pytest.mark.slow, pytest.mark.train]

EPOCHS = 2
CHILD = """
import os, signal, sys

NETWORK = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
           "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.sendto")

def refuse_network(event, args):
    if event in NETWORK:
        with open(sys.argv[4], "a", encoding="utf-8") as fh:
            fh.write(f"{event} {args!r}\\n")
        raise OSError(f"network disabled in this test: {event} {args!r}")

sys.addaudithook(refuse_network)
from detforge.train import load_train_config, train
from detforge.train.runs import MetricsLog

kill_after = int(sys.argv[5])
append = MetricsLog.append

def append_then_die(self, epoch, metrics):
    append(self, epoch, metrics)
    if epoch == kill_after:  # last.pt of this epoch is saved: die as kill -9 would
        os.kill(os.getpid(), signal.SIGKILL)

MetricsLog.append = append_then_die
flags = {"out": sys.argv[2], "name": "killed"}
if sys.argv[6] == "resume":
    flags["resume"] = True
else:
    flags.update(data=sys.argv[1], epochs=int(sys.argv[3]), imgsz=64, batch=8, plots=False)
train(load_train_config(flags=flags, overrides=["augment.close_mosaic=0"]))
"""


def _clean_env() -> dict[str, str]:
    """This environment without the offline settings detforge must set by itself."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("YOLO_", "ULTRALYTICS_", "MLFLOW_")) and k != "MPLCONFIGDIR"}
    return {**env, "PYTHONWARNINGS": "ignore"}


def _rows(path: Path) -> list[dict[str, float]]:
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def _killed(tiny_dataset: Path, out: Path, kill_after: int, mode: str) -> None:
    attempts = out / "network_attempts.txt"
    done = subprocess.run([sys.executable, "-c", CHILD, str(tiny_dataset), str(out), str(EPOCHS),
                           str(attempts), str(kill_after), mode],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_clean_env(),
                          check=False, timeout=900)
    assert done.returncode == -9, done.stderr.decode()[-3000:]
    assert not attempts.exists(), attempts.read_text()


def test_killed_runs_are_marked_resume_and_finish_after_the_last_epoch(
        tiny_dataset: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "killed" / "v1"
    metrics = run_dir / "metrics.json"
    _killed(tiny_dataset, tmp_path, kill_after=1, mode="new")  # dies in the first epochs
    raw = json.loads((run_dir / "run.json").read_text())
    assert raw["status"] == "running" and [r["epoch"] for r in _rows(metrics)] == [1]
    assert read_run_json(run_dir)["status"] == "died"  # nobody holds its lock
    client = MlflowClient(raw["mlflow"]["tracking_uri"])
    run_id = raw["mlflow"]["run_id"]
    assert client.get_run(run_id).info.status == "RUNNING"
    _reap(load_train_config(flags={"out": tmp_path, "name": "killed"}))  # as any next train
    assert json.loads((run_dir / "run.json").read_text())["status"] == "died"
    assert client.get_run(run_id).info.status == "KILLED"

    _killed(tiny_dataset, tmp_path, kill_after=EPOCHS, mode="resume")  # dies after the last
    record = json.loads((run_dir / "run.json").read_text())
    assert "died_noticed" in record and "resumed" in record
    assert [r["epoch"] for r in _rows(metrics)] == list(range(1, EPOCHS + 1))
    assert read_run_json(run_dir)["status"] == "died"
    results_before = (run_dir / "results.csv").read_text()

    cfg = load_train_config(flags={"out": tmp_path, "name": "killed", "resume": True})
    result = train(cfg)  # validates, logs and registers: no epoch is trained again

    assert result.run_dir == run_dir and result.epochs_done == EPOCHS
    assert [r["epoch"] for r in _rows(metrics)] == list(range(1, EPOCHS + 1))
    assert (run_dir / "results.csv").read_text() == results_before
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["final_metrics"]["mAP50-95"] >= 0
    assert record["mlflow"]["model_version"] == "1" and result.model_version == "1"
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "final/mAP50-95" in run.data.metrics
    [version] = client.search_model_versions("name='killed'")
    assert version.run_id == run_id
    assert not (tmp_path / "killed" / "v2").exists()


def test_resume_of_a_finished_run_is_refused(tiny_run: object) -> None:
    from detforge.core.errors import ConfigError

    from .conftest import TinyRun

    assert isinstance(tiny_run, TinyRun)
    cfg = load_train_config(flags={"out": tiny_run.out, "name": "tiny", "resume": True})
    with pytest.raises(ConfigError, match="already finished"):
        train(cfg)
