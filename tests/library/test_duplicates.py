"""Duplicate groups: exact copies, near copies, the file to keep, the band search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detforge.core.errors import ConfigError
from detforge.library import find_duplicates, open_store
from detforge.library.duplicates import near_pairs
from detforge.library.hashing import hamming


def test_groups_and_keepers(indexed: tuple[Path, Path, dict[str, Any]]) -> None:
    _, db, m = indexed
    p = m["paths"]
    con = open_store(db, readonly=True)
    groups = {(g.kind, frozenset(x["path"] for x in g.members)): g
              for g in find_duplicates(con, threshold=6)}
    con.close()
    exact = groups[("exact", frozenset({p["dog23"], p["copy"]}))]
    near = groups[("near", frozenset({p["dog24"], p["near"]}))]
    assert len(groups) == 2
    assert near.keep == p["dog24"]  # more pixels than the small re-encoded copy
    assert exact.keep == p["dog23"]  # same pixels and size: the earlier date, then the path
    assert [x["distance"] for x in exact.members] == [0, 0]
    assert 0 < max(x["distance"] for x in near.members) <= 6


def test_threshold_zero_finds_exact_copies_only(indexed: tuple[Path, Path, dict[str, Any]]
                                                ) -> None:
    con = open_store(indexed[1], readonly=True)
    groups = find_duplicates(con, threshold=0)
    with pytest.raises(ConfigError, match="threshold"):
        find_duplicates(con, threshold=40)
    con.close()
    assert [g.kind for g in groups] == ["exact"]


@pytest.mark.parametrize("threshold", [0, 3, 6, 10])
def test_band_search_equals_brute_force(threshold: int) -> None:
    rng = np.random.default_rng(threshold)
    base = rng.integers(-2**63, 2**63 - 1, 60, dtype=np.int64)
    flips = rng.integers(0, 64, (60, 4))
    mask = (1 << 64) - 1
    near = np.array([(int(b) & mask) ^ sum(1 << int(f) for f in fl[:rng.integers(0, 5)])
                     for b, fl in zip(base, flips, strict=True)], np.uint64).view(np.int64)
    hashes = np.concatenate([base, near])
    brute = sorted((i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                   if hamming(int(hashes[i]), int(hashes[j])) <= threshold)
    assert near_pairs(hashes, threshold).tolist() == [list(x) for x in brute]
