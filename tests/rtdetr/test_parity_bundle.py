"""RT-DETR parity that can fail, and deployment bundles (DeepStream without NMS, Triton)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.rtdetr.conftest import TrainedRTDETR, plant_offset
from typer.testing import CliRunner

from detforge.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.train]
runner = CliRunner()


def _parity(a: Path, b: Path, data: Path) -> dict[str, object]:
    result = runner.invoke(app, ["parity", str(a), str(b), "--data", str(data), "--json",
                                 "--images", "20"])
    report: dict[str, object] = json.loads(result.stdout)
    assert result.exit_code == (0 if report["passed"] else 1)
    return report


def test_pt_and_onnx_pass_row_by_row(rtdetr_trained: TrainedRTDETR, rtdetr_onnx: Path) -> None:
    report = _parity(rtdetr_trained.pt, rtdetr_onnx, rtdetr_trained.data)
    raw = report["raw"]
    assert isinstance(raw, dict) and raw["layout"] == "rtdetr"
    assert raw["rows"] > 100 and raw["unmatched"] == 0  # compared down to scores of 0.001
    assert raw["max_abs_diff"] <= 1.0 and raw["score_diff"] <= 1e-3
    fid = report["fidelity"]
    assert isinstance(fid, dict) and fid["low_boxes"] > 100 and fid["low_agreement"] >= 0.95
    assert report["passed"], report["failures"]


@pytest.mark.parametrize(("offset", "failure"), [
    ([2.0, 0, 0, 0, 0, 0], "boxes differ by 2 px"),
    ([0, 0, 0, 0, 0.01, 0], "scores differ by 0.01"),
], ids=["boxes-2px", "scores-0.01"])
def test_a_wrong_export_fails(rtdetr_trained: TrainedRTDETR, rtdetr_onnx: Path,
                              tmp_path: Path, offset: list[float], failure: str) -> None:
    wrong = plant_offset(rtdetr_onnx, tmp_path / "wrong.onnx", offset)
    report = _parity(rtdetr_trained.pt, wrong, rtdetr_trained.data)
    assert not report["passed"]
    assert any(failure in f for f in report["failures"]), report["failures"]  # type: ignore[attr-defined]


def test_bundle_has_no_nms_and_verifies(rtdetr_trained: TrainedRTDETR, tmp_path: Path) -> None:
    """DeepStream: the rtdetr rows go to the shipped parser with cluster-mode=4; the bundle
    verifies through the emulated device pipeline; Triton's config parses."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from detforge.deploy.dsconfig import read_keyfile

    out = tmp_path / "bundles"
    made = runner.invoke(app, ["deploy", "bundle", str(rtdetr_trained.pt), "--target", "t4",
                               "--out", str(out), "--data", str(rtdetr_trained.data),
                               "--precision", "fp16"])
    assert made.exit_code == 0, made.output
    folder = out / "t4"
    infer = read_keyfile(folder / "config_infer_primary.txt")
    assert infer.get("property", "cluster-mode") == "4"
    assert infer.get("property", "maintain-aspect-ratio") == "1"
    assert infer.get("property", "infer-dims") == "3;{};{}".format(*rtdetr_trained.imgsz)
    verified = runner.invoke(app, ["deploy", "verify", str(folder)])
    assert verified.exit_code == 0, verified.output
    assert "parser and clustering 1.000" in verified.output
    config = next((folder / "model_repository").glob("*/config.pbtxt"))
    parsed = text_format.Parse(config.read_text(), model_config_pb2.ModelConfig())
    assert [o.name for o in parsed.output] == ["output"] and list(parsed.output[0].dims) == [50,
                                                                                           6]
    # nvinfer clustering these rows would drop RT-DETR's neighbours: the rule says so
    text = (folder / "config_infer_primary.txt").read_text()
    (folder / "config_infer_primary.txt").write_text(text.replace("cluster-mode=4",
                                                                  "cluster-mode=2"))
    broken = runner.invoke(app, ["deploy", "verify", str(folder)])
    assert broken.exit_code != 0 and "cluster-mode=4" in broken.output
