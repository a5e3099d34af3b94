"""The fidelity report: accuracy at every hop of a model (.pt -> ONNX -> INT8 -> engine).

Reads the hop records of ``fidelity.json`` (:mod:`detforge.export.fidelity`) and renders one
self-contained page: a sentence with the end-to-end change, the mAP of each model along the
chain as an inline SVG bar chart, and a table of the hops with formatted figures and the
meaning of each column.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detforge.data.report import Section, html_table, render_page

__all__ = ["render_fidelity_page"]

_KINDS = {"export": "export to ONNX", "quantize-int8": "INT8 quantisation",
          "quantize-fp16": "FP16 conversion", "engine": "TensorRT engine build"}


def _name(path: Any) -> str:
    return Path(str(path)).name


def _score(v: Any) -> str:
    return "–" if not isinstance(v, int | float) or v < 0 else f"{v:.3f}"


def _points(before: Any, after: Any) -> str:
    if not all(isinstance(v, int | float) and v >= 0 for v in (before, after)):
        return "–"
    return f"{100 * (after - before):+.1f} pt"


def _chain(hops: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """(model file, mAP50-95) along the chain: the first source, then every target."""
    models: list[tuple[str, float]] = []
    for hop in hops:
        if not models:
            models.append((_name(hop["source"]), float(hop["map50_95_before"])))
        models.append((_name(hop["target"]), float(hop["map50_95_after"])))
    return models


def _bars(models: Sequence[tuple[str, float]]) -> str:
    """mAP50-95 per model as an inline SVG bar chart (no script, no external reference)."""
    bar, gap, height, top = 110, 30, 160, 24
    width = len(models) * (bar + gap) + gap
    peak = max([m for _, m in models] + [1e-9])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 70}" '
             f'role="img" aria-label="mAP50-95 of each model along the chain" '
             f'font-family="sans-serif" font-size="12">']
    for i, (name, m) in enumerate(models):
        x = gap + i * (bar + gap)
        h = max(1.0, (height - top) * m / peak) if m > 0 else 1.0
        y = height - h
        parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" '
                     f'fill="{"#4a7ab5" if i == 0 else "#7aa6d6"}"><title>'
                     f"{html.escape(name)}: mAP50-95 {m:.3f}</title></rect>")
        parts.append(f'<text x="{x + bar / 2}" y="{y - 6:.1f}" text-anchor="middle">'
                     f"{m:.3f}</text>")
        parts.append(f'<text x="{x + bar / 2}" y="{height + 18}" text-anchor="middle">'
                     f"{html.escape(name[:18])}</text>")
        if i:
            parts.append(f'<text x="{x - gap / 2}" y="{height + 40}" text-anchor="middle" '
                         f'fill="#555">→</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_fidelity_page(hops: Sequence[Mapping[str, Any]], *,
                         title: str = "Fidelity at every hop") -> str:
    """The fidelity report as one HTML document.

    Args:
        hops: Hop records as stored in ``fidelity.json`` (oldest first).
        title: Page title.

    Returns:
        The HTML text; it embeds everything and references no URL.

    Example:
        >>> hop = {"kind": "export", "source": "best.pt", "target": "model.onnx",
        ...        "images": 40, "map50_95_before": 0.61, "map50_95_after": 0.609,
        ...        "map50_before": 0.9, "map50_after": 0.9, "box_agreement": 0.99,
        ...        "max_abs_diff": 2e-5, "at": "2026-01-01T00:00:00+00:00"}
        >>> "-0.1 pt" in render_fidelity_page([hop])
        True
    """
    if not hops:
        return render_page(title, [Section("No hop measured yet",
                                           "<p>Export or quantise a model with a dataset "
                                           "(<code>--data</code>) to measure one.</p>")])
    models = _chain(hops)
    first, last = models[0], models[-1]
    lead = (f"<p>From <b>{html.escape(first[0])}</b> to <b>{html.escape(last[0])}</b> over "
            f"{len(hops)} hop{'s' if len(hops) > 1 else ''}, mAP50-95 went from "
            f"<b>{first[1]:.3f}</b> to <b>{last[1]:.3f}</b> "
            f"({_points(first[1], last[1])}).</p>")
    rows = [[_KINDS.get(str(h["kind"]), str(h["kind"])), _name(h["source"]), _name(h["target"]),
             f"{int(h['images']):,}",
             f"{_score(h['map50_95_before'])} → {_score(h['map50_95_after'])}",
             _points(h["map50_95_before"], h["map50_95_after"]),
             f"{_score(h['map50_before'])} → {_score(h['map50_after'])}",
             f"{100 * float(h['box_agreement']):.1f} %",
             "–" if h.get("low_agreement") is None
             else f"{100 * float(h['low_agreement']):.1f} %",
             "–" if h.get("max_abs_diff") is None else f"{float(h['max_abs_diff']):.2e}",
             str(h.get("at", ""))[:16].replace("T", " ")] for h in hops]
    table = html_table(["hop", "from", "to", "images", "mAP50-95", "change",
                        "mAP50", "box agreement", "agreement ≥ 0.001", "max abs diff",
                        "measured (UTC)"], rows)
    legend = ("<ul><li><b>mAP50-95, mAP50</b>: COCO metrics of each model on the same images "
              "(the dataset's validation split), identical to pycocotools.</li>"
              "<li><b>change</b>: mAP50-95 after minus before, in percentage points.</li>"
              "<li><b>box agreement</b>: share of the source model's boxes (score ≥ 0.25) "
              "that the new model reproduces with the same class at IoU ≥ 0.9.</li>"
              "<li><b>agreement ≥ 0.001</b>: the same over each image's best 100 boxes "
              "scoring ≥ 0.001, the boxes mAP is computed from (RT-DETR hops).</li>"
              "<li><b>max abs diff</b>: largest difference between the raw outputs of the "
              "two models on the same inputs (measured for float exports).</li></ul>")
    return render_page(title, [
        Section("Summary", lead + _bars(models)),
        Section("Hops", table + legend),
    ], subtitle=f"{len(models)} models, {len(hops)} measured conversions")
