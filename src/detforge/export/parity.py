"""Parity between a PyTorch model and its ONNX export, on the same preprocessed inputs.

Raw outputs are compared element-wise (max absolute and relative difference), after
bringing the PyTorch head output into the ONNX file's layout; ``end2end`` graphs (NMS
inside) are compared by box agreement instead, since NMS is discontinuous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ExportError

__all__ = ["ParityReport", "check_parity", "load_inputs", "to_layout"]


@dataclass(frozen=True)
class ParityReport:
    """Differences between PyTorch and ONNX Runtime outputs on the same batch."""

    layout: str
    images: int
    max_abs_diff: float
    max_rel_diff: float
    tolerance: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_inputs(files: Sequence[Path], imgsz: tuple[int, int]) -> NDArray[np.float32]:
    """Letterbox image files exactly as the runtime does, into an ``[N, 3, H, W]`` batch."""
    from detforge.core.imageio import read_image_bgr
    from detforge.runtime.preprocess import letterbox, to_input

    batch = []
    for f in files:
        bgr = read_image_bgr(f)
        if bgr is None:
            raise ExportError(f"{f}: unreadable image for the parity check")
        rgb = np.ascontiguousarray(bgr[..., ::-1], dtype=np.uint8)
        img, _ = letterbox(rgb, imgsz)
        batch.append(to_input(img))
    return np.stack(batch)


def to_layout(raw: NDArray[np.float32], layout: str) -> NDArray[np.float32]:
    """A raw YOLO head output ``[B, 4+K, N]`` in another layout (``raw`` or ``deepstream``)."""
    if layout == "raw":
        return raw
    t = raw.transpose(0, 2, 1)
    xy, wh, cls = t[..., :2], t[..., 2:4], t[..., 4:]
    return np.concatenate([xy - wh / 2, xy + wh / 2, cls.max(-1, keepdims=True),
                           cls.argmax(-1)[..., None].astype(np.float32)], axis=-1)


def torch_raw_output(weights: str | Path, batch: NDArray[np.float32]) -> NDArray[np.float32]:
    """The raw head output of Ultralytics weights on ``batch`` (CPU, float32, fused)."""
    import torch

    from detforge.export.onnx_export import _ultralytics

    model = _ultralytics().YOLO(str(weights)).model.float().eval().fuse()
    with torch.inference_mode():
        out = model(torch.from_numpy(batch))
    out = out[0] if isinstance(out, list | tuple) else out
    return np.asarray(out.numpy(), np.float32)


def check_parity(weights: str | Path, onnx_path: str | Path, batch: NDArray[np.float32], *,
                 layout: str, tolerance: float = 1e-3) -> ParityReport:
    """Compare PyTorch and ONNX Runtime on ``batch``.

    The relative difference is taken against the largest magnitude of the reference output,
    so it reads as "share of the output's range", and the tolerance applies to it.
    ``end2end`` graphs are not compared element-wise (NMS makes them discontinuous).

    Raises:
        ExportError: ``layout`` is ``end2end``.
    """
    import onnxruntime as ort

    if layout == "end2end":
        raise ExportError("end2end graphs are compared by detections, not raw outputs; "
                          "use the fidelity report (box agreement) instead")
    reference = to_layout(torch_raw_output(weights, batch), layout)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: batch})[0]
    if got.shape != reference.shape:
        raise ExportError(f"{onnx_path}: output shape {got.shape} differs from PyTorch "
                          f"{reference.shape}")
    diff = np.abs(got - reference)
    if layout == "deepstream":  # the class column is an argmax: near-ties may flip
        diff = diff[..., :5]
        reference = reference[..., :5]
    max_abs = float(diff.max(initial=0.0))
    max_rel = max_abs / max(float(np.abs(reference).max(initial=0.0)), 1e-12)
    return ParityReport(layout, len(batch), max_abs, max_rel, tolerance, max_rel <= tolerance)
