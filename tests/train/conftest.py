"""Shared training fixtures: one tiny offline run for the whole session."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from detforge.data.synth import synthesize
from detforge.train import RunResult, load_train_config, train


@dataclass
class TinyRun:
    """The session's tiny training run and the network attempts made during it."""

    result: RunResult
    source: Path
    out: Path
    attempts: list[Any] = field(default_factory=list)


@pytest.fixture(scope="session")
def train_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs root shared by the session (Ultralytics' config dir lives under it)."""
    return tmp_path_factory.mktemp("train_out")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 synthetic 96x96 images, 2 classes, YOLO layout with train/val splits."""
    path = tmp_path_factory.mktemp("tiny") / "ds"
    synthesize(path, images=16, classes=2, seed=0, size=(96, 96))
    return path


@pytest.fixture(scope="session")
def tiny_run(train_out: Path, tiny_dataset: Path) -> Iterator[TinyRun]:
    """Two epochs of yolo11n at 64 px, tracked in MLflow; socket connects and DNS refused."""
    attempts: list[Any] = []

    def refuse_connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError(f"network disabled in tests: connect to {address!r}")

    def refuse_create(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        raise OSError(f"network disabled in tests: create_connection to {address!r}")

    def refuse_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(host)
        raise OSError(f"network disabled in tests: DNS lookup of {host!r}")

    cfg = load_train_config(flags={"data": tiny_dataset, "epochs": 2, "imgsz": 64, "batch": 8,
                                   "out": train_out, "name": "tiny", "plots": False})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse_connect)
        mp.setattr(socket, "create_connection", refuse_create)
        mp.setattr(socket, "getaddrinfo", refuse_dns)
        result = train(cfg)
    yield TinyRun(result=result, source=tiny_dataset, out=train_out, attempts=attempts)
