"""Reference files (build, round trip, refusals) and `detforge monitor report` (exit 0 / 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.errors import ConfigError
from detforge.monitor import Reference, load_reference
from detforge.monitor.reference import ModelIdentity
from detforge.runtime.predict import predict
from detforge.testing import tiny_onnx_model

from .conftest import darken

runner = CliRunner()


def test_reference_describes_the_model_and_round_trips(
        reference: tuple[Reference, Path], tiny_model: Path) -> None:
    ref, path = reference
    assert ref.model.file == "tiny.onnx" and ref.model.classes == ("cat", "dog")
    assert ref.data["images"] == 40 and ref.signals["score"].count == 120
    assert load_reference(path) == ref


def test_cli_reference_writes_the_file(tiny_model: Path, known_data: Path,
                                       tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["monitor", "reference", str(tiny_model), "--data",
                              str(known_data), "--out", str(out), "--split", "val"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and load_reference(out).data["split"] == "val"


@pytest.mark.parametrize("text,expect", [
    ("{not json", "not JSON"),
    ('{"format": "something-else/1"}', "Input should be 'detforge-reference/1'"),
    ('{"format": "detforge-reference/1", "created": "x"}', "invalid reference: missing"),
    ("", "not JSON"),
], ids=["syntax", "format", "fields", "empty"])
def test_malformed_reference_is_one_line_error(tmp_path: Path, text: str, expect: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=expect):
        load_reference(bad)
    res = runner.invoke(app, ["monitor", "report", "--reference", str(bad), "--jsonl",
                              str(bad)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ConfigError:") and expect in lines[0]


def test_counts_that_do_not_add_up_are_refused(reference: tuple[Reference, Path],
                                               tmp_path: Path) -> None:
    data = json.loads(reference[1].read_text())
    data["signals"]["score"]["counts"][0] += 1
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="signals.score.*add up to 121"):
        load_reference(bad)


def _identity(ref: Reference, **change: object) -> ModelIdentity:
    return ref.model.model_copy(update=change)


def test_reference_of_another_model_is_refused_with_the_reason(
        reference: tuple[Reference, Path]) -> None:
    ref = reference[0]
    ref.check_model(_identity(ref))  # the same model
    with pytest.raises(ConfigError, match=r"built for classes \['cat', 'dog'\].*\['cat', 'cow'\]"):
        ref.check_model(_identity(ref, classes=("cat", "cow")))
    with pytest.raises(ConfigError, match="no training run ties the two"):
        ref.check_model(_identity(ref, sha256="0" * 64, file="other.onnx"))
    with pytest.raises(ConfigError, match="serve with --conf 0.25"):
        ref.check_model(_identity(ref), conf=0.5)
    tied = ref.model_copy(update={"model": _identity(ref, run_id="run-1")})
    tied.check_model(_identity(ref, sha256="0" * 64, run_id="run-1"))  # same run, other format


def _predict(model: Path, source: Path, out: Path) -> Path:
    predict(model, source, out=out, progress=False, device="cpu")
    return out


def test_report_exits_0_within_thresholds_and_1_past_them(
        reference: tuple[Reference, Path], tiny_model: Path, known_data: Path,
        tmp_path: Path) -> None:
    same = _predict(tiny_model, known_data, tmp_path / "same.jsonl")
    res = runner.invoke(app, ["monitor", "report", "--reference", str(reference[1]),
                              "--jsonl", str(same)])
    assert res.exit_code == 0, res.output
    assert "within thresholds" in res.output and "not measured (no pixels)" in res.output
    dark = darken(known_data, tmp_path / "dark")
    shifted = _predict(tiny_model, dark, tmp_path / "dark.jsonl")
    res = runner.invoke(app, ["monitor", "report", "--reference", str(reference[1]),
                              "--jsonl", str(shifted), "--json"])
    assert res.exit_code == 1, res.output
    body = json.loads(res.output)
    assert "score" in body["drifted"] and body["signals"]["score"]["psi"] > 0.2
    assert body["signals"]["score"]["live_mean"] < body["signals"]["score"]["reference_mean"]


def test_report_refuses_records_of_another_class_list(
        reference: tuple[Reference, Path], known_data: Path, tmp_path: Path) -> None:
    other = tiny_onnx_model(tmp_path / "other.onnx", classes=("car", "bus"))
    dets = _predict(other, known_data, tmp_path / "other.jsonl")
    res = runner.invoke(app, ["monitor", "report", "--reference", str(reference[1]),
                              "--jsonl", str(dets)])
    assert res.exit_code == 2
    assert "other.jsonl:1:" in res.output and "another model" in res.output


def test_report_names_the_bad_line(reference: tuple[Reference, Path], tiny_model: Path,
                                   known_data: Path, tmp_path: Path) -> None:
    dets = _predict(tiny_model, known_data, tmp_path / "d.jsonl")
    lines = dets.read_text().splitlines()
    lines[4] = '{"source": "x"}'
    dets.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["monitor", "report", "--reference", str(reference[1]),
                              "--jsonl", str(dets)])
    assert res.exit_code == 2 and "d.jsonl:5:" in res.output


def test_report_refuses_too_few_records(reference: tuple[Reference, Path], tiny_model: Path,
                                        known_data: Path, tmp_path: Path) -> None:
    dets = _predict(tiny_model, known_data, tmp_path / "d.jsonl")
    res = runner.invoke(app, ["monitor", "report", "--reference", str(reference[1]),
                              "--jsonl", str(dets), "--min-images", "100"])
    assert res.exit_code == 2 and "at least 100" in res.output


def test_predict_with_a_reference_measures_image_signals_too(
        reference: tuple[Reference, Path], tiny_model: Path, known_data: Path,
        tmp_path: Path) -> None:
    args = ["predict", str(tiny_model), "--out", str(tmp_path / "d.jsonl"), "--device", "cpu",
            "--no-progress", "--reference", str(reference[1]), "--fail-on-drift"]
    same = runner.invoke(app, [*args[:2], str(known_data), *args[2:]])
    assert same.exit_code == 0, same.output
    assert "within thresholds" in same.output
    dark = darken(known_data, tmp_path / "dark")
    res = runner.invoke(app, [*args[:2], str(dark), *args[2:]])
    assert res.exit_code == 5, res.output
    assert (tmp_path / "d.jsonl").is_file()  # the records are written all the same
    row = next(line for line in res.output.splitlines() if line.startswith("brightness"))
    assert row.endswith("DRIFT")
    other = tiny_onnx_model(tmp_path / "other.onnx", classes=("car", "bus"))
    res = runner.invoke(app, ["predict", str(other), str(known_data), "--out",
                              str(tmp_path / "o.jsonl"), "--reference", str(reference[1])])
    assert res.exit_code == 2 and "built for classes" in res.output
