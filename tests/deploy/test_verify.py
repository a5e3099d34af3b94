"""``deploy verify``: passes on an untouched bundle, fails with a clear reason otherwise."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.detections import Detections
from detforge.core.errors import ConfigError
from detforge.deploy.bundle import bundle_model
from detforge.deploy.reference import compare_detections
from detforge.deploy.verify import verify_bundle
from detforge.export.engine_plan import sha256_file
from detforge.testing import tiny_onnx_model

TARGET = "orin-nx"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untouched bundle for one target, plus a second model to swap in."""
    root = tmp_path_factory.mktemp("verify")
    model = tiny_onnx_model(root / "tiny.onnx", classes=("a", "b", "c"), imgsz=(64, 96))
    bundle_model(model, targets=[TARGET], out=root / "out", reference_images=3)
    other = tiny_onnx_model(root / "other.onnx", classes=("a", "b"), imgsz=(64, 96))
    bundle_model(other, targets=[TARGET], out=root / "other", reference_images=1)
    return root


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the pristine bundle, free to tamper with."""
    return Path(shutil.copytree(pristine / "out" / TARGET, tmp_path / TARGET))


def _set_sha(folder: Path, rel: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][rel] = sha256_file(folder / rel)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _alter(folder: Path, _: Path) -> None:
    path = folder / "config_infer_primary.txt"
    path.write_text(path.read_text().replace("pre-cluster-threshold=0.25",
                                             "pre-cluster-threshold=0.5"))


def _delete(folder: Path, _: Path) -> None:
    (folder / "labels.txt").unlink()


def _extra(folder: Path, _: Path) -> None:
    (folder / "reference" / "stray.png").write_bytes(b"not in the manifest")


def _wrong_checksum(folder: Path, _: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["build_engine.sh"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _swap_model(folder: Path, root: Path) -> None:
    shutil.copyfile(root / "other" / TARGET / "model.onnx", folder / "model.onnx")


def _swap_model_and_manifest(folder: Path, root: Path) -> None:
    _swap_model(folder, root)
    _set_sha(folder, "model.onnx")  # checksums pass: only the parity check can tell


def _broken_reference(folder: Path, _: Path) -> None:
    (folder / "reference" / "detections.json").write_text("{")


@pytest.mark.parametrize(("tamper", "reason"), [
    (_alter, "files changed: config_infer_primary.txt"),
    (_delete, "files missing: labels.txt"),
    (_extra, "files extra: reference/stray.png"),
    (_wrong_checksum, "files changed: build_engine.sh"),
    (_swap_model, "files changed: model.onnx"),
    (_swap_model_and_manifest, "box agreement: 0.000"),
    (_broken_reference, "reference"),
], ids=["altered", "deleted", "extra", "wrong-checksum", "model-swapped",
        "model-swapped-manifest-updated", "broken-reference"])
def test_verify_fails_with_reason(bundle: Path, pristine: Path,
                                  tamper: Callable[[Path, Path], None], reason: str) -> None:
    tamper(bundle, pristine)
    result = CliRunner().invoke(app, ["deploy", "verify", str(bundle), "--speed-seconds", "0.05"])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("FAIL: ") and reason in last


def test_verify_passes_untouched(bundle: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "verify", str(bundle), "--speed-seconds", "0.05"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "PASS"
    assert any("[ok] checksums" in line for line in lines)
    assert any("[ok] box agreement: 1.000" in line for line in lines)
    assert any("speed is not gated" in line for line in lines)  # this CPU is no Orin NX


def test_verify_report_json(bundle: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "verify", str(bundle), "--json",
                                      "--speed-seconds", "0.05"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] and report["target"] == TARGET and report["model"] == "model.onnx"
    assert report["backend"] == "onnxruntime/cpu" and report["ips"] > 0
    assert report["expected_ips"] == [150.0, 700.0] and not report["on_target"]


def _engine_with_sidecar(bundle: Path, onnx_sha: str | None = None) -> Path:
    """What build_engine.sh leaves: the plan and its sidecar naming the model it came from."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    engine = bundle / manifest["engine"]["file"]
    engine.write_bytes(b"a plan built on the device")
    sidecar = {"engine": engine.name, "compute_capability": "8.7", "tensorrt_version": "10.3.0",
               "source_onnx_sha256": onnx_sha or manifest["model"]["sha256"]}
    (bundle / f"{engine.name}.json").write_text(json.dumps(sidecar))
    return engine


def test_engine_from_build_script_is_trusted_but_needs_tensorrt(bundle: Path) -> None:
    engine = _engine_with_sidecar(bundle)
    before = engine.read_bytes()
    report = verify_bundle(bundle, speed_seconds=0.05)
    assert report.passed, report.reasons
    assert any("not usable here" in n for n in report.notes)
    assert engine.read_bytes() == before  # never rebuilt over
    forced = verify_bundle(bundle, backend="tensorrt", speed_seconds=0.05)
    assert not forced.passed and forced.reasons[-1].startswith("model: engine")


def _bare_engine(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / manifest["engine"]["file"]).write_bytes(b"plan")


@pytest.mark.parametrize(("plant", "reason"), [
    (_bare_engine, "has no readable sidecar"),
    (lambda b: _engine_with_sidecar(b, "0" * 64), "built from another model"),
], ids=["engine-without-sidecar", "engine-from-another-model"])
def test_untraceable_engine_fails(bundle: Path, plant: Callable[[Path], object],
                                  reason: str) -> None:
    plant(bundle)
    report = verify_bundle(bundle, speed_seconds=0.05)
    assert not report.passed and reason in report.reasons[0]


@pytest.mark.parametrize(("backend", "ctx"), [
    ("openvino", pytest.raises(ConfigError, match="unknown backend")),
    ("onnxruntime", contextlib.nullcontext()),
], ids=["bad-backend", "onnxruntime"])
def test_verify_backend_argument(bundle: Path, backend: str,
                                 ctx: contextlib.AbstractContextManager[object]) -> None:
    with ctx:
        report = verify_bundle(bundle, backend=backend, speed_seconds=0.05)
        assert report.passed and not report.notes[:-1]  # no engine note: ONNX asked for


def test_verify_not_a_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "verify", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "ConfigError:" in result.output
    result = CliRunner().invoke(app, ["deploy", "verify", str(tmp_path)])
    assert result.exit_code == 1 and "manifest.json is missing" in result.output


def _dets(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Detections:
    return Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4),
                      scores=np.array(scores, np.float32),
                      class_ids=np.array(classes, np.int32))


@pytest.mark.parametrize(("new", "borderline", "agreement", "missing", "extra"), [
    (_dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.5], [0, 1]), 0.0, 1.0, 0, 0),
    (_dets([[0, 0, 10, 10]], [0.9], [0]), 0.0, 0.5, 1, 0),
    (_dets([[0, 0, 10, 10]], [0.9], [0]), 0.6, 1.0, 0, 0),  # the lost box was borderline
    (_dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.5], [0, 0]), 0.0, 1 / 3, 1, 1),
    (_dets([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [0.9, 0.5, 0.8], [0, 1, 1]),
     0.0, 2 / 3, 0, 1),
    (_dets([[0, 0, 10, 10], [22, 22, 40, 40]], [0.9, 0.5], [0, 1]), 0.0, 1 / 3, 1, 1),
], ids=["same", "missing", "missing-borderline", "class-changed", "extra", "moved"])
def test_compare_detections(new: Detections, borderline: float, agreement: float,
                            missing: int, extra: int) -> None:
    ref = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.5], [0, 1])
    cmp = compare_detections([ref], [new], iou=0.9, borderline=borderline)
    assert cmp.agreement == pytest.approx(agreement)
    assert (cmp.missing, cmp.extra) == (missing, extra)


def test_compare_zero_area_boxes() -> None:
    edge = _dets([[640, 210, 640, 480]], [0.9], [2])  # clipped to nothing at the image edge
    assert compare_detections([edge], [edge]).agreement == 1.0


def test_on_target_without_tensorrt(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the target's GPU (simulated: this box has none), a missing engine is built when
    TensorRT is there; without it, verify says why, runs the ONNX and does not gate speed
    on it."""
    import importlib.util

    from detforge.deploy import verify

    monkeypatch.setattr(verify, "device_compute_capability", lambda: "8.7")  # Orin NX
    report = verify.verify_bundle(bundle, speed_seconds=0.05)
    assert report.on_target and report.passed, report.reasons
    if importlib.util.find_spec("tensorrt") is None:
        assert any("TensorRT is not installed here" in n for n in report.notes)
    assert any("the band is for the TensorRT engine" in n for n in report.notes)
    assert not any(c.name == "speed" for c in report.checks)
