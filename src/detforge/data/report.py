"""Rendering helpers for reports: plain-text tables and self-contained HTML pages.

HTML pages embed every figure as a base64 PNG ``data:`` URI and carry their CSS inline,
so a report opens offline, can be mailed as one file, and never fetches a URL.

The API is small so that other stages (evaluation, benchmarks) reuse it::

    fig = new_figure()
    ax = fig.subplots()
    ax.bar(["a", "b"], [3, 5])
    page = render_page("My report", [Section("Counts", html_image(figure_to_data_uri(fig)))])
    write_page("report.html", page)

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot``, no global
state, Agg rendering), and matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from detforge.core.atomic import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Section", "figure_to_data_uri", "html_image", "html_table", "new_figure",
           "render_page", "text_table", "write_page"]

Cell = str | int | float


@dataclass(frozen=True)
class Section:
    """One titled block of a report page.

    Attributes:
        title: Heading of the section (plain text, escaped when rendered).
        html: Body of the section, already HTML (build it with :func:`html_table`,
            :func:`html_image` or :func:`html.escape`).
    """

    title: str
    html: str


def new_figure(width: float = 6.4, height: float = 3.6) -> Figure:
    """A matplotlib figure rendered with Agg, independent of ``pyplot``.

    Args:
        width: Width in inches.
        height: Height in inches.

    Returns:
        An empty figure with a constrained layout.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def figure_to_data_uri(fig: Figure, *, dpi: int = 96) -> str:
    """Render ``fig`` as PNG and return it as a ``data:image/png;base64,...`` URI.

    Args:
        fig: The figure to render.
        dpi: Resolution of the PNG.

    Returns:
        A URI usable as ``<img src=...>`` in a page that must open offline.

    Example:
        >>> fig = new_figure(); _ = fig.subplots().plot([0, 1])
        >>> figure_to_data_uri(fig).startswith("data:image/png;base64,")
        True
    """
    buf = io.BytesIO()
    # no "Software" tag: matplotlib's default names its web site inside the PNG
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def html_image(uri: str, alt: str = "") -> str:
    """An ``<img>`` element for a data URI.

    Args:
        uri: A ``data:`` URI, e.g. from :func:`figure_to_data_uri`.
        alt: Text shown when the image cannot be displayed.

    Returns:
        The HTML element.
    """
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _fmt(value: Cell) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """An HTML table; floats are shown with 3 decimals, every cell is escaped.

    Args:
        headers: Column titles.
        rows: Rows of cells, each as long as ``headers``.

    Returns:
        The ``<table>`` element.
    """
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """A fixed-width text table: first column left-aligned, the others right-aligned.

    Args:
        headers: Column titles.
        rows: Rows of cells, each as long as ``headers``.

    Returns:
        The table as lines joined by newlines (no trailing newline).

    Example:
        >>> print(text_table(["split", "images"], [["train", 8], ["val", 2]]))
        split  images
        train       8
        val         2
    """
    cells = [list(headers)] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                          strict=True)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f2f2f2; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.subtitle { color: #666; }
"""


def render_page(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """A complete, self-contained HTML document.

    Args:
        title: Page title and top heading (plain text).
        sections: Blocks shown in order, each with a heading.
        subtitle: Optional line under the heading (plain text).

    Returns:
        The HTML document; it references no external URL.
    """
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if subtitle:
        parts.append(f'<p class="subtitle">{html.escape(subtitle)}</p>')
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>\n{section.html}</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def write_page(path: str | Path, page: str) -> Path:
    """Write an HTML page atomically.

    Args:
        path: Destination file; parent folders are created.
        page: The document, e.g. from :func:`render_page`.

    Returns:
        The path written.
    """
    path = Path(path)
    atomic_write_text(path, page)
    return path
