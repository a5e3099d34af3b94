"""Correctness: a short CPU training on ``detforge data synth`` output learns.

The whole user path runs through the CLI (``detforge data synth`` then ``detforge train``);
the trained ``best.pt`` is then scored by :func:`detforge.evaluate.evaluate_model`, whose
numbers equal pycocotools', so the check does not rest on Ultralytics' own mAP. Chance
level is about 0 here: two classes, 1-8 objects of 7-70 px per image, random positions.
The budget (images, size, epochs) fits in well under 5 minutes on 2 free CPU cores.
"""

from __future__ import annotations

import json

import pytest

from ..conftest import LEARN_EPOCHS, LEARN_SIZE, LearnedRun

pytestmark = [pytest.mark.slow, pytest.mark.train]

# The run itself is the session fixture ``learned_run`` (tests/conftest.py), shared with
# the INT8 test: `detforge data synth` and `detforge train` with this budget.
SIZE, EPOCHS = LEARN_SIZE, LEARN_EPOCHS
MIN_MAP50 = 0.5


def test_short_cpu_training_on_synth_data_reaches_map50(learned_run: LearnedRun) -> None:
    from detforge.data.formats import read_dataset
    from detforge.evaluate import evaluate_model

    out, data, train_s = learned_run.run_dir.parents[1], learned_run.data, learned_run.train_s
    record = json.loads((out / "learn" / "v1" / "run.json").read_text())
    assert record["epochs_done"] == EPOCHS
    ds = read_dataset(data)
    result = evaluate_model(out / "learn" / "v1" / "weights" / "best.pt", ds, split="val",
                            imgsz=(SIZE, SIZE), device="cpu")
    ap50 = result.stats[1]
    print(f"\ntrained {EPOCHS} epochs in {train_s:.0f} s; AP50 {ap50:.3f} (detforge evaluate), "
          f"mAP50 {record['final_metrics']['mAP50']:.3f} (Ultralytics)")
    assert ap50 >= MIN_MAP50, f"AP50 {ap50:.3f} < {MIN_MAP50} after {EPOCHS} epochs"
