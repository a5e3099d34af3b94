"""``detforge evaluate``: COCO metrics for a model, a results file, or several models.

Forms::

    detforge evaluate MODEL --data DS [--split val] [--json OUT] [--html OUT]
    detforge evaluate --predictions DT.json --gt GT.json [--json OUT] [--html OUT]
    detforge evaluate --compare A B C --data DS [--split val]
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from detforge.cli.ray_option import RAY_HELP, RayCommand
from detforge.core.errors import ConfigError
from detforge.core.imgsz import IMGSZ_HELP, parse_optional_imgsz

if TYPE_CHECKING:
    from detforge.evaluate.metrics import EvalResult

__all__ = ["evaluate", "parse_imgsz", "register"]


def parse_imgsz(text: str | None) -> tuple[int, int] | None:
    """``"640"`` -> (640, 640); ``"384,640"`` -> (384, 640) (height, width); None stays None.

    Raises:
        ConfigError: Not a size in the grammar of :func:`detforge.core.imgsz.parse_imgsz`.
    """
    return parse_optional_imgsz(text)


def _results(models: list[Path], data: Path | None, predictions: Path | None,
             gt: Path | None, compare: bool, split: str, opts: dict[str, Any],
             ) -> dict[str, EvalResult]:
    """Check the combination of arguments and run the one matching library call."""
    from detforge.evaluate import evaluate_files, evaluate_models

    if predictions is not None or gt is not None:
        if predictions is None or gt is None or models or data is not None:
            raise ConfigError("a results file is scored with --predictions DT.json --gt "
                              "GT.json alone (no MODEL, no --data)")
        return {predictions.name: evaluate_files(predictions, gt,
                                                 conf=opts["operating_conf"])}
    if not models:
        raise ConfigError("give a MODEL and --data DS, --compare A B ... --data DS, or "
                          "--predictions DT.json --gt GT.json")
    if len(models) > 1 and not compare:
        raise ConfigError(f"{len(models)} models given; add --compare to evaluate them in "
                          f"one table")
    if data is None:
        raise ConfigError("a model is evaluated on a dataset: add --data DS")
    from detforge.data import read_dataset

    return evaluate_models(models, read_dataset(data), split=None if split == "all" else split,
                           **opts)


def evaluate(
    models: Annotated[list[Path] | None, typer.Argument(
        help="Model file(s): .pt, .onnx, .engine or a run directory.", show_default=False)]
    = None,
    data: Annotated[Path | None, typer.Option("--data", help="Labelled dataset.")] = None,
    split: Annotated[str, typer.Option("--split", help="Split to evaluate; 'all' for every "
                                       "image.")] = "val",
    predictions: Annotated[Path | None, typer.Option(
        "--predictions", help="COCO results JSON to score (with --gt).")] = None,
    gt: Annotated[Path | None, typer.Option("--gt", help="COCO ground-truth JSON.")] = None,
    compare: Annotated[bool, typer.Option(
        "--compare", help="Evaluate several MODELs in one table.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics JSON.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write an HTML report.")]
    = None,
    imgsz: Annotated[str | None, typer.Option("--imgsz", help=IMGSZ_HELP + " For dynamic "
                                              "models.")] = None,
    conf: Annotated[float, typer.Option("--conf", help="Model confidence threshold.")] = 0.001,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU threshold.")] = 0.7,
    batch: Annotated[int, typer.Option("--batch", help="Images per inference call.")] = 8,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
    = "auto",
    operating_conf: Annotated[float, typer.Option(
        "--operating-conf", help="Confidence of P/R/F1 and the confusion matrix.")] = 0.25,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="[ADDRESS]", help=RAY_HELP + " The COCO evaluation runs as tasks, "
        "one group of categories each (for very large results files).")] = None,
) -> None:
    """COCO metrics (identical to pycocotools), per-class AP and P/R/F1, reports.

    Example: detforge evaluate --predictions dt.json --gt gt.json --html report.html
    """
    from detforge.core.atomic import atomic_write_json
    from detforge.evaluate import EvaluationWarning, write_html_report
    from detforge.evaluate import compare as compare_results
    from detforge.evaluate.compare import per_class_table

    opts = {"imgsz": parse_imgsz(imgsz), "conf": conf, "iou": iou, "batch": batch,
            "device": device, "operating_conf": operating_conf}
    with warnings.catch_warnings():  # the notes are printed below, once
        warnings.simplefilter("ignore", EvaluationWarning)
        with contextlib.nullcontext() if ray is None else _on_cluster(ray):
            results = _results(models or [], data, predictions, gt, compare, split, opts)
    typer.echo(compare_results(results).to_text(per_class=len(results) > 1))
    if len(results) == 1:
        res = next(iter(results.values()))
        typer.echo("\n" + per_class_table(res))
        typer.echo(f"\nF1-optimal confidence: {res.f1_optimal_conf:g}")
    for name, res in results.items():
        for note in res.notes:
            typer.echo(f"note ({name}): {note}", err=True)
    if json_out is not None:
        payload = (next(iter(results.values())).to_dict() if len(results) == 1 else
                   {"comparison": compare_results(results).to_dict(),
                    "models": {n: r.to_dict() for n, r in results.items()}})
        atomic_write_json(json_out, payload)
        typer.echo(f"metrics -> {json_out}")
    if html_out is not None:
        source = str(predictions) if predictions else ", ".join(map(str, models or []))
        write_html_report(html_out, results, subtitle=f"{source} on {gt or data}")
        typer.echo(f"report -> {html_out}")


def _on_cluster(address: str) -> contextlib.AbstractContextManager[Any]:
    from detforge.scale.evaluate import evaluation_on_cluster

    return evaluation_on_cluster(address)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the root ``detforge`` group."""
    app.command("evaluate", cls=RayCommand)(evaluate)
