from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from detforge.cli import app
from detforge.data.synth import synthesize

runner = CliRunner()


def test_help_lists_every_flag() -> None:
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for flag in ("--data", "--model", "--epochs", "--imgsz", "--preset", "--sizes", "--out",
                 "--resume", "--overfit", "--batch", "--device", "--seed", "--deterministic",
                 "--name", "--tracking-uri", "--set", "--config"):
        assert flag in result.output, flag


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--preset", "mining"], "ConfigError: unknown preset 'mining'"),
     (["--model", "yolo99.yaml", "--data", "x"], "ConfigError: model"),
     (["--imgsz", "big"], "ConfigError: --imgsz 'big'"),
     (["--sizes", "n,q"], "ConfigError: --sizes 'n,q'"),
     (["--set", "epochz=3"], "unknown key 'epochz'"),
     (["--device", "gpu"], "'cpu' or GPU indices"),
     (["--epochs", "1"], "ConfigError: no dataset: pass --data"),
     (["--resume", "--name", "nothing"], "no run named 'nothing' to resume"),
     (["--resume", "--sizes", "n,s"], "--resume continues one run")],
    ids=["preset", "model", "imgsz", "sizes", "set", "device", "no-data", "resume-missing",
         "resume-sweep"],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_missing_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "nope"), "--out",
                                 str(tmp_path), "--set", "tracking.enabled=false"])
    assert result.exit_code == 2 and "DatasetError:" in result.output


@pytest.mark.slow
@pytest.mark.train
def test_size_sweep_prints_comparison_table(tmp_path: Path) -> None:
    data = tmp_path / "ds"
    synthesize(data, images=8, classes=2, seed=0, size=(64, 64))
    result = runner.invoke(app, [
        "train", "--data", str(data), "--model", "yolov8n.yaml", "--sizes", "n",
        "--epochs", "1", "--imgsz", "64", "--overfit", "4", "--batch", "4", "--seed", "1",
        "--deterministic", "--name", "sweep", "--out", str(tmp_path / "runs"),
        "--set", "tracking.enabled=false", "--set", "plots=false"])
    assert result.exit_code == 0, result.output
    # The table is on stdout; tqdm (stderr) may end its line late in the mixed `output`.
    header = next(line for line in result.stdout.splitlines() if line.startswith("size "))
    for column in ("mAP50-95", "mAP50", "params", "GFLOPs", "CPU ms/img"):
        assert column in header
    row = next(line for line in result.stdout.splitlines() if line.startswith("n "))
    assert "yolov8n.yaml" in row and str(tmp_path / "runs" / "sweep-n" / "v1") in row
    run_dir = tmp_path / "runs" / "sweep-n" / "v1"
    assert (run_dir / "weights" / "best.pt").is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())  # --overfit 4 applied
    assert saved["augment"]["mosaic"] == 0 and saved["optim"]["nbs"] == 4
    assert json.loads((run_dir / "run.json").read_text())["dataset"]["val_source"] == "overfit"
