"""Build TensorRT plans through the Python API, with a sidecar manifest.

Two build paths:

* TensorRT <= 10 (JetPack 5/6, DeepStream 6.x/7.x): builder flags select FP16/INT8;
  INT8 comes from a Q/DQ model (explicit quantisation) or, for a float model, from an
  entropy calibrator fed with the runtime's own letterbox preprocessing.
* TensorRT >= 11: networks are strongly typed; precision comes from the ONNX (an
  FP16-converted or Q/DQ model), and there are no precision flags or calibrators.

Engines are plain serialized plans (no header), so trtexec, DeepStream and Triton load
them. Each gets ``<engine>.json``: GPU, compute capability, TensorRT and CUDA versions,
precision, batch range, input shape and the source ONNX sha256.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.atomic import atomic_write_bytes, atomic_write_json
from detforge.core.errors import ExportError, MissingExtraError
from detforge.export.engine_plan import EnginePlan, sha256_file

__all__ = ["build_engine", "engine_manifest", "manifest_path", "read_manifest"]


def manifest_path(engine: str | Path) -> Path:
    """Sidecar manifest of an engine: ``model.engine`` -> ``model.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def engine_manifest(plan: EnginePlan, device: dict[str, Any]) -> dict[str, Any]:
    """The manifest of an engine built from ``plan`` on ``device``.

    Args:
        plan: The build plan.
        device: ``gpu_name``, ``compute_capability`` ("8.7"), ``tensorrt_version``,
            ``cuda_version`` of the machine that built it.
    """
    c, h, w = plan.chw
    from detforge.runtime.metadata import read_onnx_meta

    onnx_sha = sha256_file(plan.onnx)
    return {
        "engine": plan.engine.name,
        "target": plan.target.name,
        "gpu_name": device.get("gpu_name"),
        "compute_capability": device.get("compute_capability"),
        "tensorrt_version": device.get("tensorrt_version"),
        "cuda_version": device.get("cuda_version"),
        "precision": plan.precision,
        "batch": {"min": plan.batch[0], "opt": plan.batch[1], "max": plan.batch[2]},
        "min_batch": plan.batch[0],
        "max_batch": plan.batch[2],
        "input_name": plan.input_name,
        "input_shape": [-1 if plan.dynamic else plan.batch[2], c, h, w],
        "source_onnx": plan.onnx.name,
        "source_onnx_sha256": onnx_sha,
        "onnx": plan.onnx.name,
        "onnx_sha256": onnx_sha,
        "meta": read_onnx_meta(plan.onnx).model_dump(mode="json"),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def read_manifest(engine: str | Path) -> dict[str, Any]:
    """Read an engine's manifest.

    Raises:
        ExportError: The manifest is missing or not JSON.
    """
    path = manifest_path(engine)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: no manifest beside the engine; rebuild it with "
                          "`detforge engine build` so it records where it can run") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: manifest is not valid JSON ({exc})") from exc
    return data


def _trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingExtraError("TensorRT is not installed: pip install 'detforge[gpu]' "
                                "tensorrt, or use the trtexec command detforge wrote") from exc
    return trt


def local_device() -> dict[str, Any]:
    """GPU name, compute capability and versions of this machine (needs torch with CUDA).

    Raises:
        MissingExtraError: No CUDA device can be queried.
    """
    trt = _trt()
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError("pip install 'detforge[train]' to query the GPU") from exc
    if not torch.cuda.is_available():
        raise MissingExtraError("no CUDA GPU on this machine; build the engine on the target "
                                "with the trtexec command detforge wrote")
    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu_name": torch.cuda.get_device_name(0),
            "compute_capability": f"{major}.{minor}",
            "tensorrt_version": trt.__version__, "cuda_version": torch.version.cuda}


def build_engine(plan: EnginePlan, *,
                 calibration: Iterator[NDArray[np.float32]] | None = None) -> dict[str, Any]:
    """Build ``plan`` with the TensorRT Python API; write the plan and its manifest.

    Args:
        plan: From :func:`detforge.export.engine_plan.plan_engine`.
        calibration: Preprocessed NCHW float32 batches for INT8 calibration of a float
            (non Q/DQ) model on TensorRT <= 10.

    Returns:
        The manifest written beside the engine.

    Raises:
        MissingExtraError: TensorRT or a CUDA GPU is missing.
        ExportError: Parsing or building failed (TensorRT's own messages included).
    """
    trt = _trt()
    device = local_device()
    major = int(trt.__version__.split(".")[0])
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = major >= 11
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(plan.onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{plan.onnx}: TensorRT could not parse the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
    if not strongly_typed:
        if plan.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if plan.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            if not plan.qdq:
                if calibration is None:
                    raise ExportError(f"{plan.onnx}: INT8 from a float model needs calibration "
                                      "images; pass --data DS or quantize the model first")
                config.int8_calibrator = _calibrator(trt, calibration, plan)
    if plan.dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(plan.input_name, *((b, *plan.chw) for b in plan.batch))
        config.add_optimization_profile(profile)
    cache_bytes = b""
    if plan.timing_cache is not None and plan.timing_cache.exists():
        cache_bytes = plan.timing_cache.read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{plan.onnx}: TensorRT failed to build the engine; rerun with "
                          "TensorRT verbose logging (trtexec --verbose) to see why")
    atomic_write_bytes(plan.engine, bytes(serialized))
    if plan.timing_cache is not None:
        atomic_write_bytes(plan.timing_cache, bytes(config.get_timing_cache().serialize()))
    manifest = engine_manifest(plan, device)
    atomic_write_json(manifest_path(plan.engine), manifest)
    return manifest


def _calibrator(trt: Any, batches: Iterator[NDArray[np.float32]], plan: EnginePlan) -> Any:
    import torch

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._batches = batches
            self._device: torch.Tensor | None = None
            self._cache = plan.engine.with_suffix(".calib")

        def get_batch_size(self) -> int:
            return plan.batch[1]

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._device = torch.from_numpy(np.ascontiguousarray(batch)).cuda()
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return self._cache.read_bytes() if self._cache.exists() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            atomic_write_bytes(self._cache, bytes(cache))

    return _EntropyCalibrator()
