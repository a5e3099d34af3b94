"""Export, parity and quantisation on an untrained YOLO11n (built from YAML, offline)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from PIL import Image
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.errors import ConfigError, ExportError
from detforge.export.parity import check_parity, load_inputs
from detforge.export.quantize import convert_fp16, float_head_nodes, quantize_int8
from detforge.runtime.metadata import read_onnx_meta

pytestmark = [pytest.mark.slow, pytest.mark.train]
IMGSZ = (128, 160)
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("ultralytics")
    import torch

    from detforge.train.offline import import_ultralytics

    folder = tmp_path_factory.mktemp("tiny")
    import_ultralytics(folder / "cfg")
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=3, verbose=False)
    model.names = {0: "circle", 1: "square", 2: "triangle"}
    path = folder / "tiny.pt"
    torch.save({"model": model, "train_args": {}, "epoch": -1}, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate([(120, 200), (300, 240), (96, 96)]):
        p = folder / f"im{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def exported(tiny_pt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from detforge.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    return {layout: export_onnx(tiny_pt, folder / f"{layout}.onnx", imgsz=IMGSZ,
                                layout=layout, max_batch=2).path
            for layout in ("raw", "deepstream", "end2end")}


@pytest.mark.parametrize("layout", ["raw", "deepstream"])
def test_parity_with_pytorch(layout: str, exported: dict[str, Path], tiny_pt: Path,
                             images: list[Path]) -> None:
    batch = load_inputs(images, IMGSZ)
    report = check_parity(tiny_pt, exported[layout], batch, layout=layout)
    assert report.passed and report.max_rel_diff < 1e-4, report


def test_layouts_and_metadata(exported: dict[str, Path], images: list[Path]) -> None:
    batch = load_inputs(images[:2], IMGSZ)
    shapes = {}
    for layout, path in exported.items():
        meta = read_onnx_meta(path)
        assert meta.layout == layout and meta.imgsz == IMGSZ
        assert meta.classes == ("circle", "square", "triangle") and meta.dynamic_batch
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (inp,) = sess.get_inputs()
        shapes[layout] = sess.run(None, {inp.name: batch})[0].shape
        if layout == "deepstream":
            assert inp.name == "input" and [o.name for o in sess.get_outputs()] == ["output"]
    n = 128 * 160 // 64 + 128 * 160 // 256 + 128 * 160 // 1024
    assert shapes["raw"] == (2, 7, n)
    assert shapes["deepstream"] == (2, n, 6)
    assert shapes["end2end"][0] == 2 and shapes["end2end"][2] == 6
    graph = onnx.load(str(exported["end2end"])).graph
    assert any(node.op_type == "NonMaxSuppression" for node in graph.node)
    for path in exported.values():  # the DFL softmax is rewritten (graph_passes)
        inner = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Softmax"
                 and any(a.name == "axis" and a.i != -1 for a in n.attribute)]
        assert inner == [], path


def test_bad_requests(tiny_pt: Path, tmp_path: Path) -> None:
    from detforge.export.onnx_export import export_onnx

    with pytest.raises(ConfigError, match="multiples of the stride 32"):
        export_onnx(tiny_pt, tmp_path / "x.onnx", imgsz=(100, 160))
    with pytest.raises(ConfigError, match="layout"):
        export_onnx(tiny_pt, tmp_path / "x.onnx", layout="tflite")
    with pytest.raises(ExportError, match="not found"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "x.onnx")


@pytest.mark.parametrize("flavour", ["tensorrt", "cpu"])
def test_int8_qdq_keeps_head_float(flavour: str, exported: dict[str, Path], images: list[Path],
                                   tmp_path: Path) -> None:
    raw = exported["raw"]
    batch = load_inputs(images, IMGSZ)
    out = tmp_path / "int8.onnx"
    result = quantize_int8(raw, out, [b[None] for b in batch], flavour=flavour)
    model = onnx.load(str(out))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] > 50 and ops["DequantizeLinear"] > 50
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node
           if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    if flavour == "tensorrt":
        assert all(z.dtype == np.int8 and not z.any() for z in zps)  # symmetric int8
    else:
        assert all(z.dtype == np.uint8 for z in zps)
    # the head's decode path is float: nothing feeds the output through a DequantizeLinear
    producer = {o: n for n in model.graph.node for o in n.output}
    assert producer[model.graph.output[0].name].op_type != "DequantizeLinear"
    # ... and so is the convolution reading the image (both flavours)
    readers = [n.op_type for n in model.graph.node if "images" in n.input]
    assert "Conv" in readers and "QuantizeLinear" not in readers
    assert len(result.float_nodes) > 10
    assert read_onnx_meta(out).precision == "int8"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    q = sess.run(None, {"images": batch})[0]
    f = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"]).run(
        None, {"images": batch})[0]
    assert q.shape == f.shape
    # scores (rows 4:) stay in range and are not all rounded to zero
    assert q[:, 4:].max() > 0 and np.abs(q[:, 4:] - f[:, 4:]).max() < 0.2


def test_float_head_nodes_found_from_graph(exported: dict[str, Path]) -> None:
    model = onnx.load(str(exported["raw"]))
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"n{i}"
    head = set(float_head_nodes(model))
    kinds = Counter(n.op_type for n in model.graph.node if n.name in head)
    assert kinds["Conv"] >= 6  # last box and class convs of the three scales (+ DFL)
    assert kinds["Sigmoid"] >= 1 and kinds["Concat"] >= 1


def test_fp16(exported: dict[str, Path], images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "fp16.onnx"
    convert_fp16(exported["raw"], out)
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert read_onnx_meta(out).precision == "fp16"


def test_cli_export_json(tiny_pt: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(tiny_pt), "--out", str(out), "--imgsz", "96,128",
                                 "--batch", "2", "--layout", "deepstream", "--opset", "17",
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["layout"] == "deepstream" and summary["batch"] == 2
    assert summary["opset"] == 17 and onnx.load(str(out)).opset_import[0].version == 17
    nano = runner.invoke(app, ["export", str(tiny_pt), "--out", str(out), "--opset", "17",
                               "--target", "jetson-nano"])
    assert nano.exit_code == 2 and "imports opset 13 at most" in nano.output
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 96, 128]
    bad = runner.invoke(app, ["export", str(tiny_pt), "--out", str(out), "--batch", "zero"])
    assert bad.exit_code == 2 and "dynamic" in bad.output
