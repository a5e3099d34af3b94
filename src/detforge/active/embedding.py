"""Image embeddings from the detector itself: its deepest feature map, pooled, as one more output.

An ONNX detector computes a backbone feature map on the way to its boxes; pooling it over
space gives a compact description of the whole image that the model already "sees", which
is what diversity sampling should spread over (Sener & Savarese 2018 use the penultimate
layer the same way). :func:`tap_embedding` writes a copy of the ONNX file with one extra
output, ``detforge_embedding`` ``[B, C]`` = ``GlobalAveragePool`` of that map followed by
``Flatten``, so one inference pass through the ordinary runtime gives both the detections
(output 0, unchanged) and the embedding (last output).

The map chosen is a 4-D float tensor with at least two channels and two cells at the coarsest
stride of the graph (its height and width are the input's divided by the largest stride
found, from ONNX shape inference on the model's input size); among those the one with the
most channels, the last in graph order on ties. For YOLO11 this is the stride-32 concat of
the backbone's SPPF block (4 x 128 channels for yolo11n). Graphs where no such tensor is
found (or other model files: ``.pt``, TensorRT engines) fall back to perceptual hashes
(:func:`detforge.active.diversity.phash_vectors`); the selection records which embedding it
used.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detforge.core.errors import BackendError

__all__ = ["EMBED_OUTPUT", "FeatureTap", "find_feature_map", "load_with_embedding",
           "tap_embedding"]

EMBED_OUTPUT = "detforge_embedding"
"""Name of the pooled-feature output added to the graph."""

_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass(frozen=True, slots=True)
class FeatureTap:
    """The feature map an embedding is pooled from.

    Attributes:
        tensor: Its name in the graph.
        channels: Channels C (the embedding's length).
        stride: Input pixels per feature cell.
    """

    tensor: str
    channels: int
    stride: int


def find_feature_map(model: Any, imgsz: tuple[int, int]) -> FeatureTap | None:
    """The coarsest, widest 4-D float feature map of an ONNX ``ModelProto``, or None.

    Args:
        model: The ``onnx.ModelProto`` (not modified).
        imgsz: Input ``(height, width)`` the shapes are inferred at.
    """
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        return None
    for d, v in zip(dims, (1, 3, imgsz[0], imgsz[1]), strict=True):
        d.ClearField("dim_param")
        d.dim_value = v
    try:
        inferred = onnx.shape_inference.infer_shapes(probe)
    except Exception:  # onnx raises InferenceError or checker errors on exotic graphs
        return None
    order = {out: i for i, node in enumerate(inferred.graph.node) for out in node.output}
    found: list[tuple[int, int, int, str]] = []  # (stride, channels, graph order, name)
    shape: list[int]
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        shape = [int(d.dim_value) if d.HasField("dim_value") else 0 for d in tt.shape.dim]
        if (tt.elem_type not in _FLOAT_TYPES or len(shape) != 4 or min(shape) <= 0
                or shape[0] != 1 or shape[1] < 2 or shape[2] * shape[3] < 2
                or vi.name not in order):
            continue  # not a feature map (a scalar per image, a single channel, or 1x1)
        stride = _stride(imgsz, shape[2], shape[3])
        if stride:
            found.append((stride, shape[1], int(order[vi.name]), str(vi.name)))
    if not found:
        return None
    stride, channels, _, name = max(found)
    return FeatureTap(name, channels, stride)


def _stride(imgsz: tuple[int, int], h: int, w: int) -> int:
    """The stride s (>= 8) with ``h == ceil(H / s)`` and ``w == ceil(W / s)``, else 0."""
    for s in (8, 16, 32, 64, 128):
        if h == math.ceil(imgsz[0] / s) and w == math.ceil(imgsz[1] / s):
            return s
    return 0


def tap_embedding(onnx_path: str | Path, out: str | Path, *,
                  imgsz: tuple[int, int]) -> FeatureTap | None:
    """Write a copy of ``onnx_path`` with the pooled feature output added.

    Args:
        onnx_path: The detector.
        out: Where to write the copy.
        imgsz: Input ``(height, width)`` the model runs at.

    Returns:
        The tapped feature map, or None (nothing written) when no feature map qualifies.

    Raises:
        BackendError: The file is not a readable ONNX model.
    """
    import onnx
    from onnx import TensorProto, helper

    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # protobuf DecodeError and OSError subclasses
        raise BackendError(f"{onnx_path}: not a readable ONNX model ({exc})") from exc
    tap = find_feature_map(model, imgsz)
    if tap is None:
        return None
    graph = model.graph
    pooled = f"{EMBED_OUTPUT}_pooled"
    graph.node.append(helper.make_node("GlobalAveragePool", [tap.tensor], [pooled],
                                       name=f"{EMBED_OUTPUT}_pool"))
    graph.node.append(helper.make_node("Flatten", [pooled], [EMBED_OUTPUT], axis=1,
                                       name=f"{EMBED_OUTPUT}_flatten"))
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    elem = TensorProto.FLOAT
    for vi in graph.value_info:
        if vi.name == tap.tensor:
            elem = vi.type.tensor_type.elem_type
    graph.output.append(helper.make_tensor_value_info(
        EMBED_OUTPUT, elem, [batch.dim_param or batch.dim_value or "batch", tap.channels]))
    onnx.save(model, str(out))
    return tap


def load_with_embedding(onnx_path: str | Path, **load_kwargs: Any) -> tuple[Any, FeatureTap | None]:
    """Load a detector whose last output is its pooled feature map, when it has one.

    Args:
        onnx_path: The ``.onnx`` detector.
        **load_kwargs: Passed to :func:`detforge.runtime.load_model` (``imgsz`` sets the
            size shapes are inferred at; default: the model's metadata).

    Returns:
        ``(model, tap)``: the loaded :class:`~detforge.runtime.Model` and the tapped map,
        or the plain model and None when no map qualifies.

    Raises:
        BackendError: The model cannot be read or loaded.
    """
    from detforge.runtime import load_model, read_onnx_meta

    imgsz = load_kwargs.get("imgsz") or read_onnx_meta(onnx_path).imgsz
    with tempfile.TemporaryDirectory(prefix="detforge-embed-") as tmp:
        tapped = Path(tmp) / Path(onnx_path).name
        tap = tap_embedding(onnx_path, tapped, imgsz=tuple(imgsz))
        model = load_model(tapped if tap is not None else onnx_path, **load_kwargs)
    return model, tap
