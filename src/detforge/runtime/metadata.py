"""Model metadata: what a runtime needs to know about a detector besides its weights.

The contract (see ``docs/decisions/0002-onnx-model-metadata.md``): an ONNX file written by
detforge carries one ``metadata_props`` entry, key ``"detforge"``, whose value is the JSON
form of :class:`ModelMeta`. An ONNX file exported by Ultralytics carries ``names``,
``imgsz``, ``stride``, ``task`` (and ``end2end``) instead; :func:`meta_from_props` reads both.

:class:`ModelMeta` itself lives with the other typed artefacts in
:mod:`detforge.core.artefacts`; it is re-exported here.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from detforge.core.artefacts.model_meta import (
    LAYOUTS,
    Layout,
    LetterboxSpec,
    ModelMeta,
    NormalizeSpec,
)
from detforge.core.errors import BackendError

__all__ = ["LAYOUTS", "META_KEY", "LetterboxSpec", "ModelMeta", "NormalizeSpec",
           "embed_meta", "meta_dict", "meta_from_props", "read_onnx_meta"]

META_KEY = "detforge"
"""The ``metadata_props`` key holding the detforge JSON."""


def meta_from_props(props: Mapping[str, str], *, source: str | Path) -> ModelMeta:
    """Read :class:`ModelMeta` from ONNX ``metadata_props`` (detforge's or Ultralytics').

    Args:
        props: The key -> value metadata map.
        source: The model file, named in error messages.

    Returns:
        The metadata.

    Raises:
        BackendError: Neither contract is present, or a value is malformed.
    """
    if META_KEY in props:
        try:
            return ModelMeta.model_validate_json(props[META_KEY])
        except ValidationError as exc:
            raise BackendError(
                f"{source}: the {META_KEY!r} metadata is invalid ({exc.errors()[0]['msg']} at "
                f"{'.'.join(map(str, exc.errors()[0]['loc']))}). Re-export the model with "
                f"`detforge export WEIGHTS.pt --out MODEL.onnx`.") from exc
    if "names" in props:
        return _from_ultralytics(props, source)
    raise BackendError(
        f"{source}: no model metadata (neither a {META_KEY!r} entry nor Ultralytics' 'names'). "
        f"Export it with `detforge export WEIGHTS.pt --out MODEL.onnx` so classes, input size "
        f"and layout are recorded.")


def _from_ultralytics(props: Mapping[str, str], source: str | Path) -> ModelMeta:
    task = props.get("task", "detect")
    if task != "detect":
        raise BackendError(f"{source}: an Ultralytics {task!r} model; detforge runs 'detect' "
                           f"models only. Export a detection model.")
    try:
        names = ast.literal_eval(props["names"])
        imgsz = ast.literal_eval(props.get("imgsz", "[640, 640]"))
        stride = int(props.get("stride", "32"))
    except (ValueError, SyntaxError) as exc:
        raise BackendError(f"{source}: unreadable Ultralytics metadata ({exc}); re-export the "
                           f"model") from exc
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names)]
    if isinstance(imgsz, int):
        imgsz = [imgsz, imgsz]
    end2end = props.get("end2end", "False") == "True"
    is_rtdetr = "rtdetr" in props.get("description", "").lower()
    layout: Layout = "rtdetr-normalized" if is_rtdetr else "end2end" if end2end else "raw"
    args = _literal(props.get("args", "{}"))
    return ModelMeta(classes=tuple(names), imgsz=(int(imgsz[0]), int(imgsz[1])), layout=layout,
                     stride=stride, letterbox=LetterboxSpec(scale_fill=is_rtdetr),
                     precision="fp16" if args.get("half") else "fp32",
                     dynamic_batch=bool(args.get("dynamic", False)))


def _literal(text: str) -> dict[str, Any]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {}
    return value if isinstance(value, dict) else {}


def read_onnx_meta(path: str | Path) -> ModelMeta:
    """Read the metadata of an ONNX file without loading its weights into a session.

    Raises:
        BackendError: The file is unreadable or has no usable metadata.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise BackendError(f"{path}: not a readable ONNX file ({exc})") from exc
    return meta_from_props({p.key: p.value for p in model.metadata_props}, source=path)


def embed_meta(model: Any, meta: ModelMeta) -> None:
    """Store ``meta`` in an ``onnx.ModelProto`` under :data:`META_KEY` (replacing any).

    Args:
        model: An ``onnx.ModelProto``; modified in place.
        meta: The metadata to write.
    """
    for i in reversed(range(len(model.metadata_props))):
        if model.metadata_props[i].key == META_KEY:
            del model.metadata_props[i]
    entry = model.metadata_props.add()
    entry.key = META_KEY
    entry.value = meta.to_json()


def meta_dict(meta: ModelMeta) -> dict[str, Any]:
    """``meta`` as a JSON-ready dict (for manifests and sidecars)."""
    out: dict[str, Any] = json.loads(meta.to_json())
    return out
