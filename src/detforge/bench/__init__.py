"""Benchmarking: models x formats x precisions x batch sizes x input sizes, side by side.

Throughput (model-only and end-to-end), per-batch latency percentiles, peak memory and
mAP in one table; JSON output; a baseline check that fails on regressions (for CI).

Example:
    >>> from detforge.bench import benchmark  # doctest: +SKIP
    >>> report = benchmark(["a.onnx", "a_int8.onnx"], source="photos/",  # doctest: +SKIP
    ...                    batches=(1, 8), json_out="bench.json")
"""

from detforge.bench.api import BenchReport, benchmark
from detforge.bench.baseline import Comparison, Regression, compare_rows, compare_with_baseline
from detforge.bench.options import parse_batches, parse_imgszs, parse_tolerance
from detforge.bench.result import ROW_KEYS, BenchResult, BenchRow, read_rows
from detforge.bench.runner import run_benchmark
from detforge.bench.table import format_markdown, format_table

__all__ = [
    "ROW_KEYS",
    "BenchReport",
    "BenchResult",
    "BenchRow",
    "Comparison",
    "Regression",
    "benchmark",
    "compare_rows",
    "compare_with_baseline",
    "format_markdown",
    "format_table",
    "parse_batches",
    "parse_imgszs",
    "parse_tolerance",
    "read_rows",
    "run_benchmark",
]
