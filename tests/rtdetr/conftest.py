"""RT-DETR fixtures: one small RT-DETR trained here, shared by every RT-DETR test.

The model (``rtdetr-tiny.yaml``, 0.8 M parameters) is trained through ``detforge train`` on a
generated 16:9 dataset at a 160x288 letterboxed input, once per machine: the weights and the
run's records are cached under a key made of the recipe, Ultralytics' version and the
sources of detforge's trainer, so a change to the trainer trains again. The dataset is
regenerated each session (``detforge data synth`` is seeded and byte-identical).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.cli import app

RECIPE = {"images": 128, "classes": 2, "size": [320, 180], "seed": 0, "imgsz": [160, 288],
          "epochs": 25, "batch": 8, "lr0": 0.002, "model": "rtdetr-tiny.yaml"}
CACHE = Path(os.environ.get("DETFORGE_TEST_CACHE",
                            Path(tempfile.gettempdir()) / "detforge-test-cache"))
_SRC = Path(__file__).resolve().parents[2] / "src" / "detforge" / "train"
_TRAINER_SOURCES = ("backends/rect_data.py", "backends/ul_trainer.py", "backends/ultralytics.py",
                    "models/rtdetr-tiny.yaml")
_RECORDS = ("run.json", "args.yaml", "config.yaml")


@dataclass(frozen=True)
class TrainedRTDETR:
    """The cached run: ``best.pt``, its run records and the dataset it trained on."""

    pt: Path
    records: Path
    data: Path
    imgsz: tuple[int, int]
    train_seconds: float | None


def _key() -> str:
    import ultralytics

    digest = hashlib.sha256(json.dumps({**RECIPE, "ultralytics": ultralytics.__version__},
                                       sort_keys=True).encode())
    for rel in _TRAINER_SOURCES:
        digest.update((_SRC / rel).read_bytes())
    return digest.hexdigest()[:16]


def _train(data: Path, out: Path) -> Path:
    """``detforge train`` as a user runs it; returns the run folder."""
    e = RECIPE["epochs"]
    result = CliRunner().invoke(app, [
        "train", "--data", str(data), "--model", str(RECIPE["model"]), "--epochs", str(e),
        "--imgsz", "{},{}".format(*RECIPE["imgsz"]), "--batch", str(RECIPE["batch"]),
        "--seed", str(RECIPE["seed"]), "--name", "rtdetr", "--out", str(out),
        "--set", "tracking.enabled=false", "--set", "plots=false", "--set", "val=false",
        # A DETR learns from optimiser steps: one per batch, AdamW, RT-DETR's own clipping
        # (0.1) and a step down for the last epochs; EMA on a short ramp for a short run.
        "--set", "optim.optimizer=AdamW", "--set", f"optim.lr0={RECIPE['lr0']}",
        "--set", f"optim.nbs={RECIPE['batch']}", "--set", "optim.warmup_epochs=1",
        "--set", "optim.max_grad_norm=0.1", "--set", "optim.lr_schedule=multistep",
        "--set", f"optim.lr_milestones=[{e - 5}]", "--set", "ema.tau=100",
        "--set", "augment.mosaic=0", "--set", "augment.scale=0.3"])
    assert result.exit_code == 0, result.output[-3000:]
    return out / "rtdetr" / "v1"


@pytest.fixture(scope="session")
def rtdetr_trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRTDETR:
    """The small RT-DETR trained on 16:9 synthetic images (trained once per machine)."""
    pytest.importorskip("ultralytics")
    from detforge.data.synth import synthesize

    work = tmp_path_factory.mktemp("rtdetr")
    data = work / "ds"
    synthesize(data, images=RECIPE["images"], classes=RECIPE["classes"], seed=RECIPE["seed"],
               size=tuple(RECIPE["size"]))  # type: ignore[arg-type]
    cached = CACHE / f"rtdetr-{_key()}"
    seconds = None
    if not (cached / "best.pt").is_file():
        t0 = time.perf_counter()
        run = _train(data, work / "runs")
        seconds = time.perf_counter() - t0
        tmp = cached.with_name(cached.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copyfile(run / "weights" / "best.pt", tmp / "best.pt")
        for name in _RECORDS:
            shutil.copyfile(run / name, tmp / name)
        shutil.rmtree(cached, ignore_errors=True)
        tmp.replace(cached)
    h, w = RECIPE["imgsz"]
    return TrainedRTDETR(cached / "best.pt", cached, data, (int(h), int(w)), seconds)


@pytest.fixture(scope="session")
def rtdetr_onnx(rtdetr_trained: TrainedRTDETR, tmp_path_factory: pytest.TempPathFactory,
                ) -> Path:
    """``detforge export best.pt`` with every default: rtdetr layout, trained input size,
    dynamic batch."""
    out = tmp_path_factory.mktemp("rtdetr-onnx") / "rtdetr.onnx"
    result = CliRunner().invoke(app, ["export", str(rtdetr_trained.pt), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def plant_offset(onnx_in: Path, onnx_out: Path, offset: list[float], axis: int = -1) -> Path:
    """A wrong export for parity checks: ``onnx_in`` with ``offset`` added to its first
    output along ``axis`` (``[2, 0, 0, 0, 0, 0]`` moves every RT-DETR box 2 px right)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_in))
    g = model.graph
    out = g.output[0].name
    shape = [1] * len(g.output[0].type.tensor_type.shape.dim)
    shape[axis] = len(offset)
    for node in g.node:
        node.output[:] = ["planted_src" if o == out else o for o in node.output]
    g.initializer.append(numpy_helper.from_array(
        np.asarray(offset, np.float32).reshape(shape), "planted_offset"))
    g.node.append(helper.make_node("Add", ["planted_src", "planted_offset"], [out],
                                   name="planted_add"))
    onnx.save(model, str(onnx_out))
    return onnx_out
