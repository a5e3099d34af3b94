"""``--device``: GPUs checked before a run starts; the DDP launch keeps the run directory.

The DDP training itself needs two GPUs (``gpu`` marker); what runs before the workers start
(the refusal, the launch file with detforge's callbacks, the run directory kept) runs here.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.errors import ConfigError
from detforge.train.devices import is_rank_zero, parse_device


@pytest.mark.parametrize(("device", "expected"), [
    ("cpu", contextlib.nullcontext(())),
    ("0", contextlib.nullcontext((0,))),
    ("0,1", contextlib.nullcontext((0, 1))),
    ("1, 3", contextlib.nullcontext((1, 3))),
    ("0,0", pytest.raises(ConfigError, match="names a GPU twice")),
    ("cuda", pytest.raises(ConfigError, match="GPU indices")),
    ("0,", pytest.raises(ConfigError, match="GPU indices")),
], ids=["cpu", "one", "two", "spaces", "twice", "name", "trailing-comma"])
def test_parse_device(device: str, expected: Any) -> None:
    with expected as want:
        assert parse_device(device) == want


@pytest.mark.parametrize(("rank", "zero"), [(None, True), ("0", True), ("1", False),
                                            ("3", False)])
def test_rank_zero(rank: str | None, zero: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    assert is_rank_zero() is zero


def test_train_refuses_gpus_this_machine_lacks(tiny_dataset: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = f"{count},{count + 1}"  # two GPUs past the last one here
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_dataset), "--device", device,
                                      "--out", str(tmp_path / "runs"), "--epochs", "1"])
    assert result.exit_code == ConfigError.exit_code, result.output
    assert f"--device {device}" in result.output
    assert ("no CUDA GPU" if count == 0 else f"has {count} CUDA GPU") in result.output
    assert not (tmp_path / "runs" / "train").exists()  # refused before anything was written


def _trainer(data_yaml: Path, run_dir: Path) -> Any:
    from ultralytics.models.yolo.detect import DetectionTrainer

    return DetectionTrainer(overrides={
        "model": "yolo11n.yaml", "data": str(data_yaml), "device": "cpu", "epochs": 1,
        "imgsz": 64, "project": str(run_dir.parent), "name": run_dir.name, "exist_ok": True,
        "plots": False})


def test_ddp_launch_keeps_the_run_directory(tiny_dataset: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ultralytics")
    import ultralytics.engine.trainer as trainer_module
    from ultralytics.utils.dist import ddp_cleanup
    from ultralytics.utils.patches import torch_load

    from detforge.train.backends.ultralytics import UltralyticsBackend, keep_run_dir
    from detforge.train.config import load_train_config

    data_yaml = tiny_dataset / "data.yaml"
    config = load_train_config(flags={"data": tiny_dataset, "epochs": 1, "imgsz": 64,
                                      "out": tmp_path, "device": "cpu"})
    epochs: list[int] = []
    launched: dict[str, Path] = {}
    for name, keep in (("kept", True), ("plain", False)):
        run_dir = tmp_path / name
        trainer = _trainer(data_yaml, run_dir)
        (run_dir / "run.json").write_text("{}")  # the run's record lives in save_dir
        model = SimpleNamespace(add_callback=trainer.add_callback)  # as YOLO.add_callback
        UltralyticsBackend()._attach(model, config, lambda e, m: epochs.append(e))
        with keep_run_dir("0,1" if keep else "cpu"):
            cmd, file = trainer_module.generate_ddp_command(trainer)
        try:
            assert "torch.distributed.run" in cmd
            launched[name] = run_dir
            if keep:  # what each worker loads: detforge's callbacks, acting on rank 0 only
                state = torch_load(Path(file).with_suffix(".pt"), map_location="cpu")
                ours = [cb for cbs in state["callbacks"].values() for cb in cbs
                        if cb.__module__ == "detforge.train.backends.ultralytics"]
                assert {cb.__name__ for cb in ours} >= {"fit_epoch_end", "train_end"}
                monkeypatch.setenv("RANK", "1")
                for event in ("on_train_epoch_end", "on_fit_epoch_end", "on_train_end"):
                    for cb in state["callbacks"][event]:
                        if cb in ours:
                            cb(trainer)
                monkeypatch.delenv("RANK")
                assert epochs == []  # rank 1 logged nothing
                assert not (run_dir / "ddp_result.json").exists()
        finally:
            ddp_cleanup(trainer, file)
    assert (launched["kept"] / "run.json").is_file()
    assert not (launched["plain"] / "run.json").exists()  # Ultralytics alone removes it


@pytest.mark.gpu
@pytest.mark.slow
def test_ddp_on_two_gpus_logs_from_rank_zero(tiny_dataset: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    from mlflow.tracking import MlflowClient

    from detforge.train import load_train_config, train

    cfg = load_train_config(flags={"data": tiny_dataset, "epochs": 2, "imgsz": 64, "batch": 8,
                                   "out": tmp_path, "device": "0,1", "plots": False})
    result = train(cfg)
    assert result.epochs_done == 2 and result.final_metrics
    rows = json.loads(result.metrics_json.read_text())
    assert [r["epoch"] for r in rows] == [1, 2]  # one row per epoch: rank 0 alone wrote them
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = client.get_metric_history(str(result.mlflow_run_id), "mAP50")
    assert [m.step for m in history] == [1, 2]
    assert result.best.is_file() and (result.run_dir / "run.json").is_file()
    assert os.path.isdir(result.run_dir / "data")
