"""Render benchmark rows as a plain-text table (terminal) or a Markdown table (reports)."""

from __future__ import annotations

from collections.abc import Sequence

from detforge.bench.result import BenchRow

__all__ = ["format_markdown", "format_table"]

_HEADERS = ("model", "format", "prec", "batch", "streams", "imgsz", "model-only img/s",
            "end-to-end img/s", "e2e/model", "p50 ms", "p95 ms", "p99 ms", "peak RSS MB",
            "mAP50-95")
_RIGHT = frozenset(range(3, len(_HEADERS)))


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _cells(row: BenchRow) -> list[str]:
    h, w = row.imgsz
    ratio = row.end_to_end_ips / row.model_only_ips if row.model_only_ips else 0.0
    return [row.model, row.format, row.precision, str(row.batch), str(row.streams),
            str(h) if h == w else f"{h}x{w}", f"{row.model_only_ips:.1f}",
            f"{row.end_to_end_ips:.1f}", f"{ratio:.2f}", _ms(row.p50_ms),
            _ms(row.p95_ms), _ms(row.p99_ms), f"{row.peak_rss_mb:.0f}",
            "-" if row.map50_95 is None else f"{row.map50_95:.4f}"]


def format_table(rows: Sequence[BenchRow]) -> str:
    """An aligned text table, one line per row; latencies are model-only, per batch.

    Args:
        rows: Benchmark rows.

    Returns:
        The table (header, rule, rows) without a trailing newline.

    Example:
        >>> print(format_table(result.rows))  # doctest: +SKIP
    """
    body = [_cells(r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(_HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in _RIGHT else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(_HEADERS), line(["-" * w for w in widths]), *map(line, body)])


def format_markdown(rows: Sequence[BenchRow]) -> str:
    """The same table in Markdown (for BENCHMARKS.md and reports).

    Args:
        rows: Benchmark rows.

    Returns:
        A Markdown table without a trailing newline.
    """
    align = ["---:" if i in _RIGHT else "---" for i in range(len(_HEADERS))]
    lines = ["| " + " | ".join(_HEADERS) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)
