"""``detforge benchmark`` through the root app: table, JSON keys, baseline exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.bench.result import ROW_KEYS
from detforge.cli import app
from detforge.runtime.hardware import cpu_cores

runner = CliRunner()
FAST = ["--repeats", "1", "--seconds", "0.02", "--no-progress"]


@pytest.fixture(scope="module")
def first_run(bench_models: dict[str, Path], bench_images: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench-cli") / "first.json"
    result = runner.invoke(app, ["benchmark", str(bench_models["dynamic"]),
                                 str(bench_models["fixed"]), "--source", str(bench_images),
                                 "--batch", "1,2", "--imgsz", "64", "--json", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_table_and_json(first_run: tuple[Path, str]) -> None:
    out, output = first_run
    rows = json.loads(out.read_text())["rows"]
    assert [tuple(r) for r in rows] == [(*ROW_KEYS, "streams", "gpu_peak_mb", "gpu_util")] * 3
    assert [(r["model"], r["batch"], r["imgsz"]) for r in rows] == [
        ("dynamic.onnx", 1, 64), ("dynamic.onnx", 2, 64), ("fixed.onnx", 1, 64)]
    # --streams auto on a CPU: two streams wherever there are two cores
    assert {r["streams"] for r in rows} == {2 if cpu_cores() >= 2 else 1}
    assert all(r["format"] == "onnx" and r["precision"] == "fp32" for r in rows)
    assert all(r["map50_95"] is None and r["end_to_end_ips"] > 0 for r in rows)
    lines = output.splitlines()
    assert lines[0].split()[:3] == ["model", "format", "prec"] and "p99 ms" in lines[0]
    assert "skipped fixed.onnx batch 2: the model's batch is fixed at 1" in output
    assert f"wrote {out}" in output


def _baseline(tmp_path: Path, first: Path, factor: float) -> Path:
    data = json.loads(first.read_text())
    for row in data["rows"]:
        row["model_only_ips"] *= factor
        row["end_to_end_ips"] *= factor
    data["rows"].append({**data["rows"][0], "batch": 64})
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("factor", "tolerance", "code", "verdict"), [
    (0.01, "5%", 0, "baseline check passed: 3 row(s) within 5.0%"),
    (100.0, "0.05", 1, "REGRESSION: 6 figure(s) fell more than 5.0% below the baseline"),
    (1.0, "99.9%", 0, "baseline check passed"),
], ids=["faster-passes", "slower-fails", "loose-tolerance"])
def test_baseline_exit_code(factor: float, tolerance: str, code: int, verdict: str,
                            first_run: tuple[Path, str], bench_models: dict[str, Path],
                            bench_images: Path, tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, first_run[0], factor)
    out = tmp_path / "now.json"
    result = runner.invoke(app, ["benchmark", str(bench_models["dynamic"]),
                                 str(bench_models["fixed"]), "--source", str(bench_images),
                                 "--batch", "1,2", "--json", str(out), "--baseline",
                                 str(baseline), "--tolerance", tolerance, *FAST])
    assert result.exit_code == code, result.output
    assert verdict in result.output and out.is_file()  # written even on a regression
    assert "in the baseline but not measured: dynamic.onnx onnx fp32 batch 64" in result.output
    if code:
        assert "regressed: dynamic.onnx onnx fp32 batch 1 imgsz 64: model_only_ips" in \
            result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--tolerance", "5"], "ConfigError: --tolerance '5' is ambiguous"),
    (["--batch", "1,x"], "ConfigError: --batch '1,x'"),
    (["--imgsz", "big"], "ConfigError: --imgsz 'big'"),
    (["--baseline", "missing.json"], "ConfigError: missing.json: baseline file not found"),
    (["--source", "nowhere/*.jpg"], "ConfigError: source nowhere/*.jpg: matched no image"),
], ids=["tolerance", "batch", "imgsz", "baseline", "source"])
def test_bad_options(args: list[str], message: str, bench_models: dict[str, Path],
                     bench_images: Path, tmp_path: Path) -> None:
    base = ["benchmark", str(bench_models["dynamic"]), "--source", str(bench_images),
            "--json", str(tmp_path / "o.json"), *FAST]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.json").exists()
