"""Baseline comparison: matching rows, tolerance, unmatched rows, malformed files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from detforge.bench.baseline import compare_rows, compare_with_baseline
from detforge.bench.result import ROW_KEYS, BenchResult, BenchRow, read_rows
from detforge.core.errors import ConfigError

ROW = BenchRow(model="m.onnx", format="onnx", precision="fp32", batch=1, imgsz=(320, 320),
               model_only_ips=100.0, end_to_end_ips=90.0, p50_ms=10.0, p95_ms=11.0,
               p99_ms=12.0, peak_rss_mb=300.0, map50_95=None)


@pytest.mark.parametrize(("model_only", "e2e", "tolerance", "regressed"), [
    (100.0, 90.0, 0.05, []),
    (95.5, 85.6, 0.05, []),
    (94.0, 90.0, 0.05, ["model_only_ips"]),
    (100.0, 80.0, 0.05, ["end_to_end_ips"]),
    (50.0, 50.0, 0.05, ["model_only_ips", "end_to_end_ips"]),
    (50.0, 50.0, 0.6, []),
    (99.9, 90.0, 0.0, ["model_only_ips"]),
    (150.0, 150.0, 0.0, []),
], ids=["same", "within", "model-only-drop", "e2e-drop", "both", "loose", "strict", "faster"])
def test_compare_rows(model_only: float, e2e: float, tolerance: float,
                      regressed: list[str]) -> None:
    now = replace(ROW, model_only_ips=model_only, end_to_end_ips=e2e)
    out = compare_rows([now], [ROW], tolerance=tolerance)
    assert [r.metric for r in out.regressions] == regressed
    assert out.failed == bool(regressed) and out.compared == [ROW.key]
    text = out.format()
    assert ("REGRESSION" in text) == bool(regressed)
    for metric in regressed:
        assert f"m.onnx onnx fp32 batch 1 imgsz 320: {metric}" in text


def test_unmatched_rows_are_reported_not_failed() -> None:
    new = replace(ROW, batch=8, model_only_ips=1.0, end_to_end_ips=1.0)
    gone = replace(ROW, imgsz=(480, 640))
    out = compare_rows([ROW, new], [ROW, gone], tolerance=0.05)
    assert not out.failed
    assert out.not_in_baseline == [new.key] and out.not_measured == [gone.key]
    text = out.format()
    assert "not in the baseline (not checked): m.onnx onnx fp32 batch 8 imgsz 320" in text
    assert "in the baseline but not measured: m.onnx onnx fp32 batch 1 imgsz 480x640" in text


def test_key_includes_precision_and_format() -> None:
    int8 = replace(ROW, precision="int8", model_only_ips=1.0)
    out = compare_rows([int8], [ROW], tolerance=0.05)
    assert not out.failed and out.not_in_baseline == [int8.key]


def test_duplicate_baseline_rows_rejected() -> None:
    with pytest.raises(ConfigError, match="twice"):
        compare_rows([ROW], [ROW, ROW], tolerance=0.05)


@pytest.mark.parametrize("tolerance", [-0.1, 1.0], ids=["negative", "one"])
def test_bad_tolerance_rejected(tolerance: float) -> None:
    with pytest.raises(ConfigError, match="tolerance"):
        compare_rows([ROW], [ROW], tolerance=tolerance)


def test_json_round_trip(tmp_path: Path) -> None:
    rect = replace(ROW, imgsz=(480, 640), map50_95=0.4321, streams=2)
    path = tmp_path / "b.json"
    BenchResult(rows=[ROW, rect], skipped=["x"], settings={"repeats": 3}).write_json(path)
    data = json.loads(path.read_text())
    assert [list(r) for r in data["rows"]] == [[*ROW_KEYS, "streams", "gpu_peak_mb",
                                                "gpu_util"]] * 2
    assert data["rows"][0]["imgsz"] == 320 and data["rows"][1]["imgsz"] == [480, 640]
    assert data["rows"][0]["map50_95"] is None
    assert read_rows(path) == [ROW, rect]
    assert not compare_with_baseline([ROW, rect], path, tolerance=0.05).failed


def test_rows_written_before_streams_read_as_one_stream(tmp_path: Path) -> None:
    row = {k: v for k, v in replace(ROW, streams=2).to_dict().items() if k != "streams"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"rows": [row]}))
    assert read_rows(path) == [replace(ROW, streams=1)]


def test_nan_figures_written_as_null(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    BenchResult(rows=[replace(ROW, p99_ms=float("nan"))]).write_json(path)
    assert json.loads(path.read_text())["rows"][0]["p99_ms"] is None


@pytest.mark.parametrize(("content", "message"), [
    (None, "baseline file not found"),
    ("{not json", r"b.json:1: not valid JSON"),
    ("[1, 2]", "no \"rows\" list"),
    ('{"rows": {}}', "no \"rows\" list"),
    ('{"rows": [3]}', "row 0: expected an object"),
    ('{"rows": [{"model": "m"}]}', r"row 0: missing keys \['format'"),
    (json.dumps({"rows": [{**ROW.to_dict(), "batch": "eight"}]}), "row 0: bad value"),
    (json.dumps({"rows": [{**ROW.to_dict(), "model_only_ips": None}]}), "row 0: bad value"),
    (json.dumps({"rows": [{**ROW.to_dict(), "imgsz": "big"}]}), "row 0: bad value"),
], ids=["missing", "bad-json", "list", "rows-not-list", "row-not-object", "missing-keys",
        "bad-batch", "null-figure", "bad-imgsz"])
def test_read_rows_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_rows(path)
