"""Evaluation: COCO metrics identical to pycocotools, operating points, comparisons, reports.

Entry points:

* :func:`evaluate_predictions` -- a labelled :class:`~detforge.data.dataset.Dataset` and
  detections (``Detections`` per image, or a COCO results list);
* :func:`evaluate_files` -- any COCO results file against a COCO ground-truth file;
* :func:`evaluate_model` -- run a model through :mod:`detforge.runtime` on a dataset split;
* :func:`compare` -- several results in one table; :func:`write_html_report` -- an HTML page.

Every input is scored as pycocotools scores it, or refused in one line
(:mod:`detforge.evaluate.coco_input` lists the cases); what is worth knowing about an input
is warned as :class:`EvaluationWarning` and kept in ``EvalResult.notes``.
"""

from detforge.evaluate.coco_input import EvaluationWarning
from detforge.evaluate.compare import Comparison, compare
from detforge.evaluate.metrics import (
    STAT_NAMES,
    ClassMetrics,
    EvalResult,
    ImageScore,
    evaluate_coco,
    evaluate_files,
    evaluate_predictions,
)
from detforge.evaluate.model import evaluate_model, evaluate_models
from detforge.evaluate.report import render_html_report, write_html_report

__all__ = [
    "STAT_NAMES",
    "ClassMetrics",
    "Comparison",
    "EvalResult",
    "EvaluationWarning",
    "ImageScore",
    "compare",
    "evaluate_coco",
    "evaluate_files",
    "evaluate_model",
    "evaluate_models",
    "evaluate_predictions",
    "render_html_report",
    "write_html_report",
]
