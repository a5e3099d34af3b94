"""The export commands as library calls: export (+ check), quantize (+ gate), parity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from detforge.core.artefacts.targets import Target
from detforge.core.errors import ExportError
from detforge.data.formats import read_dataset
from detforge.export.calibration import calibration_files
from detforge.export.fidelity import Hop, append_hop, measure_hop
from detforge.export.onnx_export import ExportResult, export_onnx
from detforge.export.parity import ParityReport, check_parity, load_inputs
from detforge.export.quantize import (
    QuantizeResult,
    convert_fp16,
    model_only_ips,
    quantize_int8,
)

__all__ = ["ExportOutcome", "QuantizeOutcome", "export_model", "quantize_model"]


@dataclass
class ExportOutcome:
    """An export and, with ``check``, its parity and fidelity."""

    export: ExportResult
    parity: ParityReport | None = None
    hop: Hop | None = None


@dataclass
class QuantizeOutcome:
    """A quantised model with speed and accuracy before/after."""

    result: QuantizeResult | None
    ips_before: float
    ips_after: float
    hop: Hop | None
    written: bool
    notes: list[str] = field(default_factory=list)


def export_model(weights: Path, out: Path, *, imgsz: tuple[int, int] | None, batch: int | None,
                 layout: str, opset: int | str | None = "auto", targets: Sequence[Target] = (),
                 simplify: bool = True, check: bool = False, data: Path | None = None,
                 tolerance: float = 1e-3, check_images: int = 8) -> ExportOutcome:
    """Export; with ``check``, compare raw outputs and mAP against PyTorch on ``data``.

    Raises:
        ExportError: The parity check fails (the ONNX file is removed) or ``check`` lacks data.
    """
    if check and data is None:
        raise ExportError("--check needs --data DS to pick real images")
    result = export_onnx(weights, out, imgsz=imgsz, batch=batch, layout=layout, opset=opset,
                         targets=targets, simplify=simplify)
    outcome = ExportOutcome(result)
    if not check or data is None:
        return outcome
    dataset = read_dataset(data)
    files = calibration_files(dataset, check_images, split="val")
    parity = None
    if result.layout != "end2end":
        parity = check_parity(weights, out, load_inputs(files, result.imgsz),
                              layout=result.layout, tolerance=tolerance)
        if not parity.passed:
            out.unlink(missing_ok=True)
            raise ExportError(f"{out}: ONNX differs from PyTorch by {parity.max_rel_diff:.2e} of "
                              f"the output range (tolerance {tolerance:g}); removed. Try another "
                              f"--opset or --no-simplify")
    hop = measure_hop("export", weights, out, dataset, imgsz=result.imgsz,
                      max_abs_diff=None if parity is None else parity.max_abs_diff)
    append_hop(out, hop)
    outcome.parity, outcome.hop = parity, hop
    return outcome


def quantize_model(onnx_path: Path, out: Path, *, data: Path, precision: str = "int8",
                   calib_images: int = 256, method: str = "minmax", max_drop: float = 1.0,
                   force: bool = False, eval_images: int = 200,
                   flavour: str = "tensorrt") -> QuantizeOutcome:
    """Quantise, measure speed (model only, batch 8) and mAP before/after, and refuse to keep
    a model that loses more than ``max_drop`` mAP50-95 points unless ``force``.

    Raises:
        ExportError: The mAP drop exceeds ``max_drop`` and ``force`` is off (nothing is kept).
    """
    from detforge.runtime.metadata import read_onnx_meta

    meta = read_onnx_meta(onnx_path)
    dataset = read_dataset(data)
    files = calibration_files(dataset, calib_images, split="train")
    batches = load_inputs(files, meta.imgsz)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    if precision == "int8":
        result = quantize_int8(onnx_path, tmp, [b[None] for b in batches], method=method,
                               flavour=flavour)
    elif precision == "fp16":
        result = convert_fp16(onnx_path, tmp)
    else:
        raise ExportError(f"unknown precision {precision!r}; choose int8 or fp16")
    bench = batches[:8] if len(batches) >= 8 else batches.repeat(8 // len(batches) + 1, 0)[:8]
    notes: list[str] = []
    fixed = not meta.dynamic_batch
    if fixed:
        bench = bench[:1]
        notes.append("fixed-batch model: speed measured at its batch")
    before = model_only_ips(onnx_path, bench)
    after = model_only_ips(tmp, bench) if precision == "int8" else float("nan")
    if precision == "int8" and after < before and flavour == "tensorrt":
        notes.append("symmetric (TensorRT) INT8 is slower on this CPU; for CPU serving "
                     "quantize with --for cpu")
    if precision == "fp16":
        notes.append("FP16 is for GPU targets: CPU speed not measured")
    hop = measure_hop(f"quantize-{precision}", onnx_path, tmp, dataset, max_images=eval_images)
    hop = replace(hop, target=str(out))
    if hop.map_drop_pts > max_drop and not force:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{precision} loses {hop.map_drop_pts:.2f} mAP points (> --max-drop "
                          f"{max_drop}); nothing written. Try --method entropy or percentile, "
                          f"more --calib-images, or --force to keep it anyway")
    tmp.replace(out)
    append_hop(out, hop)
    return QuantizeOutcome(QuantizeResult(out, result.precision, result.calib_images,
                                          result.method, result.float_nodes, result.flavour),
                           before, after, hop, True, notes)


def summary(outcome: ExportOutcome | QuantizeOutcome) -> dict[str, Any]:
    """A JSON-friendly summary for the CLI."""
    if isinstance(outcome, ExportOutcome):
        d: dict[str, Any] = {"onnx": str(outcome.export.path), "layout": outcome.export.layout,
                             "imgsz": list(outcome.export.imgsz), "batch": outcome.export.batch,
                             "opset": outcome.export.opset, "notes": list(outcome.export.notes)}
        if outcome.parity:
            d["parity"] = outcome.parity.to_dict()
        if outcome.hop:
            d["fidelity"] = outcome.hop.to_dict()
        return d
    return {"model": str(outcome.result.path) if outcome.result else None,
            "ips_before": outcome.ips_before, "ips_after": outcome.ips_after,
            "speedup": outcome.ips_after / outcome.ips_before if outcome.ips_before else None,
            "fidelity": outcome.hop.to_dict() if outcome.hop else None, "notes": outcome.notes}
