"""The dataset fuzzer: a bounded campaign per format, and the harness's own detectors.

A campaign mutates valid datasets of the format (bytes, structure, numbers at 2^31 and
2^63, NaN, deep nesting, YAML alias and XML entity bombs, bad encodings, odd file names,
symlink loops) and runs each input through read -> validate -> write -> read back in a
forked child with CPU and memory limits. Every input must end clean or in one
DetforgeError line. The long run is ``benchmarks/bench_fuzz.py``.
"""

from __future__ import annotations

import pytest

from detforge.data.fuzz import MUTATORS, make_input, run_campaign, run_in_child
from detforge.data.fuzz.mutate import _WEIGHTS
from detforge.data.fuzz.runner import probe

BOUNDED_INPUTS = 300


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc", "kitti"])
def test_bounded_campaign_has_no_traceback_hang_or_blowup(fmt: str) -> None:
    campaign = run_campaign(fmt, BOUNDED_INPUTS, seed=0)
    report = "\n".join(f"  input {i} ({m}): {o.kind}: {o.detail}"
                       for i, m, o in campaign.failures)
    assert campaign.failed() == 0, f"{fmt}: {campaign.failed()} failing inputs\n{report}"
    assert campaign.inputs == BOUNDED_INPUTS
    # the campaign exercised both sides: refusals and clean round trips
    assert campaign.counts["error"] > BOUNDED_INPUTS // 10
    assert campaign.counts["clean"] > BOUNDED_INPUTS // 10


def test_inputs_are_reproducible_and_every_mutator_is_drawn() -> None:
    for fmt, weights in _WEIGHTS.items():
        assert set(weights) <= set(MUTATORS)
        drawn = {make_input(fmt, i).mutator for i in range(200)}
        assert drawn == set(weights), fmt
    a, b = make_input("coco", 17, seed=3), make_input("coco", 17, seed=3)
    assert a.files == b.files and a.mutator == b.mutator
    assert make_input("coco", 17, seed=4).files != a.files or \
        make_input("coco", 18, seed=3).files != a.files


@pytest.mark.parametrize("kind", ["clean", "error", "multi-line-error", "huge-error",
                                  "traceback", "hang", "blowup"])
def test_harness_tells_outcomes_apart(kind: str) -> None:
    outcome = run_in_child(probe(kind), cpu_seconds=1, memory_mb=100)
    expected = {"multi-line-error": "traceback", "huge-error": "traceback"}.get(kind, kind)
    assert outcome.kind == expected, outcome
