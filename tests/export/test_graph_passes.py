"""softmax_inner_axis: same outputs as the Softmax it replaces, in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from detforge.export.graph_passes import softmax_inner_axis


def _softmax_model(axis: int, opset: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=axis, name="dfl")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 16, 4, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 16, 4, 7])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("axis", [1, 2, -3])
def test_rewrite_gives_the_same_outputs(opset: int, axis: int) -> None:
    x = np.random.default_rng(0).normal(0, 20, (2, 16, 4, 7)).astype(np.float32)  # large logits
    model = _softmax_model(axis, opset)
    want = _run(model, x)
    assert softmax_inner_axis(model) == 1
    assert "Softmax" not in {n.op_type for n in model.graph.node}
    onnx.checker.check_model(model)
    got = _run(model, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-5)


@pytest.mark.parametrize(("axis", "opset"), [(-1, 17), (1, 11)], ids=["last-axis", "opset-11"])
def test_left_alone(axis: int, opset: int) -> None:
    model = _softmax_model(axis, opset)
    assert softmax_inner_axis(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Softmax"]


@pytest.mark.parametrize("opset", [13, 17], ids=["opset13", "opset17"])
def test_rtdetr_pixels_pass_equals_the_numpy_conversion(opset: int) -> None:
    """Ultralytics' normalised RT-DETR rows -> detforge's rtdetr rows, inside the graph."""
    from detforge.export.graph_passes import append_rtdetr_pixels
    from detforge.export.parity import rtdetr_pixels

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5, 6])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 5, 6])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["output0"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    append_rtdetr_pixels(model, (160, 288))
    onnx.checker.check_model(model)
    rows = np.random.default_rng(0).random((2, 5, 6), dtype=np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": rows})[0]
    assert session.get_outputs()[0].name == "output0"
    np.testing.assert_allclose(got, rtdetr_pixels(rows, (160, 288)), rtol=1e-6, atol=1e-4)
