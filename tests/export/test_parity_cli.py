"""``detforge parity A B --data DS`` on an untrained YOLO11n (built from YAML, offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.export.fidelity import Hop
from detforge.export.model_parity import ModelParity, RawDiff, default_tolerance

IMGSZ = (64, 64)
runner = CliRunner()
train = pytest.mark.train  # needs torch and ultralytics (the tiny model)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny .pt, its raw and deepstream ONNX exports, an INT8 copy and a 6-image dataset."""
    pytest.importorskip("ultralytics")
    import torch

    from detforge.data.synth import synthesize
    from detforge.export.onnx_export import export_onnx
    from detforge.export.parity import load_inputs
    from detforge.export.quantize import quantize_int8
    from detforge.train.offline import import_ultralytics

    folder = tmp_path_factory.mktemp("parity")
    import_ultralytics(folder / "cfg")
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=3, verbose=False)  # type: ignore[no-untyped-call]
    model.names = {0: "circle", 1: "square", 2: "triangle"}
    pt = folder / "tiny.pt"
    torch.save({"model": model, "train_args": {}, "epoch": -1}, pt)
    ds = folder / "ds"
    synthesize(ds, images=6, classes=3, seed=0, size=(64, 64), splits=(0.5, 0.5))
    # simplify=False: onnxslim costs seconds and parity does not depend on it
    raw = export_onnx(pt, folder / "raw.onnx", imgsz=IMGSZ, max_batch=4, simplify=False).path
    deepstream = export_onnx(pt, folder / "ds.onnx", imgsz=IMGSZ, layout="deepstream",
                             max_batch=4, simplify=False).path
    batch = load_inputs(sorted((ds / "images" / "train").iterdir())[:2], IMGSZ)
    int8 = quantize_int8(raw, folder / "int8.onnx", [b[None] for b in batch]).path
    return {"pt": pt, "raw": raw, "deepstream": deepstream, "int8": int8, "data": ds}


def _run(*args: str) -> Any:
    return runner.invoke(app, ["parity", *args])


@train
@pytest.mark.parametrize(("a", "b", "layout"), [
    ("pt", "raw", "raw"),
    ("pt", "deepstream", "deepstream"),
], ids=["pt-vs-raw", "pt-vs-deepstream"])
def test_pt_vs_onnx_passes(models: dict[str, Path], a: str, b: str, layout: str) -> None:
    result = _run(str(models[a]), str(models[b]), "--data", str(models["data"]))
    assert result.exit_code == 0, result.output
    assert f"raw ({layout}, 3 images): max abs diff" in result.output
    assert "(tolerance 0.001)" in result.output
    assert "box agreement 1.000" in result.output and result.output.rstrip().endswith("PASS")


@train
def test_onnx_vs_int8_json(models: dict[str, Path]) -> None:
    result = _run(str(models["raw"]), str(models["int8"]), "--data", str(models["data"]),
                  "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tolerance"] is None  # INT8 raw outputs differ by design: mAP decides
    assert report["raw"]["layout"] == "raw" and report["raw"]["max_abs_diff"] > 0
    assert report["fidelity"]["images"] == 3 and report["imgsz"] == list(IMGSZ)
    assert report["passed"] and report["failures"] == []


@train
def test_past_tolerance_exits_1(models: dict[str, Path]) -> None:
    result = _run(str(models["raw"]), str(models["int8"]), "--data", str(models["data"]),
                  "--tolerance", "1e-9")
    assert result.exit_code == 1
    assert "past --tolerance 1e-09" in result.stderr
    assert result.stdout.rstrip().endswith("FAIL")


@train
def test_a_wrong_yolo_export_fails(models: dict[str, Path], tmp_path: Path) -> None:
    """An export whose boxes sit 2 px to the right (every other number equal) fails."""
    from tests.rtdetr.conftest import plant_offset

    wrong = plant_offset(models["raw"], tmp_path / "wrong.onnx", [2.0] + [0.0] * 6, axis=1)
    result = _run(str(models["pt"]), str(wrong), "--data", str(models["data"]))
    assert result.exit_code == 1, result.output
    assert "FAIL: raw outputs differ" in result.stderr
    assert result.stdout.rstrip().endswith("FAIL")


@train
def test_layouts_differ_compares_detections_only(models: dict[str, Path]) -> None:
    result = _run(str(models["raw"]), str(models["deepstream"]), "--data", str(models["data"]))
    assert result.exit_code == 0, result.output
    assert "raw: not compared (layouts differ (raw vs deepstream)" in result.output


@train
@pytest.mark.parametrize(("args", "message"), [
    (["missing.onnx", "{raw}"], "missing.onnx: no such model file"),
    (["{data}/data.yaml", "{raw}"], "unknown model type '.yaml'"),
    (["{pt}", "{raw}", "--imgsz", "64,64,64"], "--imgsz '64,64,64' is not an input size"),
    (["{pt}", "{raw}", "--max-drop", "-1"], "--max-drop -1.0 must be zero or positive"),
    (["{pt}", "{raw}", "--tolerance", "-0.1"], "--tolerance -0.1 must be zero or positive"),
], ids=["missing-file", "unknown-type", "bad-imgsz", "negative-max-drop",
        "negative-tolerance"])
def test_bad_arguments_exit_2(models: dict[str, Path], args: list[str], message: str) -> None:
    names = {k: str(v) for k, v in models.items()}
    result = _run(*[a.format(**names) for a in args], "--data", names["data"])
    assert result.exit_code == 2
    assert result.stderr.startswith("ConfigError: ") and message in result.stderr


@train
def test_int8_tensorrt_reads_the_input_in_float(models: dict[str, Path]) -> None:
    """The symmetric flavour keeps the first conv float: a symmetric int8 input is 7-bit."""
    import onnx

    graph = onnx.load(str(models["int8"])).graph
    inits = {i.name for i in graph.initializer}
    readers = [n for n in graph.node if graph.input[0].name in n.input]
    assert [n.op_type for n in readers] == ["Conv"]
    assert readers[0].input[1] in inits  # float weights, not a DequantizeLinear output
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 50  # the rest is int8


def _hop(before: float, after: float) -> Hop:
    return Hop("parity", "a.onnx", "b.onnx", 10, before, after, 0.9, 0.9, 1.0)


@pytest.mark.parametrize(("rel", "tolerance", "after", "max_drop", "failure"), [
    (1e-5, 1e-3, 0.500, 1.0, None),
    (1e-2, 1e-3, 0.500, 1.0, "raw outputs differ by 1.00e-02 of A's output range"),
    (1e-2, None, 0.500, 1.0, None),
    (None, 1e-3, 0.480, 1.0, "B loses 2.00 mAP50-95 points against A (0.5000 -> 0.4800)"),
    (None, 1e-3, 0.496, 0.5, None),
    (None, 1e-3, 0.520, 0.0, None),
], ids=["within", "past-tolerance", "tolerance-unchecked", "past-max-drop", "within-max-drop",
        "b-better"])
def test_failures(rel: float | None, tolerance: float | None, after: float, max_drop: float,
                  failure: str | None) -> None:
    raw = None if rel is None else RawDiff("raw", 4, (4, 7, 84), rel * 10, rel)
    res = ModelParity(Path("a.onnx"), Path("b.onnx"), (64, 64), raw, "", _hop(0.5, after),
                      tolerance, max_drop)
    if failure is None:
        assert res.passed and res.failures == []
    else:
        assert not res.passed and [f[:len(failure)] for f in res.failures] == [failure]
    assert res.to_dict()["passed"] is res.passed


@pytest.mark.parametrize(("raw", "low_boxes", "fails"), [
    (None, 0, True), (RawDiff("rtdetr", 4, (4, 50, 6), 0.0, 0.0, 0, 0.0), 0, True),
    (None, 12, False), (None, None, False),
], ids=["nothing", "no-rows-no-boxes", "boxes", "not-measured"])
def test_two_empty_outputs_never_pass(raw: RawDiff | None, low_boxes: int | None,
                                      fails: bool) -> None:
    hop = Hop("parity", "a.pt", "b.onnx", 8, 0.0, 0.0, 0.0, 0.0, 1.0, low_agreement=None,
              low_boxes=low_boxes)
    res = ModelParity(Path("a.pt"), Path("b.onnx"), (64, 64), raw, "", hop, 1e-3, 1.0)
    assert res.passed is not fails
    assert any("nothing to compare" in f for f in res.failures) is fails


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("fp32", "fp32", 1e-3), ("fp32", "fp16", 1e-2), ("fp16", "int8", None),
], ids=["fp32", "fp16", "int8"])
def test_default_tolerance(a: str, b: str, expected: float | None) -> None:
    assert default_tolerance(a, b) == expected
