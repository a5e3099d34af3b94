"""A run killed after its first checkpoint resumes and finishes, epochs continuing.

The killed run is a fresh interpreter whose every socket connect and DNS lookup, from
``import detforge`` on, is recorded and refused by an audit hook: with Ultralytics imported
for the first time there, this covers its import-time checks as well as training and
validation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detforge.train import load_train_config, train

pytestmark = [pytest.mark.slow, pytest.mark.train]

EPOCHS = 4
CHILD = """
import sys

NETWORK = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
           "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.sendto")

def refuse_network(event, args):
    if event in NETWORK:
        with open(sys.argv[4], "a", encoding="utf-8") as fh:
            fh.write(f"{event} {args!r}\\n")
        raise OSError(f"network disabled in this test: {event} {args!r}")

sys.addaudithook(refuse_network)
from detforge.train import load_train_config, train
cfg = load_train_config(flags={"data": sys.argv[1], "out": sys.argv[2], "name": "killed",
                               "epochs": int(sys.argv[3]), "imgsz": 64, "batch": 8, "plots": False},
                        overrides=["tracking.enabled=false", "augment.close_mosaic=0"])
train(cfg)
"""


def _clean_env() -> dict[str, str]:
    """This environment without the offline settings detforge must set by itself."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("YOLO_", "ULTRALYTICS_")) and k != "MPLCONFIGDIR"}
    return {**env, "PYTHONWARNINGS": "ignore"}


def _rows(path: Path) -> list[dict[str, float]]:
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def test_killed_run_resumes_from_last_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed" / "v1"
    metrics = run_dir / "metrics.json"
    attempts = tmp_path / "network_attempts.txt"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_dataset), str(tmp_path),
                             str(EPOCHS), str(attempts)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=_clean_env())
    deadline = time.monotonic() + 300
    try:
        while not _rows(metrics):
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stderr.read().decode()[-2000:]}"
                            if proc.stderr else "training exited early")
            if time.monotonic() > deadline:
                pytest.fail("no epoch finished within 300 s")
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert not attempts.exists(), attempts.read_text()
    done_before = [r["epoch"] for r in _rows(metrics)]
    assert done_before and done_before[-1] < EPOCHS
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    cfg = load_train_config(flags={"out": tmp_path, "name": "killed", "resume": True})
    result = train(cfg)

    assert result.run_dir == run_dir and result.epochs_done == EPOCHS
    assert [r["epoch"] for r in _rows(metrics)] == list(range(1, EPOCHS + 1))
    results_csv = (run_dir / "results.csv").read_text().splitlines()[1:]
    assert [int(float(line.split(",")[0])) for line in results_csv] == list(range(1, EPOCHS + 1))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and "resumed" in record
    assert not (tmp_path / "killed" / "v2").exists()


def test_resume_of_a_finished_run_is_refused(tiny_run: object) -> None:
    from detforge.core.errors import ConfigError

    from .conftest import TinyRun

    assert isinstance(tiny_run, TinyRun)
    cfg = load_train_config(flags={"out": tiny_run.out, "name": "tiny", "resume": True})
    with pytest.raises(ConfigError, match="already finished"):
        train(cfg)
