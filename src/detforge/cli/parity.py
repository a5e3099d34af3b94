"""``detforge parity A B --data DS``: do two files of one detector agree?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from detforge.core.imgsz import parse_optional_imgsz

__all__ = ["parity", "register"]


def parity(
    a: Annotated[Path, typer.Argument(help="Reference model (.pt, .onnx or .engine).")],
    b: Annotated[Path, typer.Argument(help="Model to check against it.")],
    data: Annotated[Path, typer.Option(help="Dataset whose images and labels are used.")],
    imgsz: Annotated[str | None, typer.Option(
        help="Input size N or H,W (default: the ONNX file's).")] = None,
    tolerance: Annotated[float | None, typer.Option(
        help="Largest relative raw-output difference (default: 1e-3 float32, 1e-2 FP16, "
             "unchecked INT8).")] = None,
    max_drop: Annotated[float, typer.Option(
        help="Largest mAP50-95 loss of B against A, in points.")] = 1.0,
    box_tolerance: Annotated[float | None, typer.Option(
        help="RT-DETR: largest box difference of matched rows in pixels (default: 1 "
             "float32, 2 FP16, unchecked INT8).")] = None,
    score_tolerance: Annotated[float | None, typer.Option(
        help="RT-DETR: largest score difference of matched rows (default: 1e-3 float32, "
             "1e-2 FP16, unchecked INT8).")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        help="Smallest box agreement over each image's best 100 boxes scoring >= 0.001 "
             "(default: 0.95 float32, 0.8 FP16, unchecked INT8).")] = None,
    images: Annotated[int, typer.Option(help="Most images for the mAP comparison.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare raw outputs (when comparable), mAP and box agreement; exit 1 past a limit.

    Example: detforge parity best.pt model.onnx --data ds
    """
    from detforge.export.model_parity import compare_models

    res = compare_models(a, b, data=data, imgsz=parse_optional_imgsz(imgsz),
                         tolerance=tolerance, max_drop=max_drop, eval_images=images,
                         box_tolerance=box_tolerance,
                         score_tolerance=score_tolerance, min_agreement=min_agreement)
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2))
    else:
        raw = res.raw
        if raw is not None and raw.rows is not None:
            limit = ("unchecked" if res.box_tolerance is None else
                     f"tolerance {res.box_tolerance:g} px, {res.score_tolerance:g}")
            typer.echo(f"raw ({raw.layout}, {raw.images} images, {raw.rows} rows >= 0.001): "
                       f"box diff {raw.max_abs_diff:.3g} px, score diff "
                       f"{raw.score_diff or 0.0:.3g}, {raw.unmatched} unmatched ({limit})")
        elif raw is not None:
            limit = "unchecked" if res.tolerance is None else f"tolerance {res.tolerance:g}"
            typer.echo(f"raw ({raw.layout}, {raw.images} images): max abs diff "
                       f"{raw.max_abs_diff:.3g}, rel {raw.max_rel_diff:.2e} ({limit})")
        else:
            typer.echo(f"raw: not compared ({res.raw_note})")
        h = res.hop
        typer.echo(f"mAP50-95 {h.map50_95_before:.4f} -> {h.map50_95_after:.4f} "
                   f"({-h.map_drop_pts:+.2f} pts), mAP50 {h.map50_before:.4f} -> "
                   f"{h.map50_after:.4f}, box agreement {h.box_agreement:.3f} "
                   f"({h.images} images)")
        if h.low_agreement is not None:
            typer.echo(f"low threshold: box agreement {h.low_agreement:.3f} over "
                       f"{h.low_boxes} boxes (best 100 per image scoring >= 0.001)")
        for failure in res.failures:
            typer.echo(f"FAIL: {failure}", err=True)
        typer.echo("PASS" if res.passed else "FAIL")
    if not res.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``parity`` to the root app."""
    app.command("parity")(parity)
