"""``detforge export``, ``detforge quantize`` and ``detforge parity``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from detforge.core.errors import ConfigError
from detforge.core.imgsz import parse_optional_imgsz


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--batch {text!r} must be 'dynamic' or a positive integer")
    return int(text)


def export(
    model: Annotated[Path, typer.Argument(help="Trained weights (.pt).")],
    out: Annotated[Path, typer.Option(help="ONNX file to write.")],
    imgsz: Annotated[str | None, typer.Option(
        help="Input size N or H,W (e.g. 384,640); default: the trained input of an RT-DETR "
             "or rect run, else 640.")] = None,
    batch: Annotated[str, typer.Option(help="'dynamic' or a fixed batch size.")] = "dynamic",
    layout: Annotated[str, typer.Option(
        help="auto (rtdetr for RT-DETR, else raw), raw, deepstream, end2end or rtdetr.")]
    = "auto",
    opset: Annotated[str, typer.Option(
        help="ONNX opset, or auto: the highest every --target's TensorRT imports "
             "(17; 13 for Jetson Nano/TX2).")] = "auto",
    target: Annotated[list[str] | None, typer.Option(
        help="Target device the model is for (repeat); decides --opset auto.")] = None,
    simplify: Annotated[bool, typer.Option(help="Simplify the graph (onnxslim).")] = True,
    check: Annotated[bool, typer.Option(help="Compare with PyTorch on --data.")] = False,
    data: Annotated[Path | None, typer.Option(help="Dataset for --check.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Export weights to ONNX in the layout a consumer needs, with metadata inside.

    Example: detforge export best.pt --out model.onnx --imgsz 384,640 --layout deepstream
    --target jetson-nano
    """
    from detforge.core.artefacts.targets import get_target
    from detforge.core.storage import storage_errors, tree_size
    from detforge.export.api import export_model, summary

    # an FP32 ONNX is about twice Ultralytics' FP16 .pt
    with storage_errors(out, needed=lambda: 2 * tree_size(model)):
        outcome = export_model(model, out, imgsz=parse_optional_imgsz(imgsz),
                               batch=_batch(batch),
                               layout=layout, opset=opset,
                               targets=[get_target(t) for t in target or []],
                               simplify=simplify, check=check, data=data)
    s = summary(outcome)
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    typer.echo(f"wrote {s['onnx']} (layout {s['layout']}, imgsz {s['imgsz']}, "
               f"batch {s['batch'] or 'dynamic'}, opset {s['opset']})")
    for note in s["notes"]:
        typer.echo(f"note: {note}")
    if "parity" in s:
        p = s["parity"]
        typer.echo(f"parity: max abs diff {p['max_abs_diff']:.2e}, rel {p['max_rel_diff']:.2e} "
                   f"-> {'PASS' if p['passed'] else 'FAIL'}")
    if "fidelity" in s:
        f = s["fidelity"]
        typer.echo(f"mAP50-95 {f['map50_95_before']:.4f} -> {f['map50_95_after']:.4f}, "
                   f"box agreement {f['box_agreement']:.3f}")


def quantize(
    model: Annotated[Path, typer.Argument(help="Float ONNX model from `detforge export`.")],
    data: Annotated[Path, typer.Option(help="Dataset for calibration and the mAP check.")],
    out: Annotated[Path, typer.Option(help="Quantised ONNX file to write.")],
    precision: Annotated[str, typer.Option(help="int8 or fp16.")] = "int8",
    calib_images: Annotated[int, typer.Option(help="Calibration images.")] = 256,
    method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    max_drop: Annotated[float, typer.Option(help="Largest mAP50-95 loss (points).")] = 1.0,
    force: Annotated[bool, typer.Option(help="Keep the model even past --max-drop.")] = False,
    for_: Annotated[str, typer.Option("--for", help="INT8 flavour: tensorrt (symmetric) or cpu "
                                      "(U8 activations, fast in ONNX Runtime).")] = "tensorrt",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Quantise to INT8 Q/DQ (head kept float) or FP16; report speed and mAP before/after.

    Example: detforge quantize model.onnx --data ds --out model_int8.onnx
    """
    from detforge.core.storage import storage_errors, tree_size
    from detforge.export.api import quantize_model, summary

    with storage_errors(out, needed=lambda: tree_size(model)):
        outcome = quantize_model(model, out, data=data, precision=precision,
                                 calib_images=calib_images, method=method, max_drop=max_drop,
                                 force=force, flavour=for_)
    s = summary(outcome)
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    f = s["fidelity"]
    typer.echo(f"wrote {s['model']}")
    typer.echo(f"speed (model only, CPU): {s['ips_before']:.1f} -> {s['ips_after']:.1f} img/s")
    typer.echo(f"mAP50-95 {f['map50_95_before']:.4f} -> {f['map50_95_after']:.4f} "
               f"({-f['map_drop_pts']:+.2f} pts), box agreement {f['box_agreement']:.3f}")
    for note in s["notes"]:
        typer.echo(f"note: {note}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("quantize")(quantize)
