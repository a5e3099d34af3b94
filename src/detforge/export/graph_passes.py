"""Rewrites of exported graphs that ONNX Runtime runs faster, with the same results.

``softmax_inner_axis``: YOLO's distribution focal loss head takes a softmax over axis 1 of
a ``[B, 16, 4, A]`` tensor. ONNX Runtime computes a softmax on any axis but the last by
transposing around a last-axis kernel, which made that one node 9 % of a YOLO11n's CPU time
at 320 px. Written as ``exp(x - max) / sum`` over the same axis, five element-wise and
reduce kernels do the same work without the transposes. Measured on a trained YOLO11n,
320 px, batch 8, 2 threads: FP32 67.4 -> 76.1 img/s, INT8 (``--for cpu``) 90.3 -> 105.4
img/s; outputs within 1.3e-4 px of the original graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["softmax_inner_axis"]


def softmax_inner_axis(model: Any) -> int:
    """Replace every ``Softmax`` over an axis other than the last by max/exp/sum/div nodes.

    Graphs below opset 13 are left alone (their Softmax flattens the trailing axes, a
    different operation). Softmax nodes with ``axis=-1`` are kept: ONNX Runtime's kernel is
    fastest there.

    Args:
        model: An ``onnx.ModelProto``; changed in place.

    Returns:
        The number of Softmax nodes replaced.
    """
    from onnx import helper, numpy_helper

    opset = int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
    if opset < 13:
        return 0
    g = model.graph
    nodes: list[Any] = []
    replaced = 0
    for node in g.node:
        axis = next((int(a.i) for a in node.attribute if a.name == "axis"), -1)
        if node.op_type != "Softmax" or node.domain not in ("", "ai.onnx") or axis == -1:
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        p = f"{node.name or 'softmax'}_{replaced}_sm"
        # ReduceSum takes its axes as an input from opset 13, ReduceMax from opset 18
        g.initializer.append(numpy_helper.from_array(np.array([axis], np.int64), f"{p}_axes"))
        rmax = (helper.make_node("ReduceMax", [x, f"{p}_axes"], [f"{p}_max"], keepdims=1,
                                 name=f"{p}_rmax") if opset >= 18 else
                helper.make_node("ReduceMax", [x], [f"{p}_max"], axes=[axis], keepdims=1,
                                 name=f"{p}_rmax"))
        nodes += [
            rmax,
            helper.make_node("Sub", [x, f"{p}_max"], [f"{p}_shift"], name=f"{p}_sub"),
            helper.make_node("Exp", [f"{p}_shift"], [f"{p}_exp"], name=f"{p}_exp"),
            helper.make_node("ReduceSum", [f"{p}_exp", f"{p}_axes"], [f"{p}_sum"], keepdims=1,
                             name=f"{p}_rsum"),
            helper.make_node("Div", [f"{p}_exp", f"{p}_sum"], [y], name=f"{p}_div"),
        ]
        replaced += 1
    del g.node[:]
    g.node.extend(nodes)
    return replaced
