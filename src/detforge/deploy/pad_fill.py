"""Make nvinfer's black letterbox bands look like the grey the model was trained with.

nvinfer pads the scaled frame with black (it cudaMemsets the bands to 0 before applying
net-scale-factor and offsets; gstnvinfer.cpp ``get_converted_buffer``), while YOLO models
are trained and run on a workstation with grey-114 bands. Objects next to a band then get
other boxes and scores on the device (measured in BENCHMARKS.md, "DeepStream emulation").

:func:`add_pad_fill` puts a few elementwise operations in front of the network: every input
row and every input column that holds nothing but the padding value (0 after nvinfer's
normalisation) is replaced by the training grey. Only whole rows and columns change, which
is what nvinfer's bands are; a grey letterbox (the workstation's) is left untouched, and so
is any row with a single non-black pixel. The operations (Sub, Abs, Transpose,
GlobalMaxPool, Mul, Relu, Max, Add) exist in every opset and TensorRT version detforge
targets, and stay in float in front of an INT8 model's first quantisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detforge.core.errors import ExportError
from detforge.runtime.metadata import ModelMeta

__all__ = ["PAD_FILL_PREFIX", "add_pad_fill", "has_pad_fill"]

PAD_FILL_PREFIX = "detforge_pad_fill_"
_SHARP = 1e4
"""A row whose largest distance from the padding value is >= 1/_SHARP (a 1/255 step is
0.0039 after /255) is content; exactly the padding value is a band."""


def has_pad_fill(model: Any) -> bool:
    """True when ``model`` (an onnx ModelProto) already has the adapter."""
    return any(n.name.startswith(PAD_FILL_PREFIX) for n in model.graph.node)


def add_pad_fill(model: Any, meta: ModelMeta) -> Any:
    """Prepend the band-filling adapter to ``model`` (changed in place and returned).

    Args:
        model: An onnx ModelProto with one ``[B, 3, H, W]`` image input.
        meta: Its metadata (normalisation and letterbox grey).

    Raises:
        ExportError: The graph has no single 4-D input.
    """
    from onnx import helper, numpy_helper

    if has_pad_fill(model):
        return model
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise ExportError("the pad-fill adapter needs one [B, 3, H, W] input")
    x = inputs[0].name
    norm = meta.normalize
    scale, mean, std = norm.scale, np.asarray(norm.mean), np.asarray(norm.std)
    pad = (0.0 * scale - mean) / std  # nvinfer's black band after normalisation
    grey = (meta.letterbox.pad_value * scale - mean) / std

    def const(name: str, value: Any) -> str:
        arr = np.asarray(value, np.float32).reshape(1, -1, 1, 1) if np.ndim(value) else \
            np.asarray(value, np.float32)
        g.initializer.append(numpy_helper.from_array(arr, PAD_FILL_PREFIX + name))
        return PAD_FILL_PREFIX + name

    p = PAD_FILL_PREFIX
    out = p + "out"
    nodes = [
        helper.make_node("Sub", [x, const("pad", pad)], [p + "d"], name=p + "sub"),
        helper.make_node("Abs", [p + "d"], [p + "a"], name=p + "abs"),
        helper.make_node("Transpose", [p + "a"], [p + "rt"], perm=[0, 2, 1, 3], name=p + "rt"),
        helper.make_node("GlobalMaxPool", [p + "rt"], [p + "rm"], name=p + "rmax"),
        helper.make_node("Transpose", [p + "rm"], [p + "r"], perm=[0, 2, 1, 3], name=p + "rb"),
        helper.make_node("Transpose", [p + "a"], [p + "ct"], perm=[0, 3, 1, 2], name=p + "ct"),
        helper.make_node("GlobalMaxPool", [p + "ct"], [p + "cm"], name=p + "cmax"),
        helper.make_node("Transpose", [p + "cm"], [p + "c"], perm=[0, 2, 3, 1], name=p + "cb"),
        helper.make_node("Mul", [p + "r", const("sharp", _SHARP)], [p + "rs"], name=p + "rs"),
        helper.make_node("Sub", [const("one", 1.0), p + "rs"], [p + "rn"], name=p + "rn"),
        helper.make_node("Relu", [p + "rn"], [p + "rmask"], name=p + "rmask"),
        helper.make_node("Mul", [p + "c", p + "sharp"], [p + "cs"], name=p + "cs"),
        helper.make_node("Sub", [p + "one", p + "cs"], [p + "cn"], name=p + "cn"),
        helper.make_node("Relu", [p + "cn"], [p + "cmask"], name=p + "cmask"),
        helper.make_node("Max", [p + "rmask", p + "cmask"], [p + "mask"], name=p + "mask"),
        helper.make_node("Sub", [const("grey", grey), x], [p + "gap"], name=p + "gap"),
        helper.make_node("Mul", [p + "mask", p + "gap"], [p + "fill"], name=p + "fill"),
        helper.make_node("Add", [x, p + "fill"], [out], name=p + "add"),
    ]
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == x:
                node.input[i] = out
    for i, node in enumerate(nodes):
        g.node.insert(i, node)
    return model
