"""HTML pages of active learning: a selection with its pre-annotations, and a simulation's curves.

Both are self-contained (inline CSS, images as ``data:`` URIs, no URL fetched), built with
the page helpers of :mod:`detforge.data.report`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from detforge.active.selection import Picked, SelectionResult

__all__ = ["curve_figure_uri", "write_selection_report", "write_simulation_report"]

MAX_THUMBNAILS = 120
"""Picks shown with a thumbnail; the table lists them all."""
_THUMB = 224
_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
            "#bcf60c", "#008080", "#9a6324")


def _fmt(v: float | None) -> Cell:
    return "-" if v is None else float(v)


def _thumbnail(pick: Picked, classes: Sequence[str]) -> str:
    from PIL import Image, ImageDraw

    try:
        with Image.open(pick.image.path) as im:
            img = im.convert("RGB")
    except OSError:
        return ""
    scale = _THUMB / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    draw = ImageDraw.Draw(img)
    for box, label in zip(pick.labels.xyxy.tolist(), pick.labels.labels, strict=True):
        colour = _COLOURS[list(classes).index(label) % len(_COLOURS)]
        draw.rectangle([v * scale for v in box], outline=colour, width=2)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return html_image(uri, f"{pick.rank}: {pick.image.key}")


def write_selection_report(path: str | Path, result: SelectionResult,
                           classes: Sequence[str]) -> Path:
    """Write the selection page: summary, every pick's scores, thumbnails with boxes."""
    pool = result.pool
    summary = html_table(["", "value"], [
        ["strategy", result.strategy], ["picked", len(result.picked)],
        ["pool images", len(pool.images) + len(pool.skipped)],
        ["skipped (unreadable, not images)", len(result.skipped)],
        ["near duplicates in the pool", len(pool.duplicate_of)],
        ["near duplicates of labelled images", len(pool.labelled_duplicate_of)],
        ["embedding", result.embedding or "-"]])
    rows: list[list[Cell]] = [
        [p.rank, p.image.key, _fmt(p.value), _fmt(p.score.uncertainty.get("entropy")),
         _fmt(p.score.uncertainty.get("margin")),
         _fmt(p.score.uncertainty.get("least-confidence")), _fmt(p.score.disagreement),
         len(p.labels)] for p in result.picked]
    table = html_table(["rank", "image", "value", "entropy", "margin", "least conf.",
                        "disagreement", "boxes"], rows)
    thumbs = "".join(
        f'<figure style="display:inline-block;margin:4px">{_thumbnail(p, classes)}'
        f"<figcaption>{p.rank}. {html.escape(p.image.key)}</figcaption></figure>"
        for p in result.picked[:MAX_THUMBNAILS])
    if len(result.picked) > MAX_THUMBNAILS:
        thumbs += f"<p>{len(result.picked) - MAX_THUMBNAILS} more picks are in the table.</p>"
    skipped = html_table(["file", "reason"], [[s.key, s.reason] for s in result.skipped]) \
        if result.skipped else "<p>none</p>"
    legend = ", ".join(f'<span style="color:{_COLOURS[i % len(_COLOURS)]}">'
                       f"{html.escape(c)}</span>" for i, c in enumerate(classes))
    page = render_page(f"Active learning selection: {result.out.name}", [
        Section("Summary", summary), Section("Picks", table),
        Section("Pre-annotations", f"<p>{legend}</p>{thumbs}"), Section("Skipped", skipped)],
        subtitle=f"{len(result.picked)} images chosen by {result.strategy}")
    return write_page(path, page)


def curve_figure_uri(curves: Mapping[str, Sequence[tuple[float, float, float]]], *,
                     metric: str) -> str:
    """A plot of ``metric`` against labelled images, one line (mean +- std band) per strategy.

    Args:
        curves: ``{strategy: [(labelled images, mean, std), ...]}``.
        metric: Axis label of the metric.
    """
    fig = new_figure(7.0, 4.2)
    ax = fig.subplots()
    for name, points in curves.items():
        xs = [p[0] for p in points]
        mean = [p[1] for p in points]
        std = [p[2] for p in points]
        line = ax.plot(xs, mean, marker="o", label=name)[0]
        ax.fill_between(xs, [m - s for m, s in zip(mean, std, strict=True)],
                        [m + s for m, s in zip(mean, std, strict=True)],
                        color=line.get_color(), alpha=0.15)
    ax.set_xlabel("labelled images")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    return figure_to_data_uri(fig)


def write_simulation_report(path: str | Path, summary: Mapping[str, Any],
                            rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write the simulation page: curves, the mean table, every round of every seed.

    Args:
        path: The HTML file.
        summary: ``simulation.json``'s ``summary`` (curves and table per strategy).
        rows: Every round result (one per strategy, seed and round).
    """
    curves = {s: [(p["labelled"], p["mean"], p["std"]) for p in pts]
              for s, pts in summary["curves"].items()}
    plot = html_image(curve_figure_uri(curves, metric=summary["metric"]),
                      "mAP50-95 against labelled images")
    strategies = list(summary["curves"])
    sizes = sorted({p["labelled"] for pts in summary["curves"].values() for p in pts})
    mean_rows: list[list[Cell]] = []
    for n in sizes:
        row: list[Cell] = [n]
        for s in strategies:
            pt = next((p for p in summary["curves"][s] if p["labelled"] == n), None)
            row.append("-" if pt is None else f"{pt['mean']:.4f} ± {pt['std']:.4f}")
        mean_rows.append(row)
    mean_table = html_table(["labelled", *strategies], mean_rows)
    all_rows: list[list[Cell]] = [
        [r["strategy"], r["seed"], r["round"], r["labelled"], float(r["map50_95"]),
         float(r["map50"]), ", ".join(f"{k} {v}" for k, v in r["class_counts"].items())]
        for r in rows]
    every = html_table(["strategy", "seed", "round", "labelled", "mAP50-95", "mAP50",
                        "boxes per class (labelled)"], all_rows)
    page = render_page("Active learning simulation", [
        Section(f"{summary['metric']} against labelled images", plot),
        Section("Mean ± std over seeds", mean_table), Section("Every round", every)],
        subtitle=summary.get("description", ""))
    return write_page(path, page)
