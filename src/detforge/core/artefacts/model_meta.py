"""Model metadata: what a runtime needs to know about a detector besides its weights.

An ONNX file written by detforge carries it as JSON under one ``metadata_props`` entry;
engine manifests and bundle manifests embed the same object (see
``docs/decisions/0002-onnx-model-metadata.md``). Reading it from ONNX files lives in
:mod:`detforge.runtime.metadata`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from detforge.core.config import StrictModel

__all__ = ["LAYOUTS", "Layout", "LetterboxSpec", "ModelMeta", "NormalizeSpec"]

Layout = Literal["raw", "deepstream", "end2end", "rtdetr", "rtdetr-normalized"]
LAYOUTS: tuple[str, ...] = ("raw", "deepstream", "end2end", "rtdetr", "rtdetr-normalized")
"""Output layouts (:mod:`detforge.runtime.postprocess` decodes each). ``rtdetr`` is detforge's
RT-DETR export (x1, y1, x2, y2 in input pixels); ``rtdetr-normalized`` is how Ultralytics
exports an RT-DETR itself (normalised cx, cy, w, h)."""


class LetterboxSpec(StrictModel):
    """How images are fitted to the input: resize keeping aspect, then pad.

    Attributes:
        center: Pad both sides equally (True) or only right/bottom (False).
        pad_value: Grey level of the padding.
        scaleup: Allow enlarging images smaller than the input.
        scale_fill: Stretch to the input size without keeping the aspect (how Ultralytics
            trains and runs an RT-DETR; detforge trains every model letterboxed).
    """

    center: bool = True
    pad_value: int = Field(114, ge=0, le=255)
    scaleup: bool = True
    scale_fill: bool = False


class NormalizeSpec(StrictModel):
    """``(pixel * scale - mean) / std`` per channel, applied after the letterbox."""

    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


class ModelMeta(StrictModel):
    """Everything about a detector that is not weights.

    Example:
        >>> meta = ModelMeta(classes=["cat", "dog"], imgsz=(320, 320))
        >>> ModelMeta.model_validate_json(meta.to_json()) == meta
        True
    """

    classes: tuple[str, ...]
    imgsz: tuple[int, int] = Field((640, 640), description="input [H, W]")
    layout: Layout = "raw"
    stride: int = 32
    letterbox: LetterboxSpec = LetterboxSpec()
    normalize: NormalizeSpec = NormalizeSpec()
    color: Literal["RGB", "BGR"] = "RGB"
    channels: Literal["NCHW"] = "NCHW"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    dynamic_batch: bool = False
    dataset_version: str | None = None
    run_id: str | None = None
    metrics: dict[str, Any] | None = None

    def to_json(self) -> str:
        """The compact JSON stored in the ONNX file."""
        return self.model_dump_json()
