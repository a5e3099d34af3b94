"""Build TensorRT plans through the Python API, with a manifest beside each.

The API differs between versions (:class:`detforge.export.trt_compat.PythonApi`, from
``NVIDIA/TensorRT`` ``python/src/infer/pyCore.cpp`` at each tag):

* 8.5 / 8.6: the ONNX parser needs an explicit-batch network
  (``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``); precision through
  ``BuilderFlag.FP16`` / ``INT8``;
* 10.x: explicit batch is the default (the flag is deprecated and not passed); same
  builder flags;
* 11.x: networks are strongly typed; there is no ``EXPLICIT_BATCH``, no FP16/INT8 builder
  flag and no calibrator: precision comes from the ONNX (FP16-converted or Q/DQ);
* 8.2 (JetPack 4.6) lacks ``set_memory_pool_limit``: refused, with the ``build_engine.sh``
  that ``trtexec`` runs there named instead.

INT8 always comes from a Q/DQ model (explicit quantisation, ``detforge quantize``), the one
path every version shares. Engines are plain serialized plans (no header), so trtexec,
DeepStream and Triton load them. Each gets ``<engine>.json``
(:class:`~detforge.core.artefacts.EngineSidecar`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detforge.core.artefacts.engine import (
    EngineSidecar,
    read_engine_sidecar,
    sidecar_path,
    write_engine_sidecar,
)
from detforge.core.atomic import atomic_write_bytes
from detforge.core.errors import DetforgeError, ExportError, MissingExtraError
from detforge.export.engine_plan import EnginePlan, plan_sidecar, sha256_file
from detforge.export.trt_compat import rules_for

__all__ = ["build_engine", "local_device", "manifest_path", "read_manifest"]

manifest_path = sidecar_path


def read_manifest(engine: str | Path) -> EngineSidecar:
    """Read and validate an engine's manifest.

    Raises:
        ExportError: The manifest is missing, not JSON, or a field is missing or malformed
            (one line naming the field).
    """
    return read_engine_sidecar(engine, error=ExportError)


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
            "tensorrt_version": str(trt.__version__), "cuda_version": torch.version.cuda}


def build_engine(plan: EnginePlan, *, device: dict[str, Any] | None = None) -> EngineSidecar:
    """Build ``plan`` with this machine's TensorRT Python API; write the plan and its manifest.

    Args:
        plan: From :func:`detforge.export.engine_plan.plan_engine`.
        device: This machine's ``gpu_name``, ``compute_capability`` and ``cuda_version``
            (default: :func:`local_device`).

    Returns:
        The manifest written beside the engine.

    Raises:
        MissingExtraError: TensorRT or a CUDA GPU is missing.
        ExportError: This TensorRT has no Python builder here (8.2: use build_engine.sh),
            or parsing or building failed (TensorRT's own messages included).
        TargetCapabilityError: The installed TensorRT cannot build the model.
    """
    trt = _trt()
    version = str(trt.__version__)
    script = plan.engine.with_name(plan.engine.stem + ".build.sh")
    try:
        rules = rules_for(version)
    except DetforgeError as exc:
        raise ExportError(f"TensorRT {version} is not one detforge's Python builder knows "
                          f"({exc}); build with trtexec: {script.name} beside the engine") from exc
    api = rules.python
    if not api.builder:
        raise ExportError(f"TensorRT {version}'s Python API has no set_memory_pool_limit "
                          f"(added in 8.4); detforge builds through it from 8.5. Build with "
                          f"trtexec instead: bash {script}")
    from detforge.export.engine_check import require_buildable

    require_buildable(plan.onnx, plan.target, plan.precision, tensorrt=version)
    device = device or local_device()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if api.explicit_batch == "required":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(plan.onnx.read_bytes(), str(plan.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{plan.onnx}: TensorRT {version} could not parse the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
    if api.precision_flags and plan.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if api.precision_flags and plan.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
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
        raise ExportError(f"{plan.onnx}: TensorRT {version} failed to build the engine; rerun "
                          f"with verbose logging (trtexec --verbose, or bash {script.name})")
    atomic_write_bytes(plan.engine, bytes(serialized))
    if plan.timing_cache is not None:
        atomic_write_bytes(plan.timing_cache, bytes(config.get_timing_cache().serialize()))
    sidecar = plan_sidecar(plan, gpu_name=device.get("gpu_name"),
                           compute_capability=str(device["compute_capability"]),
                           tensorrt_version=version, cuda_version=device.get("cuda_version"),
                           builder="python-api", onnx_sha256=sha256_file(plan.onnx),
                           engine_sha256=sha256_file(plan.engine))
    write_engine_sidecar(plan.engine, sidecar)
    return sidecar
