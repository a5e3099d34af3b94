"""Triton Inference Server model configurations (``config.pbtxt``), from the ONNX graph.

Two models, and a repository that starts as shipped:

* ``model_repository/<name>/config.pbtxt`` with ``1/model.onnx`` (the bundle's ONNX: the
  Q/DQ file for INT8): platform ``onnxruntime_onnx`` with ONNX Runtime's TensorRT execution
  accelerator at the bundle's precision (``precision_mode`` FP32 / FP16 / INT8; a Q/DQ model
  needs no calibration table), one optimisation profile for batch 1..max and an engine
  cache, so the first load builds the TensorRT engine once;
* ``triton/<name>_trt/config.pbtxt`` when the bundle is for several targets: platform
  ``tensorrt_plan`` whose ``cc_model_filenames`` maps each target's compute capability
  (``"8.7"``, ``"7.5"``) to that target's plan, and no ``default_model_filename`` (a GPU
  that is not listed fails to load instead of running another GPU's plan). It is *not* in
  ``model_repository/`` as shipped: Triton refuses a model folder without a version folder,
  and plans exist only after ``build_engine.sh`` ran; the script installs the config and
  writes the plan into ``model_repository/<name>_trt/1/``. ``max_batch_size`` is the
  largest target batch, so every target builds its plan up to that batch (Triton refuses a
  plan whose profile is smaller than ``max_batch_size``).

The text is Triton's protobuf text format; ``tritonclient``'s ``model_config_pb2`` parses it
(the tests check that). Rules: Triton model repository guide (version folders, cc_model_
filenames), onnxruntime_backend README (TensorRT accelerator parameters), tensorrt_backend
autofill (``configuration specified max-batch N but TensorRT engine only supports max-batch
M``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detforge.core.errors import ConfigError, ExportError

__all__ = ["TRT_PRECISION", "PlanEntry", "TensorSpec", "onnx_config", "onnx_io", "plan_config",
           "preferred_batch_sizes"]

TRT_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}
"""onnxruntime_backend ``precision_mode`` per bundle precision."""

_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 7: "TYPE_INT64", 6: "TYPE_INT32", 2: "TYPE_UINT8",
          3: "TYPE_INT8", 11: "TYPE_FP64", 9: "TYPE_BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, Triton data type, dims without the batch axis."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class PlanEntry:
    """One target's plan in a ``tensorrt_plan`` config."""

    compute_capability: str
    filename: str
    target: str


def onnx_io(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec], int | None]:
    """Inputs, outputs and the fixed batch (None when dynamic) of an ONNX graph.

    Dimensions without a fixed size become ``-1``; the first axis is the batch and is left
    out of ``dims``, as Triton expects when ``max_batch_size > 0``.

    Raises:
        ExportError: The file is unreadable or a tensor has an unsupported type.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError...
        raise ExportError(f"{path}: not a readable ONNX model ({exc})") from exc
    inits = {i.name for i in model.graph.initializer}
    batch: int | None = None

    def spec(value: object) -> TensorSpec:
        nonlocal batch
        tt = value.type.tensor_type  # type: ignore[attr-defined]
        name = str(value.name)  # type: ignore[attr-defined]
        if tt.elem_type not in _TYPES:
            raise ExportError(f"{path}: tensor {name!r} has ONNX type {tt.elem_type}, which "
                              f"detforge cannot describe to Triton")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                for d in tt.shape.dim]
        if dims and dims[0] > 0:
            batch = dims[0]
        return TensorSpec(name, _TYPES[tt.elem_type], tuple(dims[1:]))

    inputs = [spec(i) for i in model.graph.input if i.name not in inits]
    outputs = [spec(o) for o in model.graph.output]
    return inputs, outputs, batch


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Powers of two from 2 up to ``max_batch``, and ``max_batch`` itself (8 -> [2, 4, 8])."""
    sizes = [b for b in (2, 4, 8, 16, 32, 64, 128) if b < max_batch]
    return [*sizes, max_batch] if max_batch > 1 else []


def _tensors(kind: str, specs: Sequence[TensorSpec], with_batch: int | None) -> str:
    items = []
    for s in specs:
        dims = (with_batch, *s.dims) if with_batch else s.dims
        items.append(f"  {{\n    name: \"{s.name}\"\n    data_type: {s.data_type}\n"
                     f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}")
    return f"{kind} [\n" + ",\n".join(items) + "\n]\n"


def _batching(max_batch: int, queue_delay_us: int) -> str:
    sizes = preferred_batch_sizes(max_batch)
    pref = f"  preferred_batch_size: [ {', '.join(map(str, sizes))} ]\n" if sizes else ""
    return f"dynamic_batching {{\n{pref}  max_queue_delay_microseconds: {queue_delay_us}\n}}\n"


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "_-." for c in name):
        raise ConfigError(f"Triton model name {name!r} must be letters, digits, '_', '-' or '.'")


def _tensorrt_accelerator(name: str, onnx_path: str | Path, precision: str,
                         max_batch: int) -> str:
    """The ``optimization`` block that runs the ONNX model through TensorRT."""
    if precision not in TRT_PRECISION:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {list(TRT_PRECISION)}")
    inputs, _, fixed = onnx_io(onnx_path)
    params = {"precision_mode": TRT_PRECISION[precision],
              "max_workspace_size_bytes": str(2 << 30),
              "trt_engine_cache_enable": "1",
              "trt_engine_cache_path": f"/tmp/detforge-trt-cache/{name}"}
    if fixed is None and inputs:
        def shapes(b: int) -> str:
            return ",".join(f"{i.name}:{'x'.join(str(d) for d in (b, *i.dims))}" for i in inputs)

        params.update(trt_profile_min_shapes=shapes(1), trt_profile_opt_shapes=shapes(max_batch),
                      trt_profile_max_shapes=shapes(max_batch))
    lines = "".join(f"      parameters {{ key: \"{k}\" value: \"{v}\" }}\n"
                    for k, v in params.items())
    return ("optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
            f"      {{\n      name: \"tensorrt\"\n{lines}      }}\n    ]\n  }}\n}}\n")


def onnx_config(name: str, onnx_path: str | Path, *, max_batch: int, instances: int = 1,
                kind: str = "KIND_GPU", queue_delay_us: int = 100,
                precision: str | None = None) -> str:
    """``config.pbtxt`` for the ONNX Runtime backend.

    Args:
        name: Model name (the folder name in the repository).
        onnx_path: The ONNX file (read for input/output names, types and dims).
        max_batch: Largest batch Triton forms. Ignored for a fixed-batch graph, which gets
            ``max_batch_size: 0`` and its full shape.
        instances: Model instances per GPU.
        kind: ``KIND_GPU`` or ``KIND_CPU``.
        queue_delay_us: How long the dynamic batcher waits to fill a batch.
        precision: Run the model through ONNX Runtime's TensorRT execution accelerator at
            this precision (``fp32``, ``fp16``, ``int8``: the model must then hold Q/DQ
            nodes); None: ONNX Runtime's CUDA provider alone.

    Returns:
        The config text.

    Raises:
        ConfigError: A bad name, batch, instance count or precision.
        ExportError: The ONNX file cannot be read.
    """
    _check_name(name)
    head = f"name: \"{name}\"\nplatform: \"onnxruntime_onnx\"\n"
    body = _body(onnx_path, max_batch, instances, kind, queue_delay_us)
    if precision is not None and kind == "KIND_GPU":
        body += _tensorrt_accelerator(name, onnx_path, precision, max_batch)
    return head + body


def plan_config(name: str, onnx_path: str | Path, entries: Sequence[PlanEntry], *,
                max_batch: int, instances: int = 1, queue_delay_us: int = 100) -> str:
    """``config.pbtxt`` for TensorRT plans, one per compute capability.

    Args:
        name: Model name.
        onnx_path: The ONNX file the plans are built from (for tensor names and dims).
        entries: Compute capability -> plan file name, one per target. Keys must be unique.
            No ``default_model_filename`` is written: a GPU that is not listed fails to
            load rather than run a plan built for another one.
        max_batch: Largest batch Triton forms; every plan must be built up to it (the
            largest of the targets' batches).
        instances: Model instances per GPU.
        queue_delay_us: How long the dynamic batcher waits to fill a batch.

    Returns:
        The config text.

    Raises:
        ConfigError: No entries, a compute capability listed twice, or a bad name or batch.
        ExportError: The ONNX file cannot be read.
    """
    _check_name(name)
    if not entries:
        raise ConfigError("a plan config needs at least one target")
    ccs = [e.compute_capability for e in entries]
    dup = sorted({c for c in ccs if ccs.count(c) > 1})
    if dup:
        raise ConfigError(f"compute capability {dup} is listed twice in cc_model_filenames; "
                          f"one plan per capability")
    ccmap = "".join(f"  {{\n    key: \"{e.compute_capability}\"\n    value: \"{e.filename}\"\n  }}"
                    + (",\n" if i < len(entries) - 1 else "\n") for i, e in enumerate(entries))
    head = (f"name: \"{name}\"\nplatform: \"tensorrt_plan\"\n"
            f"cc_model_filenames [\n{ccmap}]\n")
    return head + _body(onnx_path, max_batch, instances, "KIND_GPU", queue_delay_us)


def _body(onnx_path: str | Path, max_batch: int, instances: int, kind: str,
          queue_delay_us: int) -> str:
    """Batch size, tensors, dynamic batching and instance group, from the ONNX graph."""
    if max_batch < 1 or instances < 1:
        raise ConfigError(f"max batch ({max_batch}) and instances ({instances}) must be >= 1")
    inputs, outputs, fixed = onnx_io(onnx_path)
    if fixed is not None:  # no batch axis for Triton: the shape is the graph's
        body = ("max_batch_size: 0\n" + _tensors("input", inputs, fixed)
                + _tensors("output", outputs, fixed))
    else:
        body = (f"max_batch_size: {max_batch}\n" + _tensors("input", inputs, None)
                + _tensors("output", outputs, None) + _batching(max_batch, queue_delay_us))
    group = f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]\n"
    return body + group
