"""``engine check``: the TensorRT rules per version, each violation planted and caught."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.artefacts import TARGETS, get_target
from detforge.core.errors import ConfigError, TargetCapabilityError
from detforge.export.engine_check import (
    check_build_script,
    check_graph,
    check_model,
    check_trtexec_args,
    require_buildable,
)
from detforge.export.trt_compat import CITE, export_opset, rules_for, series

runner = CliRunner()


def model_of(nodes: list[Any], inits: list[Any], *, opset: int, out_dims: int = 4,
             elem: int = TensorProto.FLOAT) -> Any:
    """A graph from 'x' [B,3,8,8] to the last node's first output."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info(nodes[-1].output[0], elem, None)
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def rules(rows: list[Any], version: str) -> list[str]:
    return [v.rule for v in check_graph(rows[0], rules_for(version))] if rows else []


def _save(model: Any, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


# --- the table ---------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "row", "opset", "workspace", "flags"), [
    ("8.2.1", "8.2", (7, 13), "--workspace", True),
    ("8.4.3", "8.5", (7, 17), "--memPoolSize", True),
    ("8.5.2", "8.5", (7, 17), "--memPoolSize", True),
    ("8.6.1", "8.6", (7, 17), "--memPoolSize", True),
    ("10.3.0", "10", (9, 20), "--memPoolSize", True),
    ("10.9.0", "10", (9, 20), "--memPoolSize", True),
    ("11.1.0", "11", (9, 20), "--memPoolSize", False),
])
def test_rows(version: str, row: str, opset: tuple[int, int], workspace: str,
              flags: bool) -> None:
    r = rules_for(version)
    assert (r.series, r.opset, r.trtexec.workspace, r.trtexec.precision_flags) == \
        (row, opset, workspace, flags)
    for aspect in ("opset", "ops", "qdq", "reduce", "const", "trtexec", "python", "precision"):
        src = r.source(aspect)  # every rule cites repository, ref and file
        assert ("onnx/onnx-tensorrt" in src or "NVIDIA/TensorRT" in src) and "." in src
    assert r.python.explicit_batch == {"8": "required", "10": "deprecated",
                                       "11": "absent"}[row.split(".")[0]]
    assert r.python.precision_flags == (row != "11") == r.python.calibrators


def test_minor_releases_add_operators_and_lift_rules() -> None:
    assert "Reciprocal" not in rules_for("8.2.1").ops and "Reciprocal" in rules_for("8.5.2").ops
    assert "STFT" not in rules_for("10.3.0").ops and "STFT" in rules_for("10.9.0").ops
    assert "Swish" in rules_for("11.0").ops
    assert ("Slice", 3, "axes") in rules_for("10.0.1").const_inputs
    assert ("Slice", 3, "axes") not in rules_for("10.3.0").const_inputs
    assert "FLOAT4E2M1" in rules_for("10.9.0").dq_types
    assert not rules_for("10.0.1").trtexec.pool_units and rules_for("10.1.0").trtexec.pool_units


@pytest.mark.parametrize("bad", ["7.2.1", "8.3.0", "9.3.0", "12.0", "ten"])
def test_versions_outside_the_table(bad: str) -> None:
    with pytest.raises(ConfigError, match="TensorRT"):
        series(bad)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_target_has_a_row_and_an_export_opset(name: str) -> None:
    t = get_target(name)
    assert rules_for(t.tensorrt).series in CITE
    assert export_opset([t.tensorrt]) == (13 if t.tensorrt.startswith("8.2") else 17)


# --- graph rules: each violation planted --------------------------------------------------

def _reduce_max(opset: int) -> Any:
    if opset >= 18:
        node = helper.make_node("ReduceMax", ["x", "ax"], ["y"], keepdims=1, name="rmax")
        return model_of([node], [numpy_helper.from_array(np.array([1], np.int64), "ax")],
                        opset=opset)
    return model_of([helper.make_node("ReduceMax", ["x"], ["y"], axes=[1], keepdims=1,
                                      name="rmax")], [], opset=opset)


@pytest.mark.parametrize(("opset", "version", "expect"), [
    (18, "8.5.2", ["opset", "reduce-axes-input"]),
    (18, "8.6.1", ["opset", "reduce-axes-input"]),
    (18, "10.3.0", []),
    (17, "8.5.2", []),
    (17, "8.2.1", ["opset"]),
    (13, "8.2.1", []),
], ids=["18-on-8.5", "18-on-8.6", "18-on-10", "17-on-8.5", "17-on-8.2", "13-on-8.2"])
def test_reduce_axes_input_and_opset(opset: int, version: str, expect: list[str]) -> None:
    violations = check_graph(_reduce_max(opset), rules_for(version))
    assert [v.rule for v in violations] == expect
    if "reduce-axes-input" in expect:
        v = violations[1]
        assert v.node == "rmax" and "reduces over every axis" in v.message
        assert "builtin_op_importers.cpp" in v.source and "opset <= 17" in v.fix


def _qdq_conv(*, bias: str, zp: int = 0, zp_type: Any = np.int8) -> Any:
    """x -> Q -> DQ -> Conv(DQ(w), bias) with the bias as ``float`` or ``int32`` behind a DQ."""
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
             numpy_helper.from_array(np.array(zp, zp_type), "zp"),
             numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "wq"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wzp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="x_dq"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["w"], axis=0,
                              name="w_dq")]
    if bias == "int32":
        inits += [numpy_helper.from_array(np.arange(4, dtype=np.int32), "bq"),
                  numpy_helper.from_array(np.full(4, 0.0002, np.float32), "bs"),
                  numpy_helper.from_array(np.zeros(4, np.int32), "bzp")]
        nodes.append(helper.make_node("DequantizeLinear", ["bq", "bs", "bzp"], ["b"], axis=0,
                                      name="conv.bias_DequantizeLinear"))
    else:
        inits.append(numpy_helper.from_array(np.zeros(4, np.float32), "b"))
    nodes.append(helper.make_node("Conv", ["xd", "w", "b"], ["y"], name="conv"))
    return model_of(nodes, inits, opset=17)


@pytest.mark.parametrize(("model", "version", "expect"), [
    (lambda: _qdq_conv(bias="float"), "8.5.2", []),
    (lambda: _qdq_conv(bias="float"), "10.3.0", []),
    (lambda: _qdq_conv(bias="int32"), "8.5.2", ["dq-input-type"]),
    (lambda: _qdq_conv(bias="int32"), "10.9.0", ["dq-input-type"]),
    (lambda: _qdq_conv(bias="float", zp=128, zp_type=np.uint8), "10.3.0",
     ["qdq-uint8", "qdq-zero-point", "qdq-uint8", "qdq-zero-point", "dq-input-type"]),
    (lambda: _qdq_conv(bias="float", zp=3), "8.6.1", ["qdq-zero-point", "qdq-zero-point"]),
], ids=["float-bias-8.5", "float-bias-10", "int32-bias-8.5", "int32-bias-10", "uint8", "zp"])
def test_qdq_rules(model: Callable[[], Any], version: str, expect: list[str]) -> None:
    violations = check_graph(model(), rules_for(version))
    assert [v.rule for v in violations] == expect
    for v in violations:
        assert "issue 4542" in v.source and "--for tensorrt" in v.fix
    if "dq-input-type" in expect and version != "10.3.0":
        assert violations[0].node == "conv.bias_DequantizeLinear"
        assert "INT32 (a quantized bias)" in violations[0].message


def test_ops_unsupported_by_8_2() -> None:
    nodes = [helper.make_node("Reciprocal", ["x"], ["r"], name="recip"),
             helper.make_node("Mod", ["r", "r"], ["y"], fmod=1, name="mod")]
    model = model_of(nodes, [], opset=13)
    got = [(v.node, v.rule) for v in check_graph(model, rules_for("8.2.1"))]
    assert got == [("recip", "unsupported-op"), ("mod", "unsupported-op")]
    assert check_graph(model, rules_for("8.5.2")) == []


def test_custom_domain_and_subgraphs() -> None:
    inner = helper.make_graph([helper.make_node("NonZero", ["x"], ["nz"], name="inner_nz")],
                              "then", [], [helper.make_tensor_value_info("nz", TensorProto.INT64,
                                                                         None)])
    nodes = [helper.make_node("ReduceMax", ["x"], ["c"], keepdims=0, name="c"),
             helper.make_node("Cast", ["c"], ["cb"], to=TensorProto.BOOL, name="cast"),
             helper.make_node("If", ["cb"], ["y"], then_branch=inner, else_branch=inner,
                              name="if"),
             helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft", name="ms_gelu")]
    model = model_of(nodes[:3], [], opset=13)
    model.graph.node.append(nodes[3])
    got = [(v.node, v.rule) for v in check_graph(model, rules_for("8.2.1"))]
    assert ("inner_nz", "unsupported-op") in got and ("ms_gelu", "custom-domain") in got


def test_inputs_that_must_be_constants() -> None:
    shape = helper.make_node("Shape", ["x"], ["shp"], name="shape")
    nodes = [shape,
             helper.make_node("Slice", ["shp", "st", "en", "ax"], ["s"], name="slice_const"),
             helper.make_node("Slice", ["x", "st", "en", "s"], ["y"], name="slice_dynamic")]
    inits = [numpy_helper.from_array(np.array([0], np.int64), n) for n in ("st", "ax")] + \
        [numpy_helper.from_array(np.array([1], np.int64), "en")]
    model = model_of(nodes, inits, opset=13)
    got = [(v.node, v.rule) for v in check_graph(model, rules_for("8.5.2"))]
    assert got == [("slice_dynamic", "const-input")]
    assert check_graph(model, rules_for("10.3.0")) == []  # 10.3 takes tensor axes


def test_float_range_needs_constants_on_8_2() -> None:
    nodes = [helper.make_node("Shape", ["x"], ["shp"], name="shape"),
             helper.make_node("Gather", ["shp", "i"], ["w"], axis=0, name="w"),
             helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Range", ["zero", "wf", "one"], ["y"], name="anchors")]
    inits = [numpy_helper.from_array(np.array(3, np.int64), "i"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    model = model_of(nodes, inits, opset=13, out_dims=1)
    assert [v.node for v in check_graph(model, rules_for("8.2.1"))] == ["anchors"]
    assert check_graph(model, rules_for("8.5.2")) == []


def test_resize_and_topk_attributes() -> None:
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array([4000], np.int64), "k")]
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="cubic",
                              name="up"),
             helper.make_node("Flatten", ["r"], ["f"], axis=1, name="flat"),
             helper.make_node("TopK", ["f", "k"], ["y", "idx"], name="topk")]
    got = [(v.node, v.rule) for v in check_graph(model_of(nodes, inits, opset=13),
                                                 rules_for("10.3.0"))]
    assert got == [("up", "resize-mode"), ("topk", "topk-k")]


# --- precision rules and the model-level API --------------------------------------------

@pytest.mark.parametrize(("qdq", "precision", "target", "tensorrt", "expect"), [
    (False, "int8", "orin-nano", None, ["int8-needs-qdq"]),
    (True, "fp16", "orin-nano", None, ["qdq-needs-int8"]),
    (True, "int8", "orin-nano", None, []),
    (False, "fp16", "t4", "11.1.0", ["strongly-typed"]),
    (False, "int8", "jetson-tx2", None, ["precision-capability", "int8-needs-qdq"]),
    (False, "fp32", "t4", "11.1.0", []),
], ids=["int8-float-model", "qdq-as-fp16", "qdq-int8", "trt11-fp16-float-model",
        "tx2-int8", "trt11-fp32"])
def test_precision_rules(tmp_path: Path, conv_onnx_factory: Any, qdq: bool, precision: str,
                         target: str, tensorrt: str | None, expect: list[str]) -> None:
    path = conv_onnx_factory(tmp_path / "m.onnx", qdq=qdq, opset=13)
    report = check_model(path, get_target(target), precision=precision, tensorrt=tensorrt)
    assert [v.rule for v in report.violations] == expect
    assert report.passed == (not expect)


def test_precision_defaults_to_what_the_model_is(tmp_path: Path, conv_onnx_factory: Any) -> None:
    qdq = check_model(conv_onnx_factory(tmp_path / "q.onnx", qdq=True), get_target("t4"))
    assert qdq.precision == "int8" and qdq.passed
    fp32 = check_model(conv_onnx_factory(tmp_path / "f.onnx"), get_target("t4"))
    assert fp32.precision == "fp32" and fp32.passed


def test_require_buildable_names_node_rule_and_command(tmp_path: Path) -> None:
    path = _save(_qdq_conv(bias="int32"), tmp_path / "int8.onnx")
    with pytest.raises(TargetCapabilityError) as err:
        require_buildable(path, get_target("xavier-nx"), "int8")
    msg = str(err.value)
    assert "conv.bias_DequantizeLinear (DequantizeLinear): [dq-input-type]" in msg
    assert "TensorRT 8.5.2" in msg and "detforge engine check" in msg
    assert err.value.exit_code == 2


# --- the CLI ---------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "code", "expect"), [
    (["--target", "orin-nano"], 0, "PASS"),
    (["--target", "jetson-nano"], 1, "[opset] opset 17"),
    (["--target", "jetson-nano", "--precision", "int8"], 1, "[precision-capability]"),
    (["--target", "orin-nanoo"], 2, "unknown target"),
    (["--target", "t4", "--precision", "int4"], 2, "unknown precision"),
    (["--target", "t4", "--tensorrt", "9.3.0"], 2, "not in detforge's compatibility table"),
], ids=["clean", "opset", "capability", "bad-target", "bad-precision", "bad-tensorrt"])
def test_cli_engine_check(tmp_path: Path, conv_onnx_factory: Any, args: list[str], code: int,
                          expect: str) -> None:
    path = conv_onnx_factory(tmp_path / "m.onnx")
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["engine", "check", str(path), *args, "--json", str(out)])
    assert result.exit_code == code, result.output
    assert expect in result.output
    if code == 1:
        report = json.loads(out.read_text())
        assert not report["passed"] and report["violations"][0]["source"]
        assert "Traceback" not in result.output and "source: onnx/onnx-tensorrt" in result.output


def test_cli_engine_check_unreadable_model(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    result = runner.invoke(app, ["engine", "check", str(tmp_path / "bad.onnx"), "--target", "t4"])
    assert result.exit_code == 2 and "not a readable ONNX model" in result.output


# --- trtexec command lines ----------------------------------------------------------------

@pytest.mark.parametrize(("version", "args", "ctx"), [
    ("8.2.1", ["--workspace=2048", "--fp16"], []),
    ("8.2.1", ["--memPoolSize=workspace:2048"], ["--memPoolSize"]),
    ("8.5.2", ["--memPoolSize=workspace:2048", "--int8", "--fp16"], []),
    ("8.5.2", ["--memPoolSize=workspace:2G"], ["2G"]),
    ("8.6.1", ["--workspace=2048", "--skipInference"], []),
    ("10.3.0", ["--workspace=2048"], ["--workspace"]),
    ("10.3.0", ["--memPoolSize=workspace:2G", "--stronglyTyped"], []),
    ("11.1.0", ["--fp16"], ["--fp16"]),
    ("11.1.0", ["--int8", "--calib=c.cache"], ["--int8", "--calib"]),
], ids=["8.2-workspace", "8.2-mempool", "8.5-int8", "8.5-units", "8.6-both", "10-workspace",
        "10-units", "11-fp16", "11-int8"])
def test_trtexec_args(version: str, args: list[str], ctx: list[str]) -> None:
    violations = check_trtexec_args(["--onnx=m.onnx", *args], rules_for(version))
    assert len(violations) == len(ctx)
    for v, word in zip(violations, ctx, strict=True):
        assert word in v.message and "sampleOptions.cpp" in v.source


def test_planted_mempoolsize_in_an_8_2_script(tmp_path: Path) -> None:
    script = tmp_path / "build_engine.sh"
    script.write_text('#!/usr/bin/env bash\n# trtexec --memPoolSize in a comment is fine\n'
                      '"$TRTEXEC" --onnx=model.onnx --saveEngine=m.engine \\\n'
                      '  --memPoolSize=workspace:2048 --fp16 2>&1 | tee "$LOG"\n')
    found = check_build_script(script, rules_for("8.2.1"))
    assert [v.rule for v in found] == ["trtexec-option"]
    assert "--workspace=MiB" in found[0].fix
    assert check_build_script(script, rules_for("8.5.2")) == []


def test_require_buildable_passes_a_clean_model(tmp_path: Path, conv_onnx_factory: Any) -> None:
    path = conv_onnx_factory(tmp_path / "m.onnx", opset=13)
    for name in TARGETS:
        with contextlib.nullcontext():
            assert require_buildable(path, get_target(name), "fp16").passed
