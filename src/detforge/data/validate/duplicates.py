"""Exact and near-duplicate images, and the same image in two splits (a leak).

Exact duplicates share the SHA-256 of their bytes. Near duplicates have 64-bit perceptual
hashes within a small Hamming distance ``t``. Comparing all pairs is quadratic, so the
search uses the pigeonhole principle: cut the hash into ``t + 1`` chunks; two hashes
within distance ``t`` agree on at least one chunk. Images are bucketed by each chunk and
compared (XOR + popcount in numpy) only within a bucket.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from numpy.typing import NDArray

from detforge.data.dataset import UNSET_SPLIT, Dataset
from detforge.data.validate.images import ImageProbe
from detforge.data.validate.report import Finding

__all__ = ["NEAR_DUPLICATE_BITS", "duplicate_findings", "near_duplicate_pairs"]

NEAR_DUPLICATE_BITS = 4
"""Perceptual hashes at most this many bits apart (of 64) are near duplicates."""

_SPLIT_RANK = {"train": 0, "val": 1, "test": 2}


def _pairs_within_runs(keys: NDArray[np.uint64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """All index pairs ``(i, j)``, ``i != j``, with equal ``keys``."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    firsts, seconds = [], []
    active = np.arange(len(k) - 1)
    step = 1
    while active.size:
        other = active + step
        keep = other < len(k)
        active, other = active[keep], other[keep]
        keep = k[other] == k[active]
        active, other = active[keep], other[keep]
        firsts.append(order[active])
        seconds.append(order[other])
        step += 1
    if not firsts:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    return np.concatenate(firsts), np.concatenate(seconds)


def near_duplicate_pairs(hashes: NDArray[np.uint64], *, max_distance: int = NEAR_DUPLICATE_BITS,
                         ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Pairs of 64-bit hashes within ``max_distance`` bits of each other.

    Args:
        hashes: ``[N]`` uint64 hashes.
        max_distance: Largest Hamming distance that counts (0..63).

    Returns:
        ``(first, second, distance)`` with ``first < second``, each pair once.
    """
    hashes = np.asarray(hashes, np.uint64)
    n = len(hashes)
    chunks = max_distance + 1
    bounds = np.linspace(0, 64, chunks + 1).astype(int)
    found: list[NDArray[np.int64]] = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        mask = np.uint64((1 << (hi - lo)) - 1)
        key = (hashes >> np.uint64(lo)) & mask
        a, b = _pairs_within_runs(key)
        dist = np.bitwise_count(hashes[a] ^ hashes[b])
        close = dist <= max_distance
        lo_i = np.minimum(a[close], b[close]).astype(np.int64)
        hi_i = np.maximum(a[close], b[close]).astype(np.int64)
        found.append(lo_i * n + hi_i)
    codes = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    first, second = (codes // max(n, 1)).astype(np.intp), (codes % max(n, 1)).astype(np.intp)
    return first, second, np.bitwise_count(hashes[first] ^ hashes[second]).astype(np.intp)


def _clusters(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for a, b in pairs:
        groups[find(a)].extend((a, b))
    return [sorted(set(g)) for g in groups.values()]


def duplicate_findings(ds: Dataset, probes: list[ImageProbe], *,
                       max_distance: int = NEAR_DUPLICATE_BITS) -> list[Finding]:
    """Exact duplicates, near duplicates and split leaks.

    Each group of duplicates keeps one representative (the first in train, val, test
    order, then table order); every other member is reported against it: a leak (error)
    when it is in another split, else a duplicate (warning).

    Args:
        ds: The dataset.
        probes: One probe per image, from :func:`~detforge.data.validate.images.probe_images`.
        max_distance: Hamming distance (bits) for near duplicates; negative disables them.

    Returns:
        Findings with ``image_index`` set (``value`` is the representative's index).
    """
    ok = [i for i, p in enumerate(probes) if p.status == "ok"]
    pairs: list[tuple[int, int]] = []
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i in ok:
        by_sha[probes[i].sha256].append(i)
    for members in by_sha.values():
        pairs.extend((members[0], m) for m in members[1:])
    if max_distance >= 0 and len(ok) > 1:
        # Identical hashes (e.g. thousands of black frames) are chained to their first
        # image, so the pair search runs over distinct hashes only and stays near-linear.
        hashes = np.array([probes[i].phash for i in ok], np.uint64)
        distinct, first_of, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        pairs.extend((ok[int(first_of[u])], ok[k]) for k, u in enumerate(inverse.tolist())
                     if int(first_of[u]) != k)
        a, b, _ = near_duplicate_pairs(distinct, max_distance=max_distance)
        pairs.extend((ok[int(first_of[i])], ok[int(first_of[j])])
                     for i, j in zip(a.tolist(), b.tolist(), strict=True))
    splits = [str(s) for s in ds.images.split.tolist()]
    out: list[Finding] = []
    for group in _clusters(ds.num_images, pairs):
        group.sort(key=lambda i: (_SPLIT_RANK.get(splits[i], 3) if splits[i] else 4, i))
        rep = group[0]
        for m in group[1:]:
            out.append(_finding(ds, probes, m, rep))
    return out


def _finding(ds: Dataset, probes: list[ImageProbe], m: int, rep: int) -> Finding:
    exact = probes[m].sha256 == probes[rep].sha256
    split_m, split_rep = str(ds.images.split[m]), str(ds.images.split[rep])
    kind = "an exact copy" if exact else (
        f"a near duplicate ({int(np.bitwise_count(np.uint64(probes[m].phash ^ probes[rep].phash)))}"
        " bits of perceptual hash apart)")
    file, other = str(ds.images.file[m]), str(ds.images.file[rep])
    if split_m != split_rep and UNSET_SPLIT not in (split_m, split_rep):
        return Finding("error", "split_leak", file, None,
                       f"image in split {split_m!r} is {kind} of {other} in split {split_rep!r}",
                       f"keep the image in one split only (--fix drops it from {split_m!r})",
                       image_index=m, value=rep)
    check = "exact_duplicate_image" if exact else "near_duplicate_image"
    return Finding("warning", check, file, None, f"image is {kind} of {other}",
                   "delete one copy, or keep both only if their labels differ on purpose",
                   image_index=m, value=rep)
