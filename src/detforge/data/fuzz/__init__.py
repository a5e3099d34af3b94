"""A mutation fuzzer for the dataset readers, ``validate`` and the writers.

Used by the test suite (a bounded run per format) and ``benchmarks/bench_fuzz.py`` (a
long run whose counts go in BENCHMARKS.md). Every input must end in a clean result or one
``DetforgeError`` line: no traceback, hang, memory blow-up or unreadable output.

Example:
    >>> from detforge.data.fuzz import run_campaign
    >>> campaign = run_campaign("coco", 20)  # doctest: +SKIP
    >>> campaign.failed()  # doctest: +SKIP
    0
"""

from detforge.data.fuzz.mutate import MUTATORS, FuzzInput, make_input
from detforge.data.fuzz.runner import (
    FAILURES,
    Campaign,
    Outcome,
    process_input,
    run_campaign,
    run_in_child,
)
from detforge.data.fuzz.seeds import SEEDS

__all__ = ["FAILURES", "MUTATORS", "SEEDS", "Campaign", "FuzzInput", "Outcome", "make_input",
           "process_input", "run_campaign", "run_in_child"]
