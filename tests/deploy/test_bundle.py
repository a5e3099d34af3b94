"""``deploy bundle``: folder contents for every target, precision rules, INT8, lineage, CLI."""

from __future__ import annotations

import json
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.errors import ConfigError, TargetCapabilityError
from detforge.deploy.bundle import bundle_model
from detforge.deploy.reference import load_reference
from detforge.deploy.targets import TARGETS
from detforge.deploy.verify import verify_bundle
from detforge.export.engine_plan import sha256_file
from detforge.runtime.metadata import ModelMeta, embed_meta, read_onnx_meta
from detforge.testing import seeded_yolo11n

CLASSES = ("red", "green", "blue")
TOY_MODEL = "boxes fixed in network pixels: nvinfer's geometry moves them, a detector's would not"
"""Why tests of :func:`conv_model` bundles do not gate on the emulated DeepStream pipeline
(nvinfer truncates the scaled size and floors the padding where the workstation rounds;
a real detector's boxes follow the content, so the difference cancels; these do not)."""
FILES = ("config_infer_primary.txt", "deepstream_app_config.txt", "labels.txt",
         "build_engine.sh", "manifest.json", "reference/detections.json", "verify_on_device.py",
         "reference/device/expected.json", "reference/device/input_000.npy",
         "nvdsinfer_custom_impl_detforge/nvdsparsebbox_detforge.cpp",
         "nvdsinfer_custom_impl_detforge/Makefile")


def conv_model(path: Path, *, imgsz: tuple[int, int] = (64, 64), **meta: Any) -> Path:
    """A raw-layout detector with three convolutions, so INT8 has something to quantise.

    Three fixed boxes (cx, cy, w, h in input pixels); class scores are the sigmoid of a
    conv -> relu -> conv -> relu -> conv -> global-average-pool branch, scaled per box. The
    first conv (reads the input) and the last (head) stay float in the TensorRT flavour;
    the middle one is quantised.
    """
    h, w = imgsz
    k = len(CLASSES)
    rng = np.random.default_rng(0)
    boxes = np.array([[w * 0.3, w * 0.6, w * 0.5], [h * 0.3, h * 0.5, h * 0.7],
                      [w * 0.4, w * 0.3, w * 0.2], [h * 0.4, h * 0.5, h * 0.3]],
                     np.float32)[None]
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32), "wm"),
             numpy_helper.from_array(rng.normal(0, 0.5, (k, 8, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([-1, k, 1], np.int64), "shape"),
             numpy_helper.from_array(np.array([[[1.0, 0.8, 0.6]]], np.float32), "per_box"),
             numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero"),
             numpy_helper.from_array(boxes, "boxes")]
    nodes = [helper.make_node("Conv", ["images", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "wm"], ["cm"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["cm"], ["rm"]),
             helper.make_node("Conv", ["rm", "w2"], ["c2"]),
             helper.make_node("GlobalAveragePool", ["c2"], ["pooled"]),
             helper.make_node("Sigmoid", ["pooled"], ["sig"]),
             helper.make_node("Reshape", ["sig", "shape"], ["sig3"]),
             helper.make_node("Mul", ["sig3", "per_box"], ["scores"]),
             helper.make_node("ReduceMax", ["sig3"], ["one"], keepdims=1),
             helper.make_node("Mul", ["one", "zero"], ["zeros"]),
             helper.make_node("Add", ["zeros", "boxes"], ["bboxes"]),
             helper.make_node("Concat", ["bboxes", "scores"], ["output0"], axis=1)]
    graph = helper.make_graph(
        nodes, "conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, h, w])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + k, 3])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 9
    embed_meta(model, ModelMeta(classes=CLASSES, imgsz=imgsz, dynamic_batch=True, **meta))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundle")


@pytest.fixture(scope="module")
def source(root: Path) -> Path:
    """The model, with lineage in its metadata and a fidelity record beside it."""
    (root / "src").mkdir()
    path = conv_model(root / "src" / "model.onnx", dataset_version="ds-1a2b3c", run_id="run-7",
                      metrics={"map50_95": 0.41})
    hops = {"hops": [{"kind": "export", "source": "best.pt", "target": str(path),
                      "box_agreement": 0.99}]}
    (path.parent / "fidelity.json").write_text(json.dumps(hops))
    return path


@pytest.fixture(scope="module")
def dataset(root: Path) -> Path:
    from detforge.data.synth import synthesize

    synthesize(root / "ds", images=10, classes=3, seed=0, size=(96, 64), fmt="yolo",
               splits=(0.6, 0.4))
    return root / "ds"


@pytest.fixture(scope="module")
def every_target(root: Path, source: Path) -> Path:
    out = root / "all"
    bundle_model(source, targets=list(TARGETS), out=out, reference_images=2)
    return out


@pytest.mark.parametrize("target", list(TARGETS), ids=list(TARGETS))
def test_bundle_every_target(every_target: Path, source: Path, target: str) -> None:
    folder = every_target / target
    for name in FILES:
        assert (folder / name).is_file(), name
    manifest = json.loads((folder / "manifest.json").read_text())
    t = TARGETS[target]
    want = "fp16" if t.precision == "int8" else t.precision  # INT8 without --data: FP16
    assert (manifest["target"]["name"], manifest["target"]["sm"]) == (target, t.sm)
    assert (manifest["target"]["precision"], manifest["target"]["batch"]) == (want, t.batch)
    files = manifest["files"]
    assert set(files) == {p.relative_to(folder).as_posix() for p in folder.rglob("*")
                          if p.is_file() and p.name != "manifest.json"}
    assert all(sha256_file(folder / rel) == sha for rel, sha in files.items())
    assert all((folder / rel).stat().st_nlink == 1 for rel in files)  # copies, never links
    meta = read_onnx_meta(folder / manifest["model"]["file"])
    assert meta.layout == "deepstream" and meta.classes == CLASSES
    assert manifest["model"]["meta"]["classes"] == list(CLASSES)
    lineage = manifest["lineage"]
    assert (lineage["dataset_version"], lineage["run_id"]) == ("ds-1a2b3c", "run-7")
    assert lineage["metrics"] == {"map50_95": 0.41}
    assert lineage["onnx_sha256"] == files[manifest["model"]["file"]]
    assert lineage["source"]["sha256"] == sha256_file(source)
    assert lineage["engine"] == f"model_b{t.batch}_gpu0_{want}.engine"
    assert manifest["fidelity"][0]["box_agreement"] == 0.99
    script = folder / "build_engine.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    text = script.read_text()
    assert f"--saveEngine={lineage['engine']}" in text and "--onnx=model.onnx" in text
    assert ("--fp16" in text) == (want == "fp16")


@pytest.mark.parametrize("target", ["jetson-nano", "jetson-tx2"], ids=str)
def test_int8_refused_on_old_jetsons(root: Path, source: Path, dataset: Path,
                                     target: str) -> None:
    out = root / f"refused-{target}"
    with pytest.raises(TargetCapabilityError, match="Supported precisions: fp32, fp16"):
        bundle_model(source, targets=["t4", target], out=out, precision="int8", data=dataset)
    assert not out.exists()  # refused before any work
    result = CliRunner().invoke(app, ["deploy", "bundle", str(source), "--target", target,
                                      "--out", str(out), "--precision", "int8"])
    assert result.exit_code == 2
    assert result.output.startswith("TargetCapabilityError:") and "fp16" in result.output


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"targets": ["orin-nano"], "precision": "int8"}, ConfigError, "--data"),
    ({"targets": ["xavier-9000"]}, ConfigError, "unknown target"),
    ({"targets": []}, ConfigError, "no --target"),
    ({"targets": ["t4"], "precision": "bf16"}, ConfigError, "unknown precision"),
    ({"targets": ["t4"], "batch": 0}, ConfigError, "at least 1"),
    ({"targets": ["t4"], "imgsz": (64, 64)}, ConfigError, ".pt models only"),
], ids=["int8-without-data", "unknown-target", "no-target", "bad-precision", "bad-batch",
        "imgsz-on-onnx"])
def test_bundle_refuses(root: Path, source: Path, kwargs: dict[str, Any],
                        error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        bundle_model(source, out=root / "refused", **kwargs)


def test_auto_without_data_falls_back_to_fp16(root: Path, source: Path) -> None:
    result = bundle_model(source, targets=["orin-nano"], out=root / "auto",
                          reference_images=1)
    assert result.bundles[0].precision == "fp16"
    assert any("bundled FP16 instead" in n for n in result.notes)


def test_int8_bundle_with_data_verifies(root: Path, source: Path, dataset: Path) -> None:
    out = root / "int8"
    result = bundle_model(source, targets=["orin-nano", "jetson-nano"], out=out, data=dataset,
                          reference_images=2, calib_images=4)
    precisions = {b.target: b.precision for b in result.bundles}
    assert precisions == {"orin-nano": "int8", "jetson-nano": "fp16"}  # auto, per target
    folder = out / "orin-nano"
    qdq = [n.op_type for n in onnx.load(str(folder / "model_int8.onnx")).graph.node
           if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq, "the INT8 model has no Q/DQ nodes"
    assert read_onnx_meta(folder / "model_int8.onnx").precision == "int8"
    config = (folder / "config_infer_primary.txt").read_text()
    assert "network-mode=1\n" in config and "model_b1_gpu0_int8.engine" in config
    assert "--int8" in (folder / "build_engine.sh").read_text()
    refs = sorted(p.name for p in (folder / "reference").iterdir())
    assert refs == ["detections.json", "device", "ref_000.jpg", "ref_001.jpg"]  # val split
    assert (folder / "reference" / "ref_000.jpg").stat().st_nlink == 1  # the dataset is safe
    report = verify_bundle(folder, speed_seconds=0.05, min_device_agreement=0)  # TOY_MODEL
    assert report.passed, report.reasons
    assert verify_bundle(out / "jetson-nano", speed_seconds=0.05, min_device_agreement=0).passed
    # monitoring: the bundled model's own reference, and the Prometheus/Grafana files
    from detforge.monitor import load_reference, model_identity
    from detforge.runtime import load_model

    ref = load_reference(folder / "monitor" / "reference.json")
    with load_model(folder / "model_int8.onnx", device="cpu") as m:
        ref.check_model(model_identity(m, folder / "model_int8.onnx"), conf=0.25)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"monitor/reference.json", "monitor/prometheus.yml",
            "monitor/grafana/dashboards/detforge.json"} <= set(manifest["files"])


def test_int8_bundle_on_bccd(root: Path, source: Path, bccd_path: Path) -> None:
    """A real VOC dataset: calibration from its train split, reference images from val."""
    from detforge.data.formats import read_dataset

    out = root / "bccd"
    bundle_model(source, targets=["xavier-nx"], out=out, precision="int8", data=bccd_path,
                 reference_images=2, calib_images=4)
    folder = out / "xavier-nx"
    ds = read_dataset(bccd_path)
    val = {ds.image_path(i).read_bytes() for i in range(ds.num_images)
           if ds.images.split[i] == "val"}
    refs = sorted((folder / "reference").glob("ref_*.jpg"))
    assert len(refs) == 2 and all(p.read_bytes() in val for p in refs)
    assert verify_bundle(folder, speed_seconds=0.05, min_device_agreement=0).passed  # TOY_MODEL


def test_rebundle_replaces_only_bundles(root: Path, source: Path) -> None:
    out = root / "again"
    bundle_model(source, targets=["t4"], out=out, reference_images=1)
    (out / "t4" / "stale.txt").write_text("left from an earlier run")
    bundle_model(source, targets=["t4"], out=out, reference_images=1)
    assert not (out / "t4" / "stale.txt").exists()
    (out / "a2").mkdir()
    (out / "a2" / "mine.txt").write_text("user data")
    with pytest.raises(ConfigError, match="not a detforge bundle"):
        bundle_model(source, targets=["a2"], out=out, reference_images=1)
    assert (out / "a2" / "mine.txt").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial folders


def test_cli_bundle(root: Path, source: Path) -> None:
    out = root / "cli"
    result = CliRunner().invoke(app, ["deploy", "bundle", str(source), "--target", "orin-nano",
                                      "--target", "t4", "--out", str(out), "--batch", "2",
                                      "--precision", "fp16", "--reference-images", "1"])
    assert result.exit_code == 0, result.output
    assert "orin-nano" in result.output and "model_b2_gpu0_fp16.engine" in result.output
    for target in ("orin-nano", "t4"):
        assert json.loads((out / target / "manifest.json").read_text())["target"]["batch"] == 2


@pytest.mark.slow
def test_bundle_from_yolo_weights(tmp_path: Path) -> None:
    """The .pt path: Ultralytics export inside the bundle, then verify on this CPU."""
    pytest.importorskip("torch")
    yolo = seeded_yolo11n(64, 96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yolo.save(str(tmp_path / "yolo11n.pt"))
    result = bundle_model(tmp_path / "yolo11n.pt", targets=["orin-nano", "t4"],
                          out=tmp_path / "out", imgsz=(64, 96), reference_images=2)
    assert [b.target for b in result.bundles] == ["orin-nano", "t4"]
    folder = tmp_path / "out" / "t4"
    meta = read_onnx_meta(folder / "model.onnx")
    assert meta.layout == "deepstream" and meta.imgsz == (64, 96) and len(meta.classes) == 80
    assert "num-detected-classes=80" in (folder / "config_infer_primary.txt").read_text()
    _, reference, _ = load_reference(folder / "reference")
    assert sum(len(d) for d in reference) > 0  # the comparison has boxes to compare
    report = verify_bundle(folder, speed_seconds=0.1, min_device_agreement=0)  # untrained
    assert report.passed, report.reasons
    assert len(report.stages) == 4  # measured, not gated: test_emulation gates a trained one
