"""Inference runtime: backends, pre/post-processing, sources, the pipelined engine, sinks.

Example:
    >>> from detforge.runtime import load_model  # doctest: +SKIP
    >>> model = load_model("model.onnx", device="cpu")  # doctest: +SKIP
    >>> detections = model.predict([rgb_image])  # doctest: +SKIP
"""

from detforge.runtime.backend import BACKENDS, Backend, BackendBase, InputSpec, RawOutput
from detforge.runtime.loader import load_model, resolve_model_path
from detforge.runtime.metadata import ModelMeta, embed_meta, meta_from_props, read_onnx_meta
from detforge.runtime.model import Model

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendBase",
    "InputSpec",
    "Model",
    "ModelMeta",
    "RawOutput",
    "embed_meta",
    "load_model",
    "meta_from_props",
    "read_onnx_meta",
    "resolve_model_path",
]
