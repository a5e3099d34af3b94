"""Correctness: a short CPU training on ``detforge data synth`` output learns.

The whole user path runs through the CLI (``detforge data synth`` then ``detforge train``);
the trained ``best.pt`` is then scored by :func:`detforge.evaluate.evaluate_model`, whose
numbers equal pycocotools', so the check does not rest on Ultralytics' own mAP. Chance
level is about 0 here: two classes, 1-8 objects of 7-70 px per image, random positions.
The budget (images, size, epochs) fits in well under 5 minutes on 2 free CPU cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.train]

IMAGES, CLASSES, SIZE, EPOCHS, BATCH = 200, 2, 128, 25, 8
MIN_MAP50 = 0.5


def test_short_cpu_training_on_synth_data_reaches_map50(tmp_path: Path) -> None:
    from detforge.data.formats import read_dataset
    from detforge.evaluate import evaluate_model

    runner = CliRunner()
    data, out = tmp_path / "ds", tmp_path / "runs"
    made = runner.invoke(app, ["data", "synth", str(data), "--images", str(IMAGES),
                               "--classes", str(CLASSES), "--size", f"{SIZE},{SIZE}"])
    assert made.exit_code == 0, made.output

    t0 = time.perf_counter()
    trained = runner.invoke(app, [
        "train", "--data", str(data), "--model", "yolo11n.yaml", "--epochs", str(EPOCHS),
        "--imgsz", str(SIZE), "--batch", str(BATCH), "--seed", "0", "--name", "learn",
        "--out", str(out), "--set", "tracking.enabled=false", "--set", "plots=false",
        # One optimiser step per batch (not per 64 images) and a one-epoch warm-up: a short
        # run needs the steps. Validation only at the end.
        "--set", f"optim.nbs={BATCH}", "--set", "optim.warmup_epochs=1",
        "--set", "augment.close_mosaic=5", "--set", "val=false"])
    train_s = time.perf_counter() - t0
    assert trained.exit_code == 0, trained.output[-3000:]

    record = json.loads((out / "learn" / "v1" / "run.json").read_text())
    assert record["epochs_done"] == EPOCHS
    ds = read_dataset(data)
    result = evaluate_model(out / "learn" / "v1" / "weights" / "best.pt", ds, split="val",
                            imgsz=(SIZE, SIZE), device="cpu")
    ap50 = result.stats[1]
    print(f"\ntrained {EPOCHS} epochs in {train_s:.0f} s; AP50 {ap50:.3f} (detforge evaluate), "
          f"mAP50 {record['final_metrics']['mAP50']:.3f} (Ultralytics)")
    assert ap50 >= MIN_MAP50, f"AP50 {ap50:.3f} < {MIN_MAP50} after {EPOCHS} epochs"
