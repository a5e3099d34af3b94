"""Parity between a PyTorch model and its ONNX export, on the same preprocessed inputs.

YOLO raw outputs are compared element-wise (max absolute and relative difference), after
bringing the PyTorch head output into the ONNX file's layout; RT-DETR's top-k rows are
matched row to row (:func:`match_rows`: near-equal scores may come in either order);
``end2end`` graphs (NMS inside) are compared by box agreement instead, since NMS is
discontinuous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ExportError

__all__ = ["LOW_SCORE", "ParityReport", "RowMatch", "check_parity", "load_inputs",
           "match_rows", "rtdetr_pixels", "to_layout"]

LOW_SCORE = 0.001
"""RT-DETR rows scoring below this are not compared."""
_EDGE = 1e-3
"""Rows within this score of the other list's lowest row may be outside it (top-k edge)."""


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


@dataclass(frozen=True)
class RowMatch:
    """RT-DETR rows of two outputs matched to each other.

    Attributes:
        rows: Rows compared (each file's rows scoring >= :data:`LOW_SCORE`, away from the
            other list's top-k edge).
        box: Largest box coordinate difference of a row and its match, in pixels.
        score: Largest score difference of a row and its match.
        unmatched: Rows with no row of the same class in the other output.
    """

    rows: int
    box: float
    score: float
    unmatched: int


def match_rows(ref: NDArray[np.float32], got: NDArray[np.float32]) -> RowMatch:
    """Match ``[B, K, 6]`` RT-DETR rows (x1, y1, x2, y2, score, class) both ways.

    A row counts when it scores >= :data:`LOW_SCORE` and clearly above the other output's
    lowest row (rows at the end of one top-k list may fall just outside the other's); it is
    matched to the row of the same class in the other output whose box is nearest.

    Example:
        >>> a = np.array([[[0, 0, 9, 9, 0.9, 0], [1, 1, 5, 5, 0.5, 1], [0, 0, 1, 1, 0, 0]]])
        >>> b = a[:, [1, 0, 2]] + np.array([0.25, 0, 0, 0, 0, 0])
        >>> match_rows(a, b)
        RowMatch(rows=4, box=0.25, score=0.0, unmatched=0)
    """
    box = score = 0.0
    rows = unmatched = 0
    for r, g in zip(np.asarray(ref, np.float64), np.asarray(got, np.float64), strict=True):
        for x, y in ((r, g), (g, r)):
            edge = float(y[:, 4].min(initial=0.0)) + _EDGE
            keep = x[(x[:, 4] >= LOW_SCORE) & (x[:, 4] > edge)]
            rows += len(keep)
            if not len(keep):
                continue
            dist = np.abs(keep[:, None, :4] - y[None, :, :4]).max(-1)
            dist[keep[:, 5, None] != y[None, :, 5]] = np.inf
            j = dist.argmin(1)
            best = dist[np.arange(len(keep)), j]
            found = np.isfinite(best)
            unmatched += int((~found).sum())
            if found.any():
                box = max(box, float(best[found].max()))
                score = max(score, float(np.abs(keep[found, 4] - y[j[found], 4]).max()))
    return RowMatch(rows, box, score, unmatched)


def rtdetr_pixels(out: NDArray[np.float32], hw: tuple[int, int]) -> NDArray[np.float32]:
    """Ultralytics' RT-DETR rows (normalised cx, cy, w, h, score, class) as detforge's
    ``rtdetr`` rows (x1, y1, x2, y2 in pixels of an ``hw`` input, score, class)."""
    h, w = hw
    scale = np.array([w, h], np.float32)
    xy, wh = out[..., 0:2] * scale, out[..., 2:4] * scale
    return np.concatenate([xy - wh / 2, xy + wh / 2, out[..., 4:6]], axis=-1).astype(np.float32)


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
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: batch})[0]
    if layout == "rtdetr":
        reference = rtdetr_pixels(torch_raw_output(weights, batch),
                                  (int(batch.shape[2]), int(batch.shape[3])))
        m = match_rows(reference, got)
        rel = m.box / max(float(np.abs(reference[..., :4]).max(initial=0.0)), 1e-12)
        return ParityReport(layout, len(batch), m.box, rel, tolerance,
                            rel <= tolerance and m.score <= tolerance and not m.unmatched)
    reference = to_layout(torch_raw_output(weights, batch), layout)
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
