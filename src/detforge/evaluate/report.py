"""Self-contained HTML evaluation report: tables and base64 matplotlib plots, no URLs.

Sections: summary (the 12 COCO numbers, or a comparison of several results), per-class
metrics, PR curves at IoU 0.5, F1 versus confidence, the confusion matrix and the worst
images. The page helpers come from :mod:`detforge.data.report`.

Readable at 80 classes (COCO): every class gets its own curve in its own colour (legend
beside the plot, in columns), and the confusion matrix is an HTML table with every count
written (sticky headers, scrolled in the page), followed by the most frequent confusions.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

__all__ = ["class_colours", "confusion_html", "pr_figure", "render_html_report",
           "write_html_report"]

def _png(fig: Figure, alt: str) -> str:
    return html_image(figure_to_data_uri(fig), alt)


def class_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours: the tab10 / tab20 palettes up to 20, else ``n`` evenly
    spaced hues of ``turbo`` (no colour is repeated at any ``n``).

    Example:
        >>> len(set(class_colours(80)))
        80
    """
    from matplotlib import colormaps

    if n <= 10:
        return [tuple(c) for c in colormaps["tab10"](np.arange(n))]
    if n <= 20:
        return [tuple(c) for c in colormaps["tab20"](np.arange(n))]
    return [tuple(c) for c in colormaps["turbo"](np.linspace(0.03, 0.97, n))]


_STYLES = ("-", "--", ":", "-.")


def _curve_legend(ax: Any, n: int) -> None:
    """Legend beside the axes, in as many columns as keep it about as tall as the plot."""
    if not ax.get_legend_handles_labels()[0]:
        return
    ncol = max(1, -(-n // 24))
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol,
              frameon=False)


def _curve_figure(n: int) -> tuple[Figure, Any]:
    ncol = max(1, -(-n // 24))
    fig = new_figure(6.4 + 2.2 * ncol, max(4.2, 0.16 * min(n, 24) + 0.8))
    return fig, fig.subplots()


def _summary(results: Mapping[str, EvalResult]) -> Section:
    if len(results) == 1:
        res = next(iter(results.values()))
        rows = [[n, format_cell(v)] for n, v in zip(STAT_NAMES, res.stats, strict=True)]
        rows += [["images", str(res.num_images)], ["detections", str(res.num_detections)],
                 ["operating confidence", f"{res.conf:g}"],
                 ["F1-optimal confidence", f"{res.f1_optimal_conf:g}"]]
        if res.ignored_detections:
            rows.append(["ignored detections (category not in the ground truth)",
                         str(res.ignored_detections)])
        body = html_table(["metric", "value"], rows) + _notes(res)
        return Section("Summary (COCO bbox)", body)
    comp = compare(results)
    body = html_table(comp.headers(), comp.rows())
    if comp.class_names:
        body += ("<p>AP per class (IoU 0.50:0.95):</p>"
                 + html_table(comp.class_headers(), comp.class_rows()))
    return Section("Comparison (COCO bbox)", body)


def _notes(res: EvalResult) -> str:
    if not res.notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in res.notes)
    return f"<p>Notes on the input:</p><ul>{items}</ul>"


def _per_class(name: str, res: EvalResult) -> Section:
    rows: list[list[Cell]] = [
        [c, format_cell(m.ap), format_cell(m.ap50), format_cell(m.ap75),
         format_cell(m.precision), format_cell(m.recall), format_cell(m.f1), m.support,
         m.detections] for c, m in res.per_class.items()]
    head = ["class", "AP", "AP50", "AP75", f"P@{res.conf:g}", f"R@{res.conf:g}",
            f"F1@{res.conf:g}", "support", f"detections@{res.conf:g}"]
    return Section(f"Per class: {name}", html_table(head, rows))


def pr_figure(res: EvalResult) -> Figure:
    """PR curves at IoU 0.5 of every class with ground truth, each in its own colour."""
    shown = [i for i, c in enumerate(res.class_names) if res.per_class[c].support > 0]
    fig, ax = _curve_figure(len(shown))
    colours = class_colours(len(shown))
    for j, i in enumerate(shown):
        c = res.class_names[i]
        ax.plot(res.recall_thresholds, res.pr_curves[i], color=colours[j],
                ls=_STYLES[j % len(_STYLES)] if len(shown) > 20 else "-", lw=1.2,
                label=f"{c} (AP50 {format_cell(res.per_class[c].ap50)})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall at IoU 0.5 (COCO interpolation)")
    ax.grid(alpha=0.3)
    _curve_legend(ax, len(shown))
    return fig


def _pr_curves(name: str, res: EvalResult) -> Section:
    return Section(f"PR curves: {name}", _png(pr_figure(res), "precision-recall curves"))


def _f1_curves(name: str, res: EvalResult) -> Section:
    has_gt = [i for i, c in enumerate(res.class_names) if res.per_class[c].support > 0]
    fig, ax = _curve_figure(len(has_gt) + 1)
    colours = class_colours(len(has_gt))
    for j, i in enumerate(has_gt):
        ax.plot(res.conf_grid, res.f1_curves[i], lw=1, alpha=0.8, color=colours[j],
                ls=_STYLES[j % len(_STYLES)] if len(has_gt) > 20 else "-",
                label=res.class_names[i])
    if has_gt:
        mean = res.f1_curves[has_gt].mean(axis=0)
        ax.plot(res.conf_grid, mean, lw=2.5, color="black",
                label=f"mean (best at conf {res.f1_optimal_conf:g})")
        ax.axvline(res.f1_optimal_conf, color="black", ls="--", lw=1)
    ax.set(xlabel="confidence", ylabel="F1 at IoU 0.5", xlim=(0, 1), ylim=(0, 1.02),
           title="F1 versus confidence")
    ax.grid(alpha=0.3)
    _curve_legend(ax, len(has_gt) + 1)
    return Section(f"F1 versus confidence: {name}", _png(fig, "F1 versus confidence"))


_CM_CSS = (
    ".cm{overflow:auto;max-height:90vh}.cm table{font-size:11px;margin:0}"
    ".cm td,.cm th{padding:1px 3px;min-width:1.8em;text-align:center;border:1px solid #e4e4e4}"
    ".cm thead th{writing-mode:vertical-rl;transform:rotate(180deg);vertical-align:bottom;"
    "white-space:nowrap;position:sticky;top:0;background:#f7f7f7}"
    ".cm tbody th{text-align:right;white-space:nowrap;position:sticky;left:0;"
    "background:#f7f7f7}"
)


def _cell_style(share: float) -> str:
    """Background from white to dark blue by ``share``; white text on the darker half."""
    r, g, b = (int(round(255 + (t - 255) * share)) for t in (8, 69, 148))
    fg = "#fff" if share > 0.5 else "#000"
    return f"background:rgb({r},{g},{b});color:{fg}"


def confusion_html(res: EvalResult) -> str:
    """The confusion matrix as an HTML table: every count written in its cell, the cell
    shaded by its share of the true class (column); headers stay in view while scrolling.

    An HTML table rather than an image, so that 80 classes (81 x 81 cells) stay legible at
    any zoom, and the page renders it in a blink.
    """
    labels = [*res.class_names, "background"]
    m = res.confusion_matrix
    share = m / np.maximum(m.sum(axis=0, keepdims=True), 1)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in labels)
    rows = []
    for i, name in enumerate(labels):
        cells = "".join(
            f'<td style="{_cell_style(float(share[i, j]))}">{int(m[i, j])}</td>' if m[i, j]
            else "<td></td>" for j in range(len(labels)))
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return (f"<style>{_CM_CSS}</style><p>Rows: predicted class; columns: true class "
            f"(IoU 0.5, confidence {res.conf:g}); shade: share of the true class.</p>"
            f'<div class="cm"><table><thead><tr><th>predicted \\ true</th>{head}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>")


def _confusion(name: str, res: EvalResult) -> Section:
    return Section(f"Confusion matrix: {name}", confusion_html(res) + _top_confusions(res))


def _top_confusions(res: EvalResult, n: int = 15) -> str:
    m = res.confusion_matrix
    k = len(res.class_names)
    off = m[:k, :k].copy()
    np.fill_diagonal(off, 0)
    pairs = [(int(off[i, j]), i, j) for i, j in zip(*np.nonzero(off), strict=True)]
    if not pairs:
        return "<p>No detection matched a box of another class.</p>"
    pairs.sort(key=lambda t: (-t[0], t[2], t[1]))
    rows: list[list[Cell]] = [[res.class_names[j], res.class_names[i], c]
                              for c, i, j in pairs[:n]]
    return ("<p>Most frequent confusions (a box of the true class detected as another):</p>"
            + html_table(["true class", "predicted as", "count"], rows))


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
