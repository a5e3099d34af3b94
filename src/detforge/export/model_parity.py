"""Parity between two files of the same detector (``detforge parity A B --data DS``).

Any two of ``.pt`` (Ultralytics), ``.onnx`` (float, FP16 or INT8 Q/DQ) and TensorRT
``.engine`` files are compared in two ways:

* **raw outputs** on the same letterboxed images, when both outputs are comparable:

  - YOLO ``.pt`` and ``.onnx`` in the ``raw`` or ``deepstream`` layout, brought to one layout
    the way :func:`detforge.export.parity.check_parity` does: max absolute difference, and
    the same relative to the largest magnitude of A's output;
  - RT-DETR ``.pt`` and ``.onnx`` (``rtdetr``, ``rtdetr-normalized``): both brought to x1,
    y1, x2, y2 pixels, score, class; every row scoring >= 0.001 in either file is matched to
    the row of the same class with the nearest box in the other (top-k rows of near-equal
    scores come in either order), giving the largest box difference in pixels, the largest
    score difference and the rows with no counterpart;

  ``end2end`` graphs (NMS is discontinuous) and engines are compared by detections only;
* **detections**, always: mAP of both through the same evaluator, the box agreement at the
  operating threshold and over each image's best 100 boxes scoring >= 0.001
  (:func:`detforge.export.fidelity.measure_hop`).

The check fails when the relative raw difference exceeds ``tolerance`` (RT-DETR: a box moves
more than ``box_tolerance`` pixels, a score more than ``score_tolerance``, or a row has no
counterpart), when B loses more than ``max_drop`` mAP50-95 points, when the low-threshold box
agreement is below ``min_agreement``, and when there is nothing to compare at all (no raw
comparison and no box scoring 0.001 in either file: two empty outputs never pass). Default
limits depend on the precisions (:func:`default_tolerance`, :func:`default_limits`): float32
files must agree closely, FP16 loosely, and INT8 raw outputs differ by design (mAP and box
agreement decide).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ConfigError
from detforge.data.dataset import Dataset
from detforge.export.fidelity import LOW_CONF, LOW_TOP, Hop

__all__ = ["ModelParity", "RawDiff", "compare_models", "default_limits", "default_tolerance"]

_KINDS = {".pt": "pt", ".onnx": "onnx", ".engine": "engine", ".plan": "engine"}
_RTDETR = ("rtdetr", "rtdetr-normalized")
_COMPARABLE = ("raw", "deepstream", *_RTDETR)


@dataclass(frozen=True)
class RawDiff:
    """Element-wise difference of two raw outputs on the same batch (A is the reference)."""

    layout: str
    images: int
    shape: tuple[int, ...]
    max_abs_diff: float
    max_rel_diff: float
    rows: int | None = None
    """RT-DETR: rows compared (scoring >= 0.001 in either file); None for YOLO outputs."""
    score_diff: float | None = None
    """RT-DETR: largest score difference of matched rows."""
    unmatched: int = 0
    """RT-DETR: rows with no row of the same class in the other file."""


@dataclass(frozen=True)
class _Info:
    path: Path
    kind: str
    layout: str
    precision: str
    imgsz: tuple[int, int] | None


@dataclass(frozen=True)
class ModelParity:
    """What ``detforge parity`` measured, and whether it passed.

    Attributes:
        a: The reference model.
        b: The model compared with it.
        imgsz: Input ``(height, width)`` both ran at (None: each at its own size).
        raw: The raw-output difference, or None when the outputs are not comparable.
        raw_note: Why raw outputs were not compared (empty when they were).
        hop: mAP of both and their box agreement on the dataset.
        tolerance: Largest relative raw difference allowed (None: not checked).
        max_drop: Largest mAP50-95 loss of B against A allowed, in points.
        box_tolerance: RT-DETR: largest box difference of matched rows, in pixels (None:
            not checked).
        score_tolerance: RT-DETR: largest score difference of matched rows (None: not
            checked).
        min_agreement: Smallest low-threshold box agreement (None: not checked).
    """

    a: Path
    b: Path
    imgsz: tuple[int, int] | None
    raw: RawDiff | None
    raw_note: str
    hop: Hop
    tolerance: float | None
    max_drop: float
    box_tolerance: float | None = None
    score_tolerance: float | None = None
    min_agreement: float | None = None

    @property
    def failures(self) -> list[str]:
        """One sentence per check that failed (empty when the pair passes)."""
        out = self._raw_failures()
        if self.raw is None or self.raw.rows == 0:
            if self.hop.low_boxes == 0:
                out.append(f"nothing to compare: neither model detects anything scoring 0.001 "
                           f"or more on {self.hop.images} images"
                           + (", and their raw outputs are not comparable" if self.raw is None
                              else "") + "; two empty outputs are no evidence of parity. Check "
                           "with trained weights or other images")
        if not self.hop.map_drop_pts <= self.max_drop:
            out.append(f"B loses {self.hop.map_drop_pts:.2f} mAP50-95 points against A "
                       f"({self.hop.map50_95_before:.4f} -> {self.hop.map50_95_after:.4f}), past "
                       f"--max-drop {self.max_drop:g}")
        low = self.hop.low_agreement
        if self.min_agreement is not None and low is not None and not low >= self.min_agreement:
            out.append(f"box agreement over the best {LOW_TOP} boxes scoring >= {LOW_CONF:g} is "
                       f"{low:.3f} ({self.hop.low_boxes} boxes), below --min-agreement "
                       f"{self.min_agreement:g}")
        return out

    def _raw_failures(self) -> list[str]:
        raw = self.raw
        if raw is None:
            return []
        out = []
        if raw.rows is None:
            if self.tolerance is not None and not raw.max_rel_diff <= self.tolerance:
                out.append(f"raw outputs differ by {raw.max_rel_diff:.2e} of A's output range "
                           f"(max abs {raw.max_abs_diff:.3g}), past --tolerance "
                           f"{self.tolerance:g}")
            return out
        if self.box_tolerance is not None and not raw.max_abs_diff <= self.box_tolerance:
            out.append(f"matched rows' boxes differ by {raw.max_abs_diff:.3g} px, past "
                       f"--box-tolerance {self.box_tolerance:g} px")
        if self.score_tolerance is not None and raw.score_diff is not None \
                and not raw.score_diff <= self.score_tolerance:
            out.append(f"matched rows' scores differ by {raw.score_diff:.3g}, past "
                       f"--score-tolerance {self.score_tolerance:g}")
        if self.box_tolerance is not None and raw.unmatched:
            out.append(f"{raw.unmatched} rows scoring >= {LOW_CONF:g} have no row of the same "
                       f"class in the other file")
        return out

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (paths as strings)."""
        return {"a": str(self.a), "b": str(self.b),
                "imgsz": None if self.imgsz is None else list(self.imgsz),
                "raw": None if self.raw is None else asdict(self.raw) | {
                    "shape": list(self.raw.shape)},
                "raw_note": self.raw_note, "fidelity": self.hop.to_dict(),
                "tolerance": self.tolerance, "max_drop": self.max_drop,
                "box_tolerance": self.box_tolerance, "score_tolerance": self.score_tolerance,
                "min_agreement": self.min_agreement,
                "passed": self.passed, "failures": self.failures}


def default_tolerance(precision_a: str, precision_b: str) -> float | None:
    """The relative raw-output tolerance for two precisions (see the module docstring).

    Example:
        >>> default_tolerance("fp32", "fp16"), default_tolerance("fp32", "int8")
        (0.01, None)
    """
    precisions = {precision_a, precision_b}
    if "int8" in precisions:
        return None
    return 1e-2 if "fp16" in precisions else 1e-3


def default_limits(precision_a: str, precision_b: str,
                   ) -> tuple[float | None, float | None, float | None]:
    """(box pixels, score, low-threshold box agreement) limits for two precisions: float32
    files agree within 1 px and 1e-3 and on 95 % of their low-threshold boxes; FP16 within
    2 px, 1e-2 and 80 %; INT8 is judged by mAP (None: unchecked).

    Example:
        >>> default_limits("fp32", "fp32")
        (1.0, 0.001, 0.95)
    """
    precisions = {precision_a, precision_b}
    if "int8" in precisions:
        return None, None, None
    return (2.0, 1e-2, 0.8) if "fp16" in precisions else (1.0, 1e-3, 0.95)


def _info(path: Path) -> _Info:
    if not path.is_file():
        raise ConfigError(f"{path}: no such model file; give a .pt, .onnx or .engine file")
    kind = _KINDS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: unknown model type {path.suffix!r}; parity compares .pt, "
                          ".onnx and .engine files")
    if kind != "onnx":  # a .pt takes the other file's layout (YOLO or RT-DETR)
        return _Info(path, kind, kind, "fp32" if kind == "pt" else "engine", None)
    from detforge.runtime.metadata import read_onnx_meta

    meta = read_onnx_meta(path)
    return _Info(path, kind, meta.layout, meta.precision, meta.imgsz)


def _raw_note(a: _Info, b: _Info) -> str:
    """Why the raw outputs of ``a`` and ``b`` cannot be compared ("" when they can)."""
    for m in (a, b):
        if m.kind == "engine":
            return f"{m.path.name} is a TensorRT engine: compared by detections only"
        if m.kind == "onnx" and m.layout not in _COMPARABLE:
            return (f"{m.path.name} has the {m.layout} layout (NMS in the graph): compared by "
                    "detections only")
    if a.kind == b.kind == "onnx" and a.layout != b.layout \
            and not (a.layout in _RTDETR and b.layout in _RTDETR):
        return f"layouts differ ({a.layout} vs {b.layout}): compared by detections only"
    if a.imgsz and b.imgsz and a.imgsz != b.imgsz:
        return (f"input sizes differ ({a.imgsz[0]}x{a.imgsz[1]} vs {b.imgsz[0]}x{b.imgsz[1]}): "
                "compared by detections only")
    return ""


def _raw_output(m: _Info, batch: NDArray[np.float32], layout: str) -> NDArray[np.float32]:
    """``m``'s first output on ``batch`` in ``layout`` (ONNX fixed batches run in chunks);
    RT-DETR outputs come as x1, y1, x2, y2 pixels, score, class."""
    from detforge.export.parity import rtdetr_pixels, to_layout, torch_raw_output

    hw = (int(batch.shape[2]), int(batch.shape[3]))
    if m.kind == "pt":
        out = torch_raw_output(m.path, batch)
        if layout in _RTDETR:
            return rtdetr_pixels(out, hw)
        return to_layout(out, layout)
    import onnxruntime as ort

    session = ort.InferenceSession(str(m.path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    step = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else len(batch)
    chunks = []
    for start in range(0, len(batch), step):
        chunk = batch[start:start + step]
        pad = step - len(chunk)
        if pad:  # a fixed-batch graph: fill the last chunk with copies, drop their rows
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out = np.asarray(session.run(None, {inp.name: chunk})[0], np.float32)
        chunks.append(out[:step - pad])
    out = np.concatenate(chunks)
    return rtdetr_pixels(out, hw) if m.layout == "rtdetr-normalized" else out


def _raw_diff(a: _Info, b: _Info, batch: NDArray[np.float32]) -> RawDiff | str:
    layout = b.layout if a.kind == "pt" else a.layout
    if layout == "pt":
        layout = "raw"
    ref, got = _raw_output(a, batch, layout), _raw_output(b, batch, layout)
    if layout in _RTDETR:
        return _rows_diff(ref, got)
    if ref.shape != got.shape:
        return (f"raw output shapes differ ({list(ref.shape)} vs {list(got.shape)}): not the "
                "same detector (class count or input size); compared by detections only")
    diff = np.abs(got.astype(np.float64) - ref)
    if layout == "deepstream":  # the class column is an argmax: near-ties may flip
        diff, ref = diff[..., :5], ref[..., :5]
    max_abs = float(diff.max(initial=0.0))
    max_rel = max_abs / max(float(np.abs(ref).max(initial=0.0)), 1e-12)
    return RawDiff(layout, len(batch), tuple(int(s) for s in got.shape), max_abs, max_rel)


def _rows_diff(ref: NDArray[np.float32], got: NDArray[np.float32]) -> RawDiff | str:
    """RT-DETR rows matched across two top-k outputs (:func:`.parity.match_rows`)."""
    from detforge.export.parity import match_rows

    if ref.ndim != 3 or got.ndim != 3 or ref.shape[0] != got.shape[0] \
            or ref.shape[2] != 6 or got.shape[2] != 6:
        return (f"raw output shapes differ ({list(ref.shape)} vs {list(got.shape)}): not the "
                "same detector; compared by detections only")
    m = match_rows(ref, got)
    scale = max(float(np.abs(ref[..., :4]).max(initial=0.0)), 1e-12)
    return RawDiff("rtdetr", len(ref), tuple(int(s) for s in got.shape), m.box, m.box / scale,
                   m.rows, m.score, m.unmatched)


def compare_models(a: str | Path, b: str | Path, *, data: str | Path | Dataset,
                   imgsz: tuple[int, int] | None = None, tolerance: float | None = None,
                   max_drop: float = 1.0, raw_images: int = 8, eval_images: int = 200,
                   split: str | None = "val", box_tolerance: float | None = None,
                   score_tolerance: float | None = None,
                   min_agreement: float | None = None) -> ModelParity:
    """Compare two files of one detector: raw outputs when comparable, mAP and boxes always.

    Args:
        a: The reference model (``.pt``, ``.onnx`` or ``.engine``).
        b: The model to check against it.
        data: A dataset folder (any supported format) or a loaded dataset.
        imgsz: Input ``(height, width)``; default: the ONNX file's own size (``.pt`` files
            then run at it too).
        tolerance: Largest relative raw difference; None picks :func:`default_tolerance`.
        max_drop: Largest mAP50-95 loss of B against A, in points.
        raw_images: Images of the raw-output comparison.
        eval_images: Most images of the mAP comparison (spread evenly over ``split``).
        split: Dataset split the images come from (all images when it is empty).
        box_tolerance: RT-DETR: largest box difference in pixels; None picks
            :func:`default_limits`.
        score_tolerance: RT-DETR: largest score difference; None picks the default.
        min_agreement: Smallest low-threshold box agreement; None picks the default.

    Returns:
        The measurements; ``passed`` and ``failures`` say how they compare with the limits.

    Raises:
        ConfigError: A file is missing or of an unknown type, or a limit is negative.
        DatasetError: The dataset cannot be read or has no image files.
        BackendError: A model cannot be loaded or run.

    Example:
        >>> res = compare_models("best.pt", "model.onnx", data="ds")  # doctest: +SKIP
        >>> res.passed, res.raw.max_abs_diff, res.hop.box_agreement  # doctest: +SKIP
        (True, 3.1e-05, 1.0)
    """
    from detforge.data.formats import read_dataset
    from detforge.export.calibration import calibration_files
    from detforge.export.fidelity import measure_hop
    from detforge.export.parity import load_inputs

    for name, value in (("--tolerance", tolerance), ("--box-tolerance", box_tolerance),
                        ("--score-tolerance", score_tolerance)):
        if value is not None and not value >= 0:
            raise ConfigError(f"{name} {value} must be zero or positive")
    if min_agreement is not None and not 0 <= min_agreement <= 1:
        raise ConfigError(f"--min-agreement {min_agreement} must lie in [0, 1]")
    if not max_drop >= 0:
        raise ConfigError(f"--max-drop {max_drop} must be zero or positive (points of mAP50-95)")
    if raw_images < 1 or eval_images < 1:
        raise ConfigError("raw_images and eval_images must be at least 1")
    ia, ib = _info(Path(a)), _info(Path(b))
    dataset = data if isinstance(data, Dataset) else read_dataset(data)
    size = imgsz or ia.imgsz or ib.imgsz
    if tolerance is None:
        tolerance = default_tolerance(ia.precision, ib.precision)
    limits = default_limits(ia.precision, ib.precision)
    box_tolerance = limits[0] if box_tolerance is None else box_tolerance
    score_tolerance = limits[1] if score_tolerance is None else score_tolerance
    min_agreement = limits[2] if min_agreement is None else min_agreement
    note = _raw_note(ia, ib)
    raw: RawDiff | None = None
    if not note:
        files = calibration_files(dataset, raw_images, split=split)
        diff = _raw_diff(ia, ib, load_inputs(files, size or (640, 640)))
        raw, note = (diff, "") if isinstance(diff, RawDiff) else (None, diff)
    hop = measure_hop("parity", ia.path, ib.path, dataset, split=split, max_images=eval_images,
                      imgsz=size, max_abs_diff=None if raw is None else raw.max_abs_diff)
    return ModelParity(ia.path, ib.path, size, raw, note, hop, tolerance, max_drop,
                       box_tolerance, score_tolerance, min_agreement)
