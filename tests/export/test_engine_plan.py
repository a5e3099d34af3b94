from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.errors import ConfigError, ExportError, TargetCapabilityError
from detforge.deploy.targets import TARGETS, get_target
from detforge.export.engine import build_or_script
from detforge.export.engine_plan import (
    engine_file_name,
    onnx_input,
    parse_batch_range,
    parse_size,
    plan_engine,
    trtexec_command,
)

runner = CliRunner()


@pytest.mark.parametrize(("text", "expect"), [("1", (1, 1, 1)), ("4", (4, 4, 4)),
                                              ("1-8", (1, 8, 8)), ("2-16", (2, 16, 16))])
def test_batch_range_opt_is_max(text: str, expect: tuple[int, int, int]) -> None:
    # DeepStream always sends full batches: TensorRT must tune for the largest
    assert parse_batch_range(text) == expect


@pytest.mark.parametrize("bad", ["0", "8-1", "a-b", ""])
def test_bad_batch_range(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_batch_range(bad)


def test_parse_size() -> None:
    assert parse_size("2GiB") == 2048 and parse_size("512MiB") == 512 and parse_size("64") == 64


def test_onnx_input(tmp_path: Path, conv_onnx_factory) -> None:
    make_conv_onnx = conv_onnx_factory
    dyn = make_conv_onnx(tmp_path / "d.onnx")
    assert onnx_input(dyn) == ("images", (None, 3, 32, 48), False)
    fixed = make_conv_onnx(tmp_path / "f.onnx", batch=2, qdq=True)
    assert onnx_input(fixed) == ("images", (2, 3, 32, 48), True)
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ExportError, match="bad.onnx"):
        onnx_input(tmp_path / "bad.onnx")


@pytest.mark.parametrize("name", sorted(TARGETS), ids=sorted(TARGETS))
def test_trtexec_command_per_target(name: str, tmp_path: Path, conv_onnx_factory) -> None:
    target = get_target(name)
    precision = target.precision
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx", qdq=precision == "int8",
                                  opset=13 if target.tensorrt.startswith("8.2") else 17)
    plan = plan_engine(onnx_path, target, precision, batch=(1, 4, 4))
    cmd = trtexec_command(plan)
    assert cmd[:3] == ["trtexec", "--onnx=model.onnx",
                       f"--saveEngine={engine_file_name(4, precision)}"]
    assert "--minShapes=images:1x3x32x48" in cmd and "--maxShapes=images:4x3x32x48" in cmd
    assert "--optShapes=images:4x3x32x48" in cmd
    workspace = "--workspace=2048" if target.tensorrt.startswith("8.2") else \
        "--memPoolSize=workspace:2048"
    assert workspace in cmd
    if precision == "fp16":
        assert "--fp16" in cmd and "--int8" not in cmd
    elif precision == "int8":
        assert "--int8" in cmd and "--fp16" in cmd


def test_trtexec_command_tensorrt_11_is_strongly_typed(tmp_path: Path, conv_onnx_factory) -> None:
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx", qdq=True)
    plan = plan_engine(onnx_path, get_target("t4"), "int8", tensorrt="11.1.0")
    cmd = trtexec_command(plan)
    assert not {"--fp16", "--int8", "--best", "--stronglyTyped"} & set(cmd)


def test_int8_refused_on_nano(conv_onnx: Path) -> None:
    with pytest.raises(TargetCapabilityError, match="fp32, fp16"):
        plan_engine(conv_onnx, get_target("jetson-nano"), "int8")


def test_fixed_batch_model_refuses_range(tmp_path: Path, conv_onnx_factory) -> None:
    onnx_path = conv_onnx_factory(tmp_path / "m.onnx", batch=1)
    with pytest.raises(ExportError, match="--batch dynamic"):
        plan_engine(onnx_path, get_target("t4"), "fp16", batch=(1, 4, 8))
    plan = plan_engine(onnx_path, get_target("t4"), "fp16")
    assert not plan.dynamic and not any("Shapes" in c for c in trtexec_command(plan))


def test_build_or_script_writes_script(tmp_path: Path, conv_onnx_factory) -> None:
    qdq = conv_onnx_factory(tmp_path / "model.onnx", qdq=True)
    result = build_or_script(qdq, get_target("orin-nano"), "int8", batch="1-4")
    assert result.manifest is None and result.reason
    text = result.script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "--int8" in text
    assert "TensorRT 10.3.0" in text and result.script.stat().st_mode & 0o111


def test_int8_needs_a_qdq_model(conv_onnx: Path) -> None:
    # trtexec --int8 on a float model builds with placeholder scales: refused, with the fix
    with pytest.raises(TargetCapabilityError, match=r"int8-needs-qdq.*detforge quantize"):
        build_or_script(conv_onnx, get_target("orin-nano"), "int8", batch="1-4")


@pytest.mark.parametrize(("target", "dla", "precision", "ctx"), [
    ("orin-nx", 1, "fp16", contextlib.nullcontext()),
    ("orin-nx-8gb", 0, "int8", contextlib.nullcontext()),
    ("orin-nx-8gb", 1, "fp16", pytest.raises(TargetCapabilityError, match="DLA cores 0-0")),
    ("orin-nano", 0, "fp16", pytest.raises(TargetCapabilityError, match="has no DLA")),
    ("xavier-nx", 0, "fp32", pytest.raises(TargetCapabilityError, match="FP16 or INT8")),
], ids=["orin-nx-core1", "orin-nx-8gb-int8", "orin-nx-8gb-one-core", "orin-nano-none",
        "fp32-refused"])
def test_dla_choice(tmp_path: Path, conv_onnx_factory, target: str, dla: int, precision: str,
                    ctx: Any) -> None:
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx", qdq=precision == "int8")
    with ctx:
        plan = plan_engine(onnx_path, get_target(target), precision, batch=(1, 2, 2),
                           dla_core=dla)
        cmd = trtexec_command(plan)
        assert f"--useDLACore={dla}" in cmd and "--allowGPUFallback" in cmd
        assert plan.engine.name == f"model_b2_dla{dla}_{precision}.engine"


def test_cli_engine_build_exit_codes(conv_onnx: Path) -> None:
    bad = runner.invoke(app, ["engine", "build", str(conv_onnx), "--target", "jetson-tx2",
                              "--precision", "int8"])
    assert bad.exit_code == 2
    assert "TargetCapabilityError" in bad.output and "fp32, fp16" in bad.output
    ok = runner.invoke(app, ["engine", "build", str(conv_onnx), "--target", "t4",
                             "--precision", "fp16", "--batch", "1-8"])
    assert ok.exit_code == 0, ok.output
    assert "trtexec --onnx=model.onnx" in ok.output and "--fp16" in ok.output


SIDECAR = {"engine": "m.engine", "gpu_name": "Orin", "precision": "int8",
           "compute_capability": "8.7", "tensorrt_version": "10.3.0",
           "batch": {"min": 1, "opt": 4, "max": 4}}


@pytest.mark.parametrize(("content", "code", "expect"), [
    (None, 1, "no manifest m.engine.json"),
    ("{broken", 1, "unreadable manifest, not JSON"),
    ("[1, 2]", 1, "must be a JSON object, found a JSON list"),
    ("{}", 1, "missing fields 'engine', 'precision', 'compute_capability'"),
    (json.dumps({**SIDECAR, "batch": {"min": 4, "opt": 1, "max": 4}}), 1,
     "min <= opt <= max"),
    (json.dumps({**SIDECAR, "compute_capability": "sm87"}), 1,
     "field 'compute_capability'"),
    (json.dumps(SIDECAR), 0, "Orin"),
], ids=["missing", "not-json", "list", "empty", "batch-order", "bad-cc", "valid"])
def test_cli_engine_inspect(tmp_path: Path, content: str | None, code: int, expect: str) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    if content is not None:
        (tmp_path / "m.engine.json").write_text(content)
    shown = runner.invoke(app, ["engine", "inspect", str(engine)])
    assert shown.exit_code == code, shown.output
    assert expect in shown.output
    if code:  # one line, no traceback, and it says how to get a good manifest
        assert "Traceback" not in shown.output and "engine build" in shown.output
        assert len(shown.output.strip().splitlines()) == 1


def test_cli_targets_json() -> None:
    out = runner.invoke(app, ["targets", "--json"])
    rows = json.loads(out.output)
    nano = next(r for r in rows if r["name"] == "jetson-nano")
    assert nano["precisions"] == ["fp32", "fp16"] and nano["sm"] == "sm_53"
    assert (nano["tensorrt"], nano["tensorrt_rules"], nano["export_opset"]) == ("8.2.1", "8.2", 13)
    rtx50 = next(r for r in rows if r["name"] == "rtx-50")
    assert (rtx50["tensorrt"], rtx50["deepstream"], rtx50["export_opset"]) == ("10.9.0", "8.0", 17)
    table = runner.invoke(app, ["targets"])
    assert "orin-nano" in table.output and "sm_87" in table.output
    assert "rules" in table.output.splitlines()[0]


def test_lineage_reads_the_run_json_of_a_training_run(tmp_path: Path) -> None:
    from detforge.export.onnx_export import lineage_for

    run = tmp_path / "runs" / "ppe" / "v3"
    (run / "weights").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({
        "name": "ppe", "version": "v3", "dataset": {"version": "abc123", "classes": ["a"]},
        "mlflow": {"run_id": "f00d"}, "final_metrics": {"mAP50": 0.7}}))
    got = lineage_for(run / "weights" / "best.pt")
    assert got == {"dataset_version": "abc123", "run_id": "f00d", "metrics": {"mAP50": 0.7},
                   "classes": ("a",)}
    (run / "run.json").write_text(json.dumps({"name": "ppe", "version": "v3"}))
    assert lineage_for(run / "weights" / "best.pt")["run_id"] == "ppe/v3"
    assert lineage_for(tmp_path / "elsewhere.pt") == {"dataset_version": None, "run_id": None,
                                                      "metrics": None, "classes": None}
    (run / "run.json").write_text("{not json")
    assert lineage_for(run / "weights" / "best.pt")["run_id"] is None
