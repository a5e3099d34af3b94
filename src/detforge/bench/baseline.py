"""Compare benchmark rows with a saved baseline and flag throughput regressions (for CI).

Rows are matched on (model name, format, precision, batch, input size). A row regresses
when its ``model_only_ips`` or ``end_to_end_ips`` falls more than the tolerance below the
baseline row's: ``current < baseline * (1 - tolerance)``. Rows with no baseline row, and
baseline rows not measured this time, are reported but never fail the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detforge.bench.options import format_imgsz
from detforge.bench.result import BenchRow, RowKey, read_rows
from detforge.core.errors import ConfigError

__all__ = ["METRICS", "Comparison", "Regression", "compare_rows", "compare_with_baseline",
           "describe_key"]

METRICS = ("model_only_ips", "end_to_end_ips")
"""The throughput columns checked against the baseline."""


def describe_key(key: RowKey) -> str:
    """``"m.onnx onnx fp32 batch 8 imgsz 320"``: a row's identity, for messages."""
    model, fmt, precision, batch, size = key
    imgsz = format_imgsz(size)
    text = imgsz if isinstance(imgsz, int) else f"{imgsz[0]}x{imgsz[1]}"
    return f"{model} {fmt} {precision} batch {batch} imgsz {text}"


@dataclass(frozen=True, slots=True)
class Regression:
    """One figure that fell past the tolerance.

    Attributes:
        key: The row's identity.
        metric: ``model_only_ips`` or ``end_to_end_ips``.
        baseline: The baseline's figure.
        current: This run's figure.
    """

    key: RowKey
    metric: str
    baseline: float
    current: float

    @property
    def change(self) -> float:
        """Relative change, e.g. ``-0.12`` for 12% slower."""
        return self.current / self.baseline - 1 if self.baseline else 0.0

    def __str__(self) -> str:
        return (f"{describe_key(self.key)}: {self.metric} {self.current:.2f} vs baseline "
                f"{self.baseline:.2f} ({self.change:+.1%})")


@dataclass
class Comparison:
    """The outcome of a baseline check.

    Attributes:
        tolerance: The allowed drop, as a fraction.
        regressions: Figures that fell more than ``tolerance`` below the baseline.
        compared: Rows found in the baseline.
        not_in_baseline: Rows measured now that the baseline lacks.
        not_measured: Baseline rows not measured in this run.
    """

    tolerance: float
    regressions: list[Regression] = field(default_factory=list)
    compared: list[RowKey] = field(default_factory=list)
    not_in_baseline: list[RowKey] = field(default_factory=list)
    not_measured: list[RowKey] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when any figure regressed past the tolerance."""
        return bool(self.regressions)

    def format(self) -> str:
        """Human-readable lines: a verdict, then each regression and unmatched row."""
        verdict = (f"REGRESSION: {len(self.regressions)} figure(s) fell more than "
                   f"{self.tolerance:.1%} below the baseline" if self.failed else
                   f"baseline check passed: {len(self.compared)} row(s) within "
                   f"{self.tolerance:.1%} of the baseline")
        lines = [verdict]
        lines += [f"  regressed: {r}" for r in self.regressions]
        lines += [f"  not in the baseline (not checked): {describe_key(k)}"
                  for k in self.not_in_baseline]
        lines += [f"  in the baseline but not measured: {describe_key(k)}"
                  for k in self.not_measured]
        return "\n".join(lines)


def compare_rows(current: Sequence[BenchRow], baseline: Sequence[BenchRow], *,
                 tolerance: float) -> Comparison:
    """Check ``current`` rows against ``baseline`` rows.

    Args:
        current: This run's rows.
        baseline: The saved rows.
        tolerance: Allowed drop as a fraction in ``[0, 1)`` (see
            :func:`~detforge.bench.options.parse_tolerance`).

    Returns:
        The :class:`Comparison`.

    Raises:
        ConfigError: ``tolerance`` is out of range, or the baseline holds a row twice.

    Example:
        >>> compare_rows(rows, old_rows, tolerance=0.05).failed  # doctest: +SKIP
        False
    """
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance {tolerance} must lie in [0, 1); e.g. 0.05 for 5%")
    base: dict[RowKey, BenchRow] = {}
    for row in baseline:
        if row.key in base:
            raise ConfigError(f"the baseline holds {describe_key(row.key)} twice; keep one "
                              f"row per model, format, precision, batch and imgsz")
        base[row.key] = row
    out = Comparison(tolerance)
    seen = set()
    for row in current:
        seen.add(row.key)
        old = base.get(row.key)
        if old is None:
            out.not_in_baseline.append(row.key)
            continue
        out.compared.append(row.key)
        for metric in METRICS:
            was, now = float(getattr(old, metric)), float(getattr(row, metric))
            if now < was * (1 - tolerance):
                out.regressions.append(Regression(row.key, metric, was, now))
    out.not_measured = [k for k in base if k not in seen]
    return out


def compare_with_baseline(current: Sequence[BenchRow], baseline: str | Path, *,
                          tolerance: float) -> Comparison:
    """Read a baseline JSON file and compare ``current`` with it.

    Args:
        current: This run's rows.
        baseline: A file written by ``detforge benchmark --json``.
        tolerance: Allowed drop as a fraction in ``[0, 1)``.

    Returns:
        The :class:`Comparison`.

    Raises:
        ConfigError: The baseline file is missing or malformed, or a bad tolerance.
    """
    return compare_rows(current, read_rows(baseline), tolerance=tolerance)
