"""Self-contained HTML evaluation report: tables and base64 matplotlib plots, no URLs.

Sections: summary (the 12 COCO numbers, or a comparison of several results), per-class
metrics, PR curves at IoU 0.5, F1 versus confidence, confusion matrix heatmap and the worst
images. The page helpers come from :mod:`detforge.data.report`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detforge.core.errors import ConfigError
from detforge.data.report import (
    Cell,
    Section,
    figure_to_data_uri,
    html_image,
    html_table,
    new_figure,
    render_page,
    write_page,
)
from detforge.evaluate.compare import compare, format_cell
from detforge.evaluate.metrics import STAT_NAMES, EvalResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["render_html_report", "write_html_report"]

_MAX_CURVES = 20  # classes drawn per plot; more become unreadable


def _png(fig: Figure, alt: str) -> str:
    return html_image(figure_to_data_uri(fig), alt)


def _summary(results: Mapping[str, EvalResult]) -> Section:
    if len(results) == 1:
        res = next(iter(results.values()))
        rows = [[n, format_cell(v)] for n, v in zip(STAT_NAMES, res.stats, strict=True)]
        rows += [["images", str(res.num_images)], ["detections", str(res.num_detections)],
                 ["operating confidence", f"{res.conf:g}"],
                 ["F1-optimal confidence", f"{res.f1_optimal_conf:g}"]]
        return Section("Summary (COCO bbox)", html_table(["metric", "value"], rows))
    comp = compare(results)
    return Section("Comparison (COCO bbox)", html_table(comp.headers(), comp.rows()))


def _per_class(name: str, res: EvalResult) -> Section:
    rows: list[list[Cell]] = [
        [c, format_cell(m.ap), format_cell(m.ap50), format_cell(m.ap75),
         format_cell(m.precision), format_cell(m.recall), format_cell(m.f1), m.support,
         m.detections] for c, m in res.per_class.items()]
    head = ["class", "AP", "AP50", "AP75", f"P@{res.conf:g}", f"R@{res.conf:g}",
            f"F1@{res.conf:g}", "support", f"detections@{res.conf:g}"]
    return Section(f"Per class: {name}", html_table(head, rows))


def _pr_curves(name: str, res: EvalResult) -> Section:
    fig = new_figure(6.4, 4.2)
    ax = fig.subplots()
    for i, c in enumerate(res.class_names[:_MAX_CURVES]):
        if res.per_class[c].support > 0:
            ax.plot(res.recall_thresholds, res.pr_curves[i],
                    label=f"{c} (AP50 {format_cell(res.per_class[c].ap50)})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall at IoU 0.5 (COCO interpolation)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="lower left")
    return Section(f"PR curves: {name}", _png(fig, "precision-recall curves"))


def _f1_curves(name: str, res: EvalResult) -> Section:
    fig = new_figure(6.4, 4.2)
    ax = fig.subplots()
    has_gt = [i for i, c in enumerate(res.class_names) if res.per_class[c].support > 0]
    for i in has_gt[:_MAX_CURVES]:
        ax.plot(res.conf_grid, res.f1_curves[i], lw=1, alpha=0.7, label=res.class_names[i])
    if has_gt:
        mean = res.f1_curves[has_gt].mean(axis=0)
        ax.plot(res.conf_grid, mean, lw=2.5, color="black",
                label=f"mean (best at conf {res.f1_optimal_conf:g})")
        ax.axvline(res.f1_optimal_conf, color="black", ls="--", lw=1)
    ax.set(xlabel="confidence", ylabel="F1 at IoU 0.5", xlim=(0, 1), ylim=(0, 1.02),
           title="F1 versus confidence")
    ax.grid(alpha=0.3)
    if has_gt:
        ax.legend(fontsize="small")
    return Section(f"F1 versus confidence: {name}", _png(fig, "F1 versus confidence"))


def _confusion(name: str, res: EvalResult) -> Section:
    labels = [*res.class_names, "background"]
    m = res.confusion_matrix.astype(np.float64)
    size = min(3.0 + 0.45 * len(labels), 14.0)
    fig = new_figure(size, size * 0.85)
    ax = fig.subplots()
    # Normalise per true class (column), so each column reads as "where did this class go".
    norm = m / np.maximum(m.sum(axis=0, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="true", ylabel="predicted",
           title=f"Confusion matrix (IoU 0.5, conf {res.conf:g}; counts, colour per column)")
    if len(labels) <= 25:
        for (i, j), v in np.ndenumerate(res.confusion_matrix):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize="x-small",
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return Section(f"Confusion matrix: {name}", _png(fig, "confusion matrix"))


def _worst(name: str, res: EvalResult) -> Section:
    if not res.worst_images:
        return Section(f"Worst images: {name}", "<p>Every image is matched perfectly.</p>")
    rows: list[list[Cell]] = [
        [w.file or str(w.image_id), w.image_id, w.tp, w.fp, w.fn, w.f1]
        for w in res.worst_images]
    note = (f"<p>Lowest F1 at IoU 0.5 and confidence {res.conf:g} "
            f"(ties: most errors first).</p>")
    return Section(f"Worst images: {name}",
                   note + html_table(["image", "id", "TP", "FP", "FN", "F1"], rows))


def render_html_report(results: Mapping[str, EvalResult] | EvalResult, *,
                       title: str = "detforge evaluation", subtitle: str = "") -> str:
    """The evaluation report as one self-contained HTML document.

    Args:
        results: One result, or several by name (each gets its own detail sections).
        title: Page title.
        subtitle: Line under the title (e.g. the model and dataset).

    Returns:
        The HTML text; it embeds its images and references no URL.

    Raises:
        ConfigError: ``results`` is an empty mapping.

    Example:
        >>> page = render_html_report(result, subtitle="model.onnx on val")  # doctest: +SKIP
    """
    named = {"result": results} if isinstance(results, EvalResult) else dict(results)
    if not named:
        raise ConfigError("an evaluation report needs at least one result")
    sections = [_summary(named)]
    for name, res in named.items():
        sections += [_per_class(name, res), _pr_curves(name, res), _f1_curves(name, res),
                     _confusion(name, res), _worst(name, res)]
    return render_page(title, sections, subtitle=subtitle)


def write_html_report(path: str | Path, results: Mapping[str, EvalResult] | EvalResult, *,
                      title: str = "detforge evaluation", subtitle: str = "") -> Path:
    """Write :func:`render_html_report` to ``path`` atomically.

    Args:
        path: Destination ``.html`` file.
        results: One result, or several by name.
        title: Page title.
        subtitle: Line under the title.

    Returns:
        The path written.

    Raises:
        ConfigError: ``results`` is an empty mapping.
    """
    return write_page(path, render_html_report(results, title=title, subtitle=subtitle))
