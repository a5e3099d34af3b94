"""TensorRT backend: loads a plain TensorRT 10 plan, refusing engines built for elsewhere.

Every engine ``X.engine`` has a sidecar manifest ``X.engine.json``
(:class:`detforge.core.artefacts.EngineSidecar`, written by ``detforge engine build`` or
the bundle's ``build_engine.sh``)::

    {"engine": "X.engine", "gpu_name": "Tesla T4", "compute_capability": "7.5",
     "tensorrt_version": "10.3.0", "cuda_version": "12.4", "precision": "fp16",
     "batch": {"min": 1, "opt": 8, "max": 8}, "onnx": "model.onnx", "onnx_sha256": "...",
     "version_compatible": false, "hardware_compatibility": "none", "meta": {...}}

:func:`check_engine_manifest` is a pure function comparing that manifest with this device,
so the rules are tested without a GPU. Plans are version- and GPU-specific: the compute
capability must be equal (unless built with ``hardware_compatibility: "ampere_plus"``, then
any sm_80+ GPU) and the TensorRT version must be the same major.minor.patch (unless built
``version_compatible``, then the same major and not older). Device memory and the CUDA
stream come from torch, imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.artefacts.engine import read_engine_sidecar, sidecar_path
from detforge.core.errors import BackendError, ConfigError, EngineMismatchError, MissingExtraError
from detforge.runtime.backend import BackendBase, InputSpec, RawOutput
from detforge.runtime.metadata import ModelMeta, read_onnx_meta

__all__ = ["TrtBackend", "check_engine_file", "check_engine_manifest", "current_device",
           "manifest_path"]

REQUIRED = ("compute_capability", "tensorrt_version")


def manifest_path(engine: str | Path) -> Path:
    """The sidecar manifest of ``engine``: the same name plus ``.json``."""
    return sidecar_path(engine)


def _version(text: str, parts: int) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split(".")[:parts])
    except ValueError:
        return ()


def _rebuild_hint(manifest: Mapping[str, Any], engine: str) -> str:
    onnx = manifest.get("onnx") or Path(engine).with_suffix(".onnx").name
    target = manifest.get("target") or "TARGET"
    return (f"Rebuild it on this device with `detforge engine build {onnx} --target {target}` "
            f"(or the bundle's build_engine.sh).")


def check_engine_manifest(manifest: Mapping[str, Any], device: Mapping[str, Any], *,
                          engine: str = "engine") -> None:
    """Refuse an engine whose manifest does not match ``device``.

    Args:
        manifest: The engine's sidecar manifest.
        device: This device: ``compute_capability`` (``"8.7"``), ``tensorrt_version``
            (``"10.3.0"``), optionally ``gpu_name`` and ``cuda_version``.
        engine: The engine's name, for the message.

    Raises:
        EngineMismatchError: A required key is missing, or the GPU architecture or the
            TensorRT version differs; the message says how to rebuild.

    Example:
        >>> check_engine_manifest({"compute_capability": "7.5", "tensorrt_version": "10.3.0"},
        ...                       {"compute_capability": "7.5", "tensorrt_version": "10.3.0"})
    """
    missing = [k for k in REQUIRED if not manifest.get(k)]
    if missing:
        raise EngineMismatchError(f"{engine}: its manifest lacks {missing}, so it cannot be "
                                  f"checked against this device. {_rebuild_hint(manifest, engine)}")
    built_cc, here_cc = str(manifest["compute_capability"]), str(device["compute_capability"])
    built_trt, here_trt = str(manifest["tensorrt_version"]), str(device["tensorrt_version"])
    hw = str(manifest.get("hardware_compatibility", "none")).lower()
    if hw in ("ampere_plus", "ampere+"):
        cc_ok = _version(here_cc, 2) >= (8, 0)
    else:
        cc_ok = _version(built_cc, 2) == _version(here_cc, 2) != ()
    if manifest.get("version_compatible"):
        b, h = _version(built_trt, 3), _version(here_trt, 3)
        trt_ok = bool(b) and bool(h) and b[0] == h[0] and h >= b
    else:
        trt_ok = _version(built_trt, 3) == _version(here_trt, 3) != ()
    if cc_ok and trt_ok:
        return
    built_gpu = f" ({manifest['gpu_name']})" if manifest.get("gpu_name") else ""
    here_gpu = f" ({device['gpu_name']})" if device.get("gpu_name") else ""
    raise EngineMismatchError(
        f"{engine}: built for sm_{built_cc.replace('.', '')}{built_gpu} / TensorRT {built_trt}, "
        f"this device is sm_{here_cc.replace('.', '')}{here_gpu} / TensorRT {here_trt}. "
        f"TensorRT plans only run on the GPU architecture and TensorRT version they were "
        f"built for. {_rebuild_hint(manifest, engine)}")


def current_device(index: int = 0) -> dict[str, str]:
    """This machine's GPU and TensorRT, as :func:`check_engine_manifest` expects.

    Raises:
        MissingExtraError: TensorRT or torch is not installed.
        BackendError: No CUDA GPU is available.
    """
    trt, torch = _imports()
    if not torch.cuda.is_available():
        raise BackendError("a TensorRT engine needs a CUDA GPU and none is available; use the "
                           ".onnx model on CPU instead")
    major, minor = torch.cuda.get_device_capability(index)
    return {"gpu_name": str(torch.cuda.get_device_name(index)),
            "compute_capability": f"{major}.{minor}", "tensorrt_version": str(trt.__version__),
            "cuda_version": str(torch.version.cuda)}


def check_engine_file(engine: str | Path, index: int = 0) -> dict[str, Any]:
    """Read ``engine``'s manifest and check it against this device; returns the manifest.

    Raises:
        EngineMismatchError: No manifest, a malformed one (the field is named), or it does
            not match.
        MissingExtraError: TensorRT or torch is not installed.
    """
    sidecar = read_engine_sidecar(engine, error=EngineMismatchError)
    manifest: dict[str, Any] = sidecar.model_dump(mode="json")
    check_engine_manifest(manifest, current_device(index), engine=str(engine))
    return manifest


def _imports() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingExtraError("TensorRT is not installed: pip install tensorrt (or use the "
                                "JetPack / TensorRT container), or load the .onnx model") from exc
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError("the TensorRT backend uses torch for CUDA memory: "
                                "pip install torch") from exc
    return trt, torch


class TrtBackend(BackendBase):
    """Runs a TensorRT 10 plan (``execute_async_v3`` on torch's current CUDA stream).

    Args:
        path: The ``.engine`` / ``.plan`` file (with its ``.json`` manifest).
        device: ``"auto"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ConfigError: ``device`` is ``"cpu"``.
        EngineMismatchError: The engine was built for another GPU or TensorRT version.
        MissingExtraError: TensorRT or torch is missing.
        BackendError: The plan cannot be deserialised.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, *, device: str = "auto") -> None:
        if device == "cpu":
            raise ConfigError(f"{path}: a TensorRT engine cannot run on the CPU; load the .onnx "
                              f"model, or use --device cuda")
        trt, torch = _imports()
        self.path = Path(path)
        index = int(device.partition(":")[2] or 0)
        manifest = check_engine_file(self.path, index)
        self._torch = torch
        self.device = f"cuda:{index}"
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise BackendError(f"{self.path}: TensorRT could not deserialise the plan (see the "
                               f"TensorRT log above). Rebuild it with `detforge engine build` "
                               f"or build_engine.sh.")
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(f"{self.path}: no execution context (out of GPU memory?)")
        self._engine, self._context = engine, context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1:
            raise BackendError(f"{self.path}: expected one input tensor, found {inputs}")
        name = inputs[0]
        shape = tuple(engine.get_tensor_shape(name))
        lo, hi = shape[0], shape[0]
        if shape[0] == -1:
            lo, _, hi = (tuple(s)[0] for s in engine.get_tensor_profile_shape(name, 0))
        self._dtypes = {n: torch.float16 if engine.get_tensor_dtype(n) == trt.DataType.HALF
                        else torch.int32 if engine.get_tensor_dtype(n) == trt.DataType.INT32
                        else torch.float32 for n in names}
        self.input_spec = InputSpec(
            name=name, height=shape[2] if shape[2] > 0 else None,
            width=shape[3] if shape[3] > 0 else None, min_batch=int(lo), max_batch=int(hi),
            dtype="float16" if self._dtypes[name] == torch.float16 else "float32")
        if manifest.get("meta"):
            self.meta = ModelMeta.model_validate(manifest["meta"])
        else:
            onnx = self.path.with_name(manifest.get("onnx") or self.path.stem + ".onnx")
            self.meta = read_onnx_meta(onnx)

    def infer(self, batch: NDArray[np.float32]) -> RawOutput:
        """Copy ``batch`` to the GPU, run the plan and copy the outputs back.

        Raises:
            BackendError: TensorRT rejected the shape or the launch failed.
        """
        torch = self._torch
        name = self.input_spec.name
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device,
                                                             dtype=self._dtypes[name])
        ctx = self._context
        if not ctx.set_input_shape(name, tuple(x.shape)):
            raise BackendError(f"{self.path}: batch shape {tuple(x.shape)} is outside the "
                               f"engine's profile ({self.input_spec}); rebuild with a larger "
                               f"--max-batch or pass --batch {self.input_spec.max_batch}")
        ctx.set_tensor_address(name, x.data_ptr())
        outs = []
        for out_name in self._outputs:
            buf = torch.empty(tuple(ctx.get_tensor_shape(out_name)),
                              dtype=self._dtypes[out_name], device=self.device)
            ctx.set_tensor_address(out_name, buf.data_ptr())
            outs.append(buf)
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise BackendError(f"{self.path}: TensorRT execution failed (see its log)")
        stream.synchronize()
        return [o.float().cpu().numpy() for o in outs]

    def close(self) -> None:
        """Free the context and engine."""
        self.__dict__.pop("_context", None)
        self.__dict__.pop("_engine", None)
