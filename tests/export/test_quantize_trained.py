"""INT8 on a trained model: the mAP side of issue 4's target, and ``detforge parity`` on it.

The model is the session's ``learned_run`` (tests/conftest.py): a YOLO11n trained by
``detforge train`` on synthetic data at 128 px, shared with the learning test, so this file
adds no training. Speed is measured by ``benchmarks/bench_quantize.py``, not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.cli import app

from ..conftest import LearnedRun

pytestmark = [pytest.mark.slow, pytest.mark.train]


@pytest.fixture(scope="module")
def trained(learned_run: LearnedRun, tmp_path_factory: pytest.TempPathFactory,
            ) -> dict[str, Path]:
    """The session's trained weights and dataset, and their FP32 ONNX export."""
    from detforge.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("int8")
    size = (learned_run.imgsz, learned_run.imgsz)
    fp32 = export_onnx(learned_run.weights, folder / "fp32.onnx", imgsz=size).path
    return {"pt": learned_run.weights, "data": learned_run.data, "fp32": fp32,
            "folder": folder}


@pytest.mark.parametrize("flavour", ["cpu", "tensorrt"], ids=["cpu", "tensorrt"])
def test_int8_keeps_map(trained: dict[str, Path], flavour: str) -> None:
    from detforge.export.api import quantize_model

    out = trained["folder"] / f"int8-{flavour}.onnx"
    outcome = quantize_model(trained["fp32"], out, data=trained["data"], flavour=flavour,
                             force=True)
    hop = outcome.hop
    assert hop is not None and out.is_file()
    print(f"\nINT8 ({flavour}): mAP50-95 {hop.map50_95_before:.4f} -> {hop.map50_95_after:.4f} "
          f"({-hop.map_drop_pts:+.2f} pt), box agreement {hop.box_agreement:.3f}")
    assert hop.map50_before > 0.3, f"the model has not learned: {hop}"
    # The target (<= 0.5 pt) is measured by benchmarks/bench_quantize.py on a 300-image
    # model; this tiny model's small validation split moves the drop by tenths of a point
    # between trainings (tensorrt: 0.18 pt, then 0.50 pt after a training-loop change).
    assert hop.map_drop_pts <= 1.0, hop
    assert hop.box_agreement > 0.8, hop
    record = json.loads((out.parent / "fidelity.json").read_text())
    assert record["hops"][-1]["kind"] == "quantize-int8"


def test_parity_cli_on_trained(trained: dict[str, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["parity", str(trained["pt"]), str(trained["fp32"]),
                                 "--data", str(trained["data"]), "--images", "60", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["raw"]["max_rel_diff"] < 1e-3
    assert report["fidelity"]["box_agreement"] > 0.95
    assert abs(report["fidelity"]["map_drop_pts"]) < 0.2
