"""The demo's front page (``index.html``) and its fidelity page, from the demo summary.

The front page reads like a report: the chain drawn as an inline SVG (each step with its
key figure and time, linked to its report), the key figures in words and units, accuracy
along the chain, the CPU benchmark, and links to every artefact. Numbers are formatted
here, once; no raw float or Python structure reaches the page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detforge.data.report import Cell, Section, html_table, render_page

__all__ = ["STEP_TITLES", "figure_rows", "render_index", "step_caption"]

STEP_TITLES: dict[str, str] = {
    "synth": "Synthesise", "validate": "Validate", "split": "Split", "stats": "Statistics",
    "train": "Train", "export": "Export ONNX", "evaluate": "Evaluate", "quantize": "INT8",
    "benchmark": "Benchmark", "bundle": "Deploy bundle", "track": "Track video",
}
"""Display name of each demo step, in chain order."""

_STEP_LINK = {"validate": "validation", "stats": "stats_report",
              "evaluate": "evaluation_report", "quantize": "fidelity_report",
              "benchmark": "benchmark", "bundle": "bundle", "track": "tracks"}


def _num(v: Any, digits: int = 3) -> str:
    return "–" if not isinstance(v, int | float) or isinstance(v, bool) else f"{v:.{digits}f}"


def _count(v: Any) -> str:
    return "–" if not isinstance(v, int) else f"{v:,}"


def _findings(v: Any) -> str:
    if not isinstance(v, Mapping):
        return "–"
    return ", ".join(f"{int(n):,} {kind}{'s' if int(n) != 1 and kind != 'info' else ''}"
                     for kind, n in v.items())


def step_caption(step: str, fig: Mapping[str, Any]) -> str:
    """The key figure of a step, in a few words (empty when the step has none)."""
    captions = {
        "synth": f"{_count(fig.get('images'))} images",
        "validate": _findings(fig.get("findings")).split(", ")[0],
        "train": f"mAP50-95 {_num(fig.get('map50_95_pt'))} (.pt)",
        "export": f"max diff {fig['parity_max_abs_diff']:.1e}"
        if isinstance(fig.get("parity_max_abs_diff"), float) else "",
        "evaluate": f"mAP50-95 {_num(fig.get('map50_95'))}",
        "quantize": f"{_num(fig.get('int8_speedup'), 2)}x, mAP {_num(fig.get('map50_95_int8'))}",
        "bundle": "verified" if fig.get("verify_passed") else
        ("verify failed" if fig.get("verify_passed") is False else ""),
        "track": f"{_count(fig.get('track_ids'))} tracks",
    }
    text = captions.get(step, "")
    return "" if "–" in text else text


def figure_rows(fig: Mapping[str, Any]) -> list[list[Cell]]:
    """The key figures as (label, formatted value) rows."""
    targets = fig.get("bundle_targets")
    rows: list[list[Cell]] = [
        ["Synthetic images / boxes", f"{_count(fig.get('images'))} / {_count(fig.get('boxes'))}"],
        ["Validation findings", _findings(fig.get("findings"))],
        ["mAP50-95 / mAP50 (ONNX, val split)",
         f"{_num(fig.get('map50_95'))} / {_num(fig.get('map50'))}"],
        ["mAP50-95 along the chain (.pt → ONNX → INT8)",
         " → ".join(_num(fig.get(k)) for k in ("map50_95_pt", "map50_95_onnx",
                                                "map50_95_int8"))],
        ["ONNX vs PyTorch, largest output difference",
         f"{fig['parity_max_abs_diff']:.2e}"
         if isinstance(fig.get("parity_max_abs_diff"), float) else "–"],
        ["Throughput FP32 → INT8 (model only, batch 8, CPU)",
         f"{_num(fig.get('fp32_ips'), 1)} → {_num(fig.get('int8_ips'), 1)} images/s "
         f"({_num(fig.get('int8_speedup'), 2)}x)"],
        ["Deployment targets (precision)",
         ", ".join(f"{t} ({p.upper()})" for t, p in targets.items())
         if isinstance(targets, Mapping) else "–"],
        ["Bundle verification", "passed" if fig.get("verify_passed") else
         ("failed" if fig.get("verify_passed") is False else "–")],
        ["Video: frames / distinct tracks / speed",
         f"{_count(fig.get('video_frames'))} / {_count(fig.get('track_ids'))} / "
         f"{_num(fig.get('predict_ips'), 1)} frames/s"],
    ]
    return rows


def _uri(path: Any) -> str | None:
    return Path(str(path)).resolve().as_uri() if isinstance(path, str) and path else None


def chain_svg(summary: Mapping[str, Any]) -> str:
    """The chain as an inline SVG: one box per step with its key figure and seconds."""
    fig = summary.get("figures") or {}
    seconds = summary.get("seconds") or {}
    steps = [s for s in STEP_TITLES if s in seconds] or list(STEP_TITLES)
    per_row, w, h, gx, gy = 6, 145, 62, 30, 40  # 1,040 px: fits the 1,100 px page
    rows = -(-len(steps) // per_row)
    width = per_row * w + (per_row - 1) * gx + 20
    height = rows * h + (rows - 1) * gy + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="the demo chain, step by step" font-family="sans-serif">',
           '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" '
           'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#667"/></marker></defs>']
    for i, step in enumerate(steps):
        r, c = divmod(i, per_row)
        x, y = 10 + c * (w + gx), 10 + r * (h + gy)
        box = (f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="#eef3fa" '
               f'stroke="#4a7ab5"/>'
               f'<text x="{x + w / 2}" y="{y + 20}" text-anchor="middle" font-size="14" '
               f'font-weight="bold">{i + 1}. {html.escape(STEP_TITLES[step])}</text>'
               f'<text x="{x + w / 2}" y="{y + 38}" text-anchor="middle" font-size="11">'
               f"{html.escape(step_caption(step, fig))}</text>")
        if isinstance(seconds.get(step), int | float):
            box += (f'<text x="{x + w / 2}" y="{y + 54}" text-anchor="middle" font-size="10" '
                    f'fill="#666">{seconds[step]:.1f} s</text>')
        link = _uri(summary.get(_STEP_LINK.get(step, "")))
        out.append(f'<a href="{html.escape(link)}">{box}</a>' if link else box)
        if i + 1 < len(steps):
            if c + 1 < per_row:
                out.append(f'<line x1="{x + w}" y1="{y + h / 2}" x2="{x + w + gx - 2}" '
                           f'y2="{y + h / 2}" stroke="#667" marker-end="url(#arrow)"/>')
            else:  # wrap to the next row: down, then back to its first box
                x0 = 10 + w / 2
                out.append(f'<path d="M{x + w / 2},{y + h} V{y + h + gy / 2} H{x0} '
                           f'V{y + h + gy - 2}" fill="none" stroke="#667" '
                           f'marker-end="url(#arrow)"/>')
    out.append("</svg>")
    return "".join(out)


_ARTEFACTS = (
    ("evaluation_report", "Evaluation report (per-class AP, PR curves, confusion matrix)"),
    ("fidelity_report", "Fidelity report (accuracy at every hop)"),
    ("stats_report", "Dataset statistics"),
    ("validation", "Validation findings (JSON)"),
    ("benchmark", "Benchmark results (JSON)"),
    ("bundle", "Deployment bundles"),
    ("engine_script", "TensorRT engine build script"),
    ("tracks", "Tracks on the video (JSON Lines)"),
    ("video", "The video"),
    ("onnx", "ONNX model"), ("int8_onnx", "INT8 ONNX model"), ("pt", "PyTorch weights"),
    ("run", "Training run"), ("dataset", "Dataset (split)"),
)


def _links(summary: Mapping[str, Any]) -> str:
    items = [f'<li><a href="{html.escape(uri)}">{html.escape(label)}</a> '
             f'<span class="subtitle">{html.escape(Path(str(summary[key])).name)}</span></li>'
             for key, label in _ARTEFACTS if (uri := _uri(summary.get(key)))]
    return f"<ul>{''.join(items)}</ul>"


def _benchmark(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>No benchmark rows.</p>"
    body: list[list[Cell]] = [[str(r["model"]), int(r["batch"]), _num(r["model_only_ips"], 1),
                               _num(r["end_to_end_ips"], 1)] for r in rows]
    return html_table(["model", "batch", "model only (images/s)", "end to end (images/s)"],
                      body)


def render_index(summary: Mapping[str, Any]) -> str:
    """The demo's front page.

    Args:
        summary: What :func:`~detforge.demo.pipeline.run_demo` returns.

    Returns:
        A self-contained HTML document (links point at the demo's own files).
    """
    fig = summary.get("figures") or {}
    seconds = summary.get("seconds") or {}
    steps: list[list[Cell]] = [[f"{i + 1}. {STEP_TITLES.get(k, k)}", f"{v:.1f} s"]
                               for i, (k, v) in enumerate(seconds.items())]
    steps.append(["total", f"{sum(seconds.values()):.1f} s"])
    version = summary.get("dataset_version")
    lead = ("<p>A synthetic dataset taken through the whole detforge chain on this machine's "
            "CPU: validated, split, trained, exported to ONNX, evaluated, quantised to INT8, "
            "benchmarked, bundled for deployment and run on a video with tracking. Each box "
            "links to its report.</p>")
    return render_page("detforge demo", [
        Section("The chain", lead + chain_svg(summary)),
        Section("Key figures", html_table(["", "value"], figure_rows(fig))),
        Section("Benchmark (CPU)", _benchmark(summary.get("benchmark_rows") or [])),
        Section("Reports and artefacts", _links(summary)),
        Section("Time per step", html_table(["step", "time"], steps)),
    ], subtitle=f"dataset version {version}" if isinstance(version, str) else "")

