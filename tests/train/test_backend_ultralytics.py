"""The Ultralytics backend's callback wiring, driven without a trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from detforge.train.backends.ultralytics import UltralyticsBackend, metric_name
from detforge.train.config import TrainConfig


class CallbackRecorder:
    """Stands in for an Ultralytics model: keeps the callbacks the backend adds."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[[Any], None]]] = {}

    def add_callback(self, event: str, func: Callable[[Any], None]) -> None:
        self.callbacks.setdefault(event, []).append(func)

    def run(self, event: str, trainer: Any) -> None:
        for func in self.callbacks.get(event, []):
            func(trainer)


@pytest.mark.parametrize(("overfit", "momentum"), [(0, 0.03), (2, 0.5)],
                         ids=["normal-run-untouched", "overfit-tracks-recent-steps"])
def test_overfit_batchnorm_follows_recent_steps(overfit: int, momentum: float) -> None:
    import torch

    bn = torch.nn.BatchNorm2d(4)
    bn.momentum = 0.03  # Ultralytics' setting
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), bn)
    recorder = CallbackRecorder()
    UltralyticsBackend()._attach(recorder, TrainConfig(overfit=overfit), lambda e, m: None)
    recorder.run("on_pretrain_routine_end", SimpleNamespace(model=net))
    assert bn.momentum == momentum


@pytest.mark.parametrize(("metrics", "stops"), [({"metrics/mAP50(B)": 0.995}, True),
                                                 ({"metrics/mAP50(B)": 0.5}, False)],
                         ids=["memorised-stops", "not-yet"])
def test_overfit_run_stops_once_memorised(metrics: dict[str, float], stops: bool) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    recorder = CallbackRecorder()
    UltralyticsBackend()._attach(recorder, TrainConfig(overfit=2),
                                 lambda e, m: seen.append((e, m)))
    trainer = SimpleNamespace(
        epoch=4, tloss=None, metrics=metrics, lr={"lr/pg0": 0.01}, stop=False,
        train_loader=SimpleNamespace(dataset=[0, 1]), label_loss_items=lambda t: {})
    for event in ("on_train_epoch_start", "on_train_epoch_end", "on_fit_epoch_end"):
        recorder.run(event, trainer)
    assert trainer.stop is stops
    assert seen[0][0] == 5 and seen[0][1]["mAP50"] == metrics["metrics/mAP50(B)"]
    assert seen[0][1]["train_images_per_s"] > 0


@pytest.mark.parametrize(("key", "name"), [("metrics/mAP50-95(B)", "mAP50-95"),
                                           ("train/box_loss", "train/box_loss"),
                                           ("lr/pg0", "lr/pg0")],
                         ids=["metric", "loss", "lr"])
def test_metric_name(key: str, name: str) -> None:
    assert metric_name(key) == name


def _activations(model: Any) -> set[str]:
    return {type(m.act).__name__ for m in model.modules() if hasattr(m, "act")} - {"Identity"}


def test_activation_builds_the_model_with_it_and_leaves_the_next_one_alone(
        tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    from detforge.train.offline import import_ultralytics

    config = TrainConfig(model="yolo11n.yaml", activation="relu", out=tmp_path)
    source = UltralyticsBackend._model_source(config, tmp_path / "run")
    assert Path(source).name == "yolo11n-relu.yaml"
    assert yaml.safe_load(Path(source).read_text())["activation"] == "nn.ReLU()"
    yolo = import_ultralytics(tmp_path / ".ultralytics").YOLO
    relu = yolo(source).model
    plain = yolo("yolo11n.yaml").model
    assert _activations(relu) == {"ReLU"}
    assert _activations(plain) == {"SiLU"}
    # the scale letter survived: same parameter count as the SiLU model of that size
    assert sum(p.numel() for p in relu.parameters()) == sum(
        p.numel() for p in plain.parameters())


def test_no_activation_trains_the_named_model() -> None:
    config = TrainConfig(model="yolov8s.yaml")
    assert UltralyticsBackend._model_source(config, Path("unused")) == "yolov8s.yaml"
