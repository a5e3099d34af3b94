"""monitor.yaml: validated like the training config; one-line errors from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.errors import ConfigError
from detforge.monitor import load_monitor_config

runner = CliRunner()

CYCLE = """
trigger: {prometheus: "http://127.0.0.1:9090", alert: DetforgeDrift}
retrain: {data: train_ds, model: yolo11n.yaml, epochs: 1, imgsz: 64}
evaluate: {data: holdout, split: val}
registry: {name: det, out: runs}
"""


def test_paths_are_read_from_the_file_folder(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("reference: ref.json\n" + CYCLE)
    cfg = load_monitor_config(path, ["thresholds.signals.score=0.1"])
    assert cfg.reference == tmp_path / "ref.json"
    assert cfg.retrain is not None and cfg.retrain.data == tmp_path / "train_ds"
    assert cfg.retrain.model == "yolo11n.yaml"
    assert cfg.thresholds.to_thresholds().psi_for("score") == 0.1
    assert cfg.can_retrain


@pytest.mark.parametrize("text,expect", [
    ("windw: {images: 10}", "unknown key 'windw'"),
    ("window: {images: 0}", "window.images"),
    ("thresholds: {signals: {brightnes: 0.1}}", "unknown signals"),
    ("trigger: {prometheus: null}", "needs prometheus"),
    ("trigger: {prometheus: 'localhost:9090'}", "http"),
    ("retrain: {data: x}", "needs retrain, evaluate and registry"),
    ("evaluate: {data: x, metric: accuracy}\nretrain: {data: y}\nregistry: {name: n}",
     "evaluate.metric"),
    ("- a list", "must be a mapping"),
    ("a: [unclosed", "cannot read the monitor config"),
], ids=["unknown", "range", "signal", "no-trigger", "url", "partial", "metric", "list", "yaml"])
def test_bad_config_is_one_line_error(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expect):
        load_monitor_config(path)
    res = runner.invoke(app, ["monitor", "watch", "--config", str(path), "--once"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ConfigError: {path}")


def test_watch_without_a_cycle_says_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("window: {images: 10}\n")
    res = runner.invoke(app, ["monitor", "watch", "--config", str(path), "--once"])
    assert res.exit_code == 2 and "no retrain cycle" in res.output


def test_unreachable_prometheus_is_reported_once(tmp_path: Path) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    path = tmp_path / "monitor.yaml"
    path.write_text(CYCLE.replace("9090", str(port)))
    res = runner.invoke(app, ["monitor", "watch", "--config", str(path), "--once"])
    assert res.exit_code == 2 and "cannot read alerts from" in res.output
