"""Post-training quantisation: INT8 Q/DQ and FP16 ONNX models.

INT8 follows what TensorRT's explicit quantisation needs and what keeps a detector
accurate:

* calibration images go through exactly the runtime's letterbox and normalisation
  (a centre-crop calibrator sees other statistics than inference and is a known cause of
  INT8 accuracy collapse);
* activations and weights are symmetric int8 (zero point 0), weights per channel, in the
  QDQ format (QuantizeLinear/DequantizeLinear pairs) that ONNX Runtime runs on the CPU and
  TensorRT builds from; biases stay float (:func:`_extra_options`), since TensorRT cannot
  dequantize the int32 biases ONNX Runtime writes by default;
* the detection head's decode path stays float. It is found from the graph, not from
  node names: walking back from the outputs, every node up to and including the last
  convolutions. Quantising it makes box coordinates (0..640) and class scores (0..1) share
  one int8 scale, which rounds every score to zero;
* RT-DETR: the same walk keeps the whole decoder float (query selection, deformable
  attention, box and class heads: nothing behind the neck's last convolutions is a
  ``Conv``), and :func:`float_op_nodes` keeps every ``LayerNormalization`` float (TensorRT
  runs it in float; ONNX Runtime would quantise its 1-D weights per channel). Quantising
  the decoder too collapses a trained model (mAP50 0.467 -> 0.0: the decoder's anchor
  tensor holds ``inf`` for masked positions, which no int8 scale represents); backbone,
  neck and the AIFI encoder in int8 cost nothing (0.467 -> 0.469 symmetric, 0.474 cpu
  flavour; docs/decisions/0039-rtdetr-int8-and-deployment.md);
* the nodes that read the image input stay float too (:func:`input_nodes`, both
  flavours). Symmetric int8 spends half its codes on negative values the 0..1 image never
  takes (on a partly trained YOLO11n, 64 calibration images: -0.05 mAP50-95 points with it,
  +0.5 with the first convolution in float); in the uint8 ``cpu`` flavour the image itself
  is exact, but the first convolution's output is still the most sensitive activation (a
  trained ReLU YOLO11n at 320: 0.68 points lost with it quantised, 0.09 without, for 4 % of
  the INT8 speed; BENCHMARKS.md "INT8 on a trained model").
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.atomic import atomic_write_bytes
from detforge.core.errors import ConfigError, ExportError

__all__ = ["CALIBRATION_METHODS", "FLOAT_OPS", "QuantizeResult", "convert_fp16",
           "float_head_nodes", "float_op_nodes", "input_nodes", "model_only_ips",
           "quantize_int8", "QUANT_FLAVOURS"]

FLOAT_OPS = frozenset({"LayerNormalization"})
"""Operators kept float wherever they are (see the module docstring)."""

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantizeResult:
    """A quantised model and the nodes kept in float."""

    path: Path
    precision: str
    calib_images: int
    method: str
    float_nodes: tuple[str, ...]
    flavour: str = "tensorrt"


def float_head_nodes(model: Any) -> list[str]:
    """Names of the nodes that must stay float: the decode path behind the last convs.

    Walks back from every graph output through any node except ``Conv``; each ``Conv``
    reached is kept too (the last convolution of each head branch) and the walk stops there.
    The DFL expectation is a ``Conv`` too (one output channel, no bias, fixed 0..15 weights):
    the walk goes through it to the box branch's last convolutions, whose 16-bin logits feed a
    softmax.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    dims = {i.name: tuple(i.dims) for i in model.graph.initializer}
    keep: dict[str, None] = {}
    stack = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        if tensor in seen or tensor not in producer:
            continue
        seen.add(tensor)
        node = producer[tensor]
        keep[node.name] = None
        dfl = len(node.input) == 2 and dims.get(node.input[1], ())[:1] == (1,)  # no bias
        if node.op_type != "Conv" or dfl:
            stack.extend(node.input)
    return list(keep)


def float_op_nodes(model: Any) -> list[str]:
    """Names of the nodes whose operator is in :data:`FLOAT_OPS`."""
    return [node.name for node in model.graph.node if node.op_type in FLOAT_OPS]


def input_nodes(model: Any) -> list[str]:
    """Names of the nodes that read a graph input directly (the first convolution)."""
    inputs = {i.name for i in model.graph.input}
    return [node.name for node in model.graph.node if inputs.intersection(node.input)]


def _name_nodes(model: Any) -> None:
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def _reader(input_name: str, batches: Iterator[NDArray[np.float32]]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            batch = next(batches, None)
            return None if batch is None else {input_name: batch}

    return _Reader()


QUANT_FLAVOURS = ("tensorrt", "cpu")


def quantize_int8(onnx_path: str | Path, out: str | Path,
                  calibration: Sequence[NDArray[np.float32]], *, method: str = "minmax",
                  per_channel: bool = True, flavour: str = "tensorrt") -> QuantizeResult:
    """Write an INT8 Q/DQ model, the head's decode path and the input convolution kept float.

    Args:
        onnx_path: Float ONNX model (detforge metadata is carried over).
        out: Output file.
        calibration: Preprocessed ``[1, 3, H, W]`` float32 batches (runtime letterbox).
        method: ``minmax``, ``entropy`` or ``percentile``.
        per_channel: Per-channel weight scales.
        flavour: ``tensorrt``: symmetric int8 activations (zero point 0), what TensorRT's
            explicit quantisation requires. ``cpu``: uint8 asymmetric activations with int8
            weights, the U8S8 kernels ONNX Runtime runs fast on x86 (measured 2-3x faster
            than S8S8 there; see docs/decisions/0003-int8-flavours.md).

    Raises:
        ConfigError: Unknown method or no calibration data.
        ExportError: ONNX Runtime failed to quantise the model.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; choose one of "
                          f"{list(CALIBRATION_METHODS)}")
    if flavour not in QUANT_FLAVOURS:
        raise ConfigError(f"unknown INT8 flavour {flavour!r}; choose one of {list(QUANT_FLAVOURS)}")
    if not calibration:
        raise ConfigError("no calibration images; pass --data DS with images in it")
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    model = onnx.load(str(onnx_path))
    _name_nodes(model)
    head = float_head_nodes(model)
    head += [n for n in input_nodes(model) + float_op_nodes(model) if n not in head]
    props = list(model.metadata_props)
    input_name = model.graph.input[0].name
    # quant_pre_process and the calibrator write files in the CWD: keep them in a temp dir
    with tempfile.TemporaryDirectory(prefix="detforge-quant-") as tmp:
        named, pre, q = (Path(tmp) / n for n in ("named.onnx", "pre.onnx", "q.onnx"))
        onnx.save(model, str(named))
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            quant_pre_process(str(named), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre), str(q), _reader(input_name, iter(calibration)),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8 if flavour == "tensorrt" else QuantType.QUInt8,
                weight_type=QuantType.QInt8, per_channel=per_channel, calibrate_method=calib,
                nodes_to_exclude=head,
                extra_options=_extra_options(flavour))
        except Exception as exc:
            raise ExportError(f"{onnx_path}: INT8 quantisation failed ({exc})") from exc
        finally:
            os.chdir(cwd)
        qmodel = onnx.load(str(q))
    _set_precision(qmodel, props, "int8")
    atomic_write_bytes(out, qmodel.SerializeToString())
    return QuantizeResult(Path(out), "int8", len(calibration), method, tuple(head), flavour)


def _extra_options(flavour: str) -> dict[str, bool]:
    """``quantize_static`` options per flavour.

    The TensorRT flavour keeps biases in float (``QuantizeBias=False``): ONNX Runtime's
    default stores them as int32 behind a ``DequantizeLinear``, and TensorRT's ONNX importer
    dequantizes only INT8 (8.x) or INT8/FP8/INT4 (10.x) tensors, so every such bias fails the
    build ("only activation types allowed as input to this layer"). TensorRT fuses a float
    bias into the INT8 convolution itself. See :mod:`detforge.export.trt_compat`.
    """
    tensorrt = flavour == "tensorrt"
    return {"ActivationSymmetric": tensorrt, "WeightSymmetric": True,
            "QuantizeBias": not tensorrt}


def convert_fp16(onnx_path: str | Path, out: str | Path) -> QuantizeResult:
    """Write an FP16 model with float32 inputs and outputs (for GPU targets)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(onnx_path))
    props = list(model.metadata_props)
    half = convert_float_to_float16(model, keep_io_types=True)
    _set_precision(half, props, "fp16")
    atomic_write_bytes(out, half.SerializeToString())
    return QuantizeResult(Path(out), "fp16", 0, "none", ())


def _set_precision(model: Any, props: list[Any], precision: str) -> None:
    from detforge.runtime.metadata import META_KEY, ModelMeta, embed_meta

    del model.metadata_props[:]
    model.metadata_props.extend(props)
    meta_prop = next((p for p in props if p.key == META_KEY), None)
    if meta_prop is not None:
        meta = ModelMeta.model_validate_json(meta_prop.value)
        embed_meta(model, meta.model_copy(update={"precision": precision}))


def model_only_ips(onnx_path: str | Path, batch: NDArray[np.float32], *, seconds: float = 2.0,
                   threads: int | None = None) -> float:
    """Images/s of ONNX Runtime on one preprocessed batch (model only, after warm-up)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch}
    session.run(None, feed)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 3:
        session.run(None, feed)
        n += 1
    return n * len(batch) / elapsed
