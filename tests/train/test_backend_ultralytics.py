"""The Ultralytics backend's callback wiring, driven without a trainer."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

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
