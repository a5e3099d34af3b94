"""Several evaluation results in one table (models, formats, precisions).

The same evaluation runs for every model format (.pt, .onnx, INT8 .onnx, engine), so a
:class:`Comparison` shows on equal terms what each hop costs in accuracy. The first result
is the baseline of the ``dAP`` column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detforge.core.errors import ConfigError
from detforge.data.report import Cell, text_table
from detforge.evaluate.metrics import STAT_NAMES, EvalResult

__all__ = ["SUMMARY_COLUMNS", "Comparison", "compare", "format_cell", "per_class_table"]

SUMMARY_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
"""The COCO numbers shown in compact tables."""


def format_cell(value: float) -> str:
    """A metric as text: 3 decimals, ``-`` for COCO's -1 (no ground truth)."""
    return "-" if value < 0 else f"{value:.3f}"


@dataclass(frozen=True)
class Comparison:
    """Results side by side.

    Attributes:
        names: Row labels (model or format names), baseline first.
        columns: Summary column names (:data:`SUMMARY_COLUMNS`).
        summary: Per row, the values of ``columns``.
        class_names: Classes of the per-class AP columns (union, in first-seen order).
        class_ap: Per row, AP of each class (-1 where the class is absent from that result).
    """

    names: tuple[str, ...]
    columns: tuple[str, ...]
    summary: tuple[tuple[float, ...], ...]
    class_names: tuple[str, ...]
    class_ap: tuple[tuple[float, ...], ...]

    def headers(self) -> list[str]:
        """Column titles of :meth:`rows`."""
        return ["model", *self.columns, "dAP"]

    def rows(self) -> list[list[str]]:
        """One row of formatted summary cells per result."""
        base = self.summary[0][0] if self.summary else -1.0
        out = []
        for name, values in zip(self.names, self.summary, strict=True):
            delta = values[0] - base if values[0] >= 0 and base >= 0 else -1.0
            out.append([name, *(format_cell(v) for v in values),
                        "-" if delta == -1.0 else f"{delta:+.3f}"])
        return out

    def class_headers(self) -> list[str]:
        """Column titles of :meth:`class_rows`: the class, then one column per result."""
        return ["class", *self.names]

    def class_rows(self) -> list[list[str]]:
        """AP per class, one row per class (so 80 classes make 80 rows, not 80 columns)."""
        return [[c, *(format_cell(aps[k]) for aps in self.class_ap)]
                for k, c in enumerate(self.class_names)]

    def to_text(self, *, per_class: bool = False) -> str:
        """A fixed-width table for the terminal; ``per_class`` adds the AP-per-class table."""
        text = text_table(self.headers(), self.rows())
        if per_class and self.class_names:
            text += "\n\n" + text_table(self.class_headers(), self.class_rows())
        return text

    def to_markdown(self) -> str:
        """Markdown: the summary table, then AP per class."""
        return "\n\n".join(_markdown(h, r) for h, r in (
            (self.headers(), self.rows()), (self.class_headers(), self.class_rows())) if r)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: per model, its summary and per-class AP."""
        return {name: {"summary": dict(zip(self.columns, values, strict=True)),
                       "per_class_ap": dict(zip(self.class_names, aps, strict=True))}
                for name, values, aps in zip(self.names, self.summary, self.class_ap,
                                             strict=True)}


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def compare(results: Mapping[str, EvalResult]) -> Comparison:
    """Put several results in one table.

    Args:
        results: Results by model / format name; the first is the baseline.

    Returns:
        The comparison.

    Raises:
        ConfigError: ``results`` is empty.

    Example:
        >>> print(compare({"fp32": r1, "int8": r2}).to_text())  # doctest: +SKIP
    """
    if not results:
        raise ConfigError("compare needs at least one evaluation result")
    idx = [STAT_NAMES.index(c) for c in SUMMARY_COLUMNS]
    classes: dict[str, None] = {}
    for res in results.values():
        classes.update(dict.fromkeys(res.class_names))
    names = tuple(classes)
    summary = tuple(tuple(res.stats[i] for i in idx) for res in results.values())
    class_ap = tuple(tuple(res.per_class[c].ap if c in res.per_class else -1.0 for c in names)
                     for res in results.values())
    return Comparison(tuple(results), SUMMARY_COLUMNS, summary, names, class_ap)


def per_class_table(result: EvalResult) -> str:
    """Per-class AP, AP50, AP75 and P/R/F1 at the operating confidence, as text.

    Args:
        result: One evaluation.

    Returns:
        A fixed-width table, one row per class.
    """
    rows: list[list[Cell]] = [
        [name, format_cell(m.ap), format_cell(m.ap50), format_cell(m.ap75),
         format_cell(m.precision), format_cell(m.recall), format_cell(m.f1), m.support]
        for name, m in result.per_class.items()]
    return text_table(["class", "AP", "AP50", "AP75", f"P@{result.conf:g}",
                       f"R@{result.conf:g}", f"F1@{result.conf:g}", "support"], rows)
