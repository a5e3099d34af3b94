"""A run killed after its first checkpoint resumes and finishes, epochs continuing."""

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

EPOCHS = 6
CHILD = """
import sys
from detforge.train import load_train_config, train
cfg = load_train_config(flags={"data": sys.argv[1], "out": sys.argv[2], "name": "killed",
                               "epochs": int(sys.argv[3]), "imgsz": 64, "batch": 8, "plots": False},
                        overrides=["tracking.enabled=false", "augment.close_mosaic=0"])
train(cfg)
"""


def _rows(path: Path) -> list[dict[str, float]]:
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def test_killed_run_resumes_from_last_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed" / "v1"
    metrics = run_dir / "metrics.json"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_dataset), str(tmp_path),
                             str(EPOCHS)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
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
