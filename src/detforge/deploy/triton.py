"""Triton Inference Server model configurations (``config.pbtxt``), from the ONNX graph.

Two configurations can sit in a bundle's ``model_repository/``:

* ``<name>/config.pbtxt`` with ``1/model.onnx``: platform ``onnxruntime_onnx``, portable to
  any GPU (Triton's ONNX Runtime backend can use its TensorRT execution provider);
* ``<name>_trt/config.pbtxt`` when the bundle is for several targets: platform
  ``tensorrt_plan`` whose ``cc_model_filenames`` maps each target's compute capability
  (``"8.7"``, ``"7.5"``) to the plan that target's ``build_engine.sh`` copies into
  ``<name>_trt/1/``. Gather the plans of every target into one repository and a fleet of
  mixed GPUs serves the same model directory.

The text is Triton's protobuf text format; ``tritonclient``'s ``model_config_pb2`` parses it
(the tests check that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detforge.core.errors import ConfigError, ExportError

__all__ = ["PlanEntry", "TensorSpec", "onnx_config", "onnx_io", "plan_config",
           "preferred_batch_sizes"]

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


def onnx_config(name: str, onnx_path: str | Path, *, max_batch: int, instances: int = 1,
                kind: str = "KIND_GPU", queue_delay_us: int = 100) -> str:
    """``config.pbtxt`` for the ONNX Runtime backend.

    Args:
        name: Model name (the folder name in the repository).
        onnx_path: The ONNX file (read for input/output names, types and dims).
        max_batch: Largest batch Triton forms. Ignored for a fixed-batch graph, which gets
            ``max_batch_size: 0`` and its full shape.
        instances: Model instances per GPU.
        kind: ``KIND_GPU`` or ``KIND_CPU``.
        queue_delay_us: How long the dynamic batcher waits to fill a batch.

    Returns:
        The config text.

    Raises:
        ConfigError: A bad name, batch or instance count.
        ExportError: The ONNX file cannot be read.
    """
    _check_name(name)
    head = f"name: \"{name}\"\nplatform: \"onnxruntime_onnx\"\n"
    return head + _body(onnx_path, max_batch, instances, kind, queue_delay_us)


def plan_config(name: str, onnx_path: str | Path, entries: Sequence[PlanEntry], *,
                max_batch: int, instances: int = 1, queue_delay_us: int = 100) -> str:
    """``config.pbtxt`` for TensorRT plans, one per compute capability.

    Args:
        name: Model name.
        onnx_path: The ONNX file the plans are built from (for tensor names and dims).
        entries: Compute capability -> plan file name, one per target. Keys must be unique.
        max_batch: Largest batch every plan accepts (the smallest of the targets' batches).
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
            f"default_model_filename: \"{entries[0].filename}\"\n"
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
