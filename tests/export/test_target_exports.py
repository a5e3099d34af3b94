"""A YOLO11n exported for each target passes that target's ``engine check`` at every
precision it runs; the INT8 TensorRT flavour keeps biases float; bundles do the same.

One seeded YOLO11n (64x64) is exported once per opset the table needs (13 for TensorRT
8.2, 17 for the rest) and quantised once, for the whole module.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from detforge.core.artefacts import TARGETS, get_target, supported_precisions
from detforge.core.errors import ConfigError
from detforge.export.engine_check import check_model, check_trtexec_args
from detforge.export.engine_plan import parse_batch_range, plan_engine, trtexec_command
from detforge.export.onnx_export import resolve_opset
from detforge.export.trt_compat import export_opset, rules_for

pytestmark = [pytest.mark.slow, pytest.mark.train]
IMGSZ = (64, 64)
PAIRS = [(n, p) for n in TARGETS for p in supported_precisions(TARGETS[n])]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``"13"`` / ``"17"``: float DeepStream-layout exports; ``"int8"``: the opset-17 one
    quantised with the TensorRT flavour."""
    pytest.importorskip("ultralytics")
    from detforge.export.onnx_export import export_onnx
    from detforge.export.quantize import quantize_int8
    from detforge.testing import random_image, seeded_yolo11n

    folder = tmp_path_factory.mktemp("target-exports")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seeded_yolo11n(*IMGSZ).save(str(folder / "yolo11n.pt"))
    out = {}
    for targets in (["jetson-nano"], ["orin-nano"]):
        res = export_onnx(folder / "yolo11n.pt", folder / f"{targets[0]}.onnx", imgsz=IMGSZ,
                          layout="deepstream", targets=[get_target(t) for t in targets])
        out[str(res.opset)] = res.path
    calib = [random_image(*IMGSZ, seed=s).transpose(2, 0, 1)[None].astype(np.float32) / 255
             for s in range(4)]
    quantize_int8(out["17"], folder / "int8.onnx", calib, flavour="tensorrt")
    out["int8"] = folder / "int8.onnx"
    return out


def test_export_opset_auto(models: dict[str, Path]) -> None:
    assert sorted(models) == ["13", "17", "int8"]
    for opset in ("13", "17"):
        model = onnx.load(str(models[opset]))
        assert model.opset_import[0].version == int(opset)
        ops = {n.op_type for n in model.graph.node}
        assert "Range" not in ops  # anchors folded to constants once H, W are fixed
        reduce_inputs = [len(n.input) for n in model.graph.node if n.op_type == "ReduceMax"]
        assert reduce_inputs and set(reduce_inputs) == {1}  # `axes` as an attribute


@pytest.mark.parametrize(("opset", "targets", "expect"), [
    ("auto", [], 17), ("auto", ["jetson-nano", "t4"], 13), ("auto", ["xavier-nx"], 17),
    (17, ["t4"], 17), ("13", ["jetson-tx2"], 13), (18, [], 18),
    (17, ["jetson-nano"], ConfigError), (12, [], ConfigError), ("x", [], ConfigError),
])
def test_resolve_opset(opset: Any, targets: list[str], expect: Any) -> None:
    chosen = [get_target(t) for t in targets]
    if expect is ConfigError:
        with pytest.raises(ConfigError, match="opset"):
            resolve_opset(opset, chosen)
    else:
        assert resolve_opset(opset, chosen) == expect


def test_opset_13_and_17_give_the_same_outputs(models: dict[str, Path]) -> None:
    import onnxruntime as ort

    x = np.random.default_rng(0).random((2, 3, *IMGSZ), dtype=np.float32)
    outs = [ort.InferenceSession(str(models[o]), providers=["CPUExecutionProvider"])
            .run(None, {"input": x})[0] for o in ("13", "17")]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-3)


def test_int8_tensorrt_flavour_keeps_biases_float(models: dict[str, Path]) -> None:
    model = onnx.load(str(models["int8"]))
    inits = {i.name: i for i in model.graph.initializer}
    dq_inputs = [inits[n.input[0]].data_type for n in model.graph.node
                 if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert dq_inputs and set(dq_inputs) == {TensorProto.INT8}
    biases = [n.input[2] for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    assert biases and all(inits[b].data_type == TensorProto.FLOAT for b in biases)


@pytest.mark.parametrize(("name", "precision"), PAIRS, ids=[f"{n}-{p}" for n, p in PAIRS])
def test_export_for_target_passes_engine_check(models: dict[str, Path], name: str,
                                               precision: str) -> None:
    target = get_target(name)
    path = models["int8"] if precision == "int8" else models[str(export_opset([target.tensorrt]))]
    report = check_model(path, target, precision=precision)
    assert report.passed, [v.line() for v in report.violations]
    if precision != "fp32":  # DLA and trtexec options too, where the target has them
        plan = plan_engine(path, target, precision, batch=parse_batch_range(f"1-{target.batch}"),
                           dla_core=0 if target.dla_cores else None)
        assert check_trtexec_args(trtexec_command(plan)[1:], rules_for(target.tensorrt)) == []


@pytest.mark.parametrize("name", ["xavier-nx", "orin-nano"])
def test_opset_17_int8_is_what_8_5_and_10_import(models: dict[str, Path], name: str) -> None:
    """The same file serves both: 8.5 reads `axes` attributes, 10.x reads either form."""
    assert check_model(models["int8"], get_target(name)).passed
    fail = check_model(models["17"], get_target("jetson-nano"))
    assert [v.rule for v in fail.violations] == ["opset"]


def test_bundle_passes_engine_check_on_each_tensorrt(models: dict[str, Path],
                                                     tmp_path: Path) -> None:
    """``deploy bundle`` (float model in, INT8 made inside) for one target of each TensorRT
    row in the table (``tests/deploy`` bundles every target; the bundle itself refuses any
    model a target cannot build): each model written passes its target's check."""
    from detforge.data.synth import synthesize
    from detforge.deploy.bundle import bundle_model

    synthesize(tmp_path / "ds", images=6, classes=3, seed=0, size=IMGSZ, fmt="yolo",
               splits=(0.5, 0.5))
    names = ["jetson-nano", "xavier-nx", "orin-nano", "rtx-50"]
    assert {rules_for(TARGETS[n].tensorrt).series for n in TARGETS} == \
        {rules_for(TARGETS[n].tensorrt).series for n in names}
    result = bundle_model(models["13"], targets=names, out=tmp_path / "b", precision="auto",
                          data=tmp_path / "ds", calib_images=4, reference_images=1)
    assert [b.precision for b in result.bundles] == ["fp16", "int8", "int8", "fp16"]
    for b in result.bundles:
        report = check_model(b.folder / b.onnx, get_target(b.target), precision=b.precision)
        assert report.passed, (b.target, [v.line() for v in report.violations])
