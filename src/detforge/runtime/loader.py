"""``load_model``: pick the backend from the file and build a :class:`Model`.

A file picks its backend by suffix (``.engine``/``.plan`` -> TensorRT, ``.onnx`` -> ONNX
Runtime, ``.pt`` -> torch). A directory, or a path without suffix (a stem), picks the best
file valid for this device: ``.engine`` (only where TensorRT runs and the engine's manifest
matches this GPU) > ``.onnx`` > ``.pt`` (only where torch is installed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from detforge.core.errors import (
    BackendError,
    ConfigError,
    EngineMismatchError,
    MissingExtraError,
)
from detforge.runtime.backend import backend_class
from detforge.runtime.metadata import ModelMeta, meta_from_props
from detforge.runtime.model import Model

__all__ = ["SUFFIX_BACKENDS", "load_model", "resolve_model_path"]

SUFFIX_BACKENDS: dict[str, str] = {
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".onnx": "onnxruntime",
    ".pt": "torch",
}
_PREFERENCE = (".engine", ".plan", ".onnx", ".pt")


def _usable(path: Path, device: str) -> bool:
    """Whether ``path`` can run here (used when choosing among a directory's files)."""
    kind = SUFFIX_BACKENDS[path.suffix]
    if kind == "tensorrt":
        if device == "cpu" or importlib.util.find_spec("tensorrt") is None:
            return False
        from detforge.runtime.backends.tensorrt import check_engine_file

        try:
            check_engine_file(path)
        except (EngineMismatchError, MissingExtraError, BackendError):
            return False
        return True
    if kind == "torch":
        return importlib.util.find_spec("torch") is not None
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_model_path(path: str | Path, *, device: str = "auto") -> Path:
    """The model file ``path`` designates.

    Args:
        path: A model file, a directory holding model files, or a stem (``models/best``).
        device: The target device; ``"cpu"`` never picks a TensorRT engine.

    Returns:
        The file to load.

    Raises:
        ConfigError: Nothing loadable is there, or a directory holds several files of the
            preferred kind (the message lists them).
    """
    path = Path(path)
    if path.is_file():
        if path.suffix not in SUFFIX_BACKENDS:
            raise ConfigError(f"{path}: unknown model type {path.suffix!r}; pass one of "
                              f"{sorted(SUFFIX_BACKENDS)} or a directory holding one")
        return path
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.suffix in SUFFIX_BACKENDS)
    else:
        candidates = [path.with_name(path.name + s) for s in _PREFERENCE]
        candidates = [p for p in candidates if p.is_file()]
    if not candidates:
        raise ConfigError(f"{path}: no such model file, and no .engine, .onnx or .pt model "
                          f"{'inside it' if path.is_dir() else 'with that stem'}; check the path")
    for suffix in _PREFERENCE:
        usable = [p for p in candidates if p.suffix == suffix and _usable(p, device)]
        if len(usable) > 1:
            raise ConfigError(f"{path}: several {suffix} models: {[p.name for p in usable]}; "
                              f"pass the one to use")
        if usable:
            return usable[0]
    raise ConfigError(f"{path}: none of {[p.name for p in candidates]} runs on this device "
                      f"({device}); an engine needs TensorRT and a matching GPU, a .pt needs "
                      f"torch (pip install 'detforge[train]')")


def load_model(path: str | Path, *, device: str = "auto", imgsz: tuple[int, int] | None = None,
               conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
               threads: int | None = None, spin: bool = False) -> Model:
    """Load a detector from a TensorRT engine, an ONNX file or an Ultralytics ``.pt``.

    Args:
        path: A model file, a directory, or a stem (see :func:`resolve_model_path`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        imgsz: Input ``(height, width)`` for graphs with a dynamic input size.
        conf: Confidence threshold.
        iou: NMS IoU threshold.
        max_det: Most detections per image.
        threads: CPU threads for ONNX Runtime (default: all usable cores).
        spin: Idle ONNX Runtime threads spin instead of sleeping (faster on an otherwise idle
            CPU, slower on a shared one; see :class:`OrtBackend`).

    Returns:
        The :class:`Model`.

    Raises:
        ConfigError: No loadable model at ``path`` or a bad option.
        BackendError: The model or its metadata cannot be read.
        EngineMismatchError: A TensorRT engine was built for another GPU or TensorRT.
        MissingExtraError: The backend's package is not installed.

    Example:
        >>> model = load_model("runs/exp/model.onnx", device="cpu")  # doctest: +SKIP
    """
    file = resolve_model_path(path, device=device)
    kind = SUFFIX_BACKENDS[file.suffix]
    cls = backend_class(kind)
    kwargs: dict[str, Any] = {"device": device}
    if kind == "onnxruntime":
        kwargs["threads"] = threads
        kwargs["spin"] = spin
    backend = cls(file, **kwargs)
    try:
        meta = _meta_of(backend, file)
        return Model(backend, meta, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det)
    except BaseException:
        backend.close()
        raise


def _meta_of(backend: Any, file: Path) -> ModelMeta:
    meta = getattr(backend, "meta", None)
    if isinstance(meta, ModelMeta):
        return meta
    if hasattr(backend, "metadata"):
        return meta_from_props(backend.metadata(), source=file)
    raise BackendError(f"{file}: the {backend.name} backend gives no model metadata")
