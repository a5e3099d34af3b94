from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def make_conv_onnx(path: Path, *, batch: int | None = None, hw: tuple[int, int] = (32, 48),
                   qdq: bool = False, opset: int = 17) -> Path:
    """A one-conv image model: input 'images' [B,3,H,W] -> output [B,4,H,W]."""
    b: int | str = "batch" if batch is None else batch
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [b, 3, *hw])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [b, 4, *hw])
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes = []
    src = "images"
    if qdq:
        s = numpy_helper.from_array(np.array(0.01, np.float32), "s")
        z = numpy_helper.from_array(np.array(0, np.int8), "z")
        nodes += [helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        src = "dq"
        inits = [w, s, z]
    else:
        inits = [w]
    nodes.append(helper.make_node("Conv", [src, "w"], ["output0"]))
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def conv_onnx(tmp_path: Path) -> Path:
    return make_conv_onnx(tmp_path / "model.onnx")


@pytest.fixture
def conv_onnx_factory() -> object:
    return make_conv_onnx
