"""``detforge evaluate``: exit codes, terminal table, JSON keys, reports, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.evaluate.conftest import make_coco_pair, pycocotools_eval
from typer.testing import CliRunner

from detforge.cli import app

runner = CliRunner()


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    gt, dts = make_coco_pair(0, images=30)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dts))
    return tmp_path / "dt.json", tmp_path / "gt.json"


def test_predictions_gt_json_and_html(files: tuple[Path, Path], tmp_path: Path) -> None:
    dt, gt = files
    out, page = tmp_path / "m.json", tmp_path / "r.html"
    result = runner.invoke(app, ["evaluate", "--predictions", str(dt), "--gt", str(gt),
                                 "--json", str(out), "--html", str(page)])
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header[:8] == ["model", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"]
    rows = [ln.split()[0] for ln in result.output.splitlines() if ln.startswith("class_")]
    assert rows == ["class_0", "class_1", "class_2", "class_3"]  # the per-class table
    assert "F1-optimal confidence" in result.output
    data = json.loads(out.read_text())
    assert {"stats", "per_class", "confusion_matrix", "pr_curves", "worst_images"} <= set(data)
    ref = pycocotools_eval(json.loads(gt.read_text()), json.loads(dt.read_text()))
    np.testing.assert_allclose(data["stats"], ref.stats, atol=1e-6)
    assert set(data["per_class"]) == {"class_0", "class_1", "class_2", "class_3"}
    assert page.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--predictions", "{dt}"], 2, "ConfigError: a results file is scored with"),
    (["--predictions", "{dt}", "--gt", "{gt}", "--data", "x"], 2, "ConfigError"),
    ([], 2, "ConfigError: give a MODEL"),
    (["m.onnx"], 2, "ConfigError: a model is evaluated on a dataset"),
    (["a.onnx", "b.onnx", "--data", "x"], 2, "add --compare"),
    (["--predictions", "{gt}", "--gt", "{gt}"], 2, "DatasetError: {gt}"),
    (["--predictions", "{dt}", "--gt", "{dt}"], 2, "not a COCO ground-truth file"),
    (["m.onnx", "--data", "x", "--imgsz", "big"], 2, "--imgsz 'big'"),
], ids=["no-gt", "gt-and-data", "nothing", "model-no-data", "two-models-no-compare",
        "gt-as-predictions", "results-as-gt", "bad-imgsz"])
def test_usage_errors(files: tuple[Path, Path], args: list[str], code: int,
                      message: str) -> None:
    dt, gt = files
    argv = ["evaluate", *(a.format(dt=dt, gt=gt) for a in args)]
    result = runner.invoke(app, argv)
    assert result.exit_code == code, result.output
    assert message.format(dt=dt, gt=gt) in result.output
    assert "Traceback" not in result.output


def test_bad_predictions_entry_names_file_and_entry(files: tuple[Path, Path]) -> None:
    dt, gt = files
    entries = json.loads(dt.read_text())
    entries[3]["image_id"] = 999
    dt.write_text(json.dumps(entries))
    result = runner.invoke(app, ["evaluate", "--predictions", str(dt), "--gt", str(gt)])
    assert result.exit_code == 2
    assert f"DatasetError: {dt}: entry 3: image_id 999" in result.output
