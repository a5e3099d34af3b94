"""Diversity: k-center greedy on image embeddings, perceptual-hash vectors, and near duplicates.

k-center greedy (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A
Core-Set Approach", ICLR 2018) picks, one at a time, the candidate farthest from every
image already chosen or already labelled, so K picks cover the pool as well as K centres
can (within a factor 2 of the best covering radius). Distances are Euclidean between
L2-normalised embeddings, kept as one running minimum per candidate: K picks over N
candidates of dimension D cost ``O(K N D)``.

Embeddings are pooled backbone features when the model's graph exposes them
(:mod:`detforge.active.embedding`), else the 64-bit perceptual hash of the image spread
into a ``{-1/8, +1/8}^64`` vector, whose squared distance is the Hamming distance / 16.

Near duplicates are images whose perceptual hashes differ in at most
:data:`~detforge.data.validate.duplicates.NEAR_DUPLICATE_BITS` bits (``detforge data
validate`` uses the same rule), or whose bytes are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ConfigError
from detforge.data.validate.duplicates import NEAR_DUPLICATE_BITS, near_duplicate_pairs

__all__ = ["NEAR_DUPLICATE_BITS", "duplicate_groups", "k_center_greedy", "near_duplicates_of",
           "normalise_rows", "phash_vectors"]

F32 = NDArray[np.float32]


def normalise_rows(x: NDArray[np.floating]) -> F32:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.where(norm > 0, norm, 1.0), np.float32)


def phash_vectors(hashes: Sequence[int] | NDArray[np.uint64]) -> F32:
    """64-bit perceptual hashes as ``[N, 64]`` unit vectors of +-1/8.

    Example:
        >>> v = phash_vectors([0, 0b1011])
        >>> float(((v[0] - v[1]) ** 2).sum() * 16)  # Hamming distance 3
        3.0
    """
    h = np.asarray(hashes, np.uint64).reshape(-1)
    bits = (h[:, None] >> np.arange(64, dtype=np.uint64)[None, :]) & np.uint64(1)
    return np.asarray((bits.astype(np.float32) * 2.0 - 1.0) / 8.0, np.float32)


def k_center_greedy(embeddings: NDArray[np.floating], k: int, *,
                    labelled: NDArray[np.floating] | None = None,
                    eligible: NDArray[np.bool_] | None = None,
                    first: int | None = None) -> tuple[list[int], list[float]]:
    """Pick ``k`` rows of ``embeddings`` by k-center greedy.

    Args:
        embeddings: ``[N, D]`` candidate embeddings (normalise them first).
        k: How many to pick.
        labelled: ``[M, D]`` embeddings of images already labelled; they are centres from
            the start, so picks avoid what is labelled already.
        eligible: ``[N]`` mask of rows that may be picked (default: all).
        first: Row to pick first when there are no labelled centres (default: the eligible
            row farthest from the eligible rows' mean, so the result is deterministic).

    Returns:
        ``(rows, distances)``: the picked rows in pick order, and each one's distance to
        the nearest centre at the moment it was picked (how new it was).

    Raises:
        ConfigError: ``k`` exceeds the eligible rows, or shapes do not match.

    Example:
        >>> pts = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 5.0]])
        >>> k_center_greedy(pts, 3, first=0)[0]
        [0, 2, 3]
    """
    x = np.asarray(embeddings, np.float32)
    n = len(x)
    ok = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool).copy()
    if ok.shape != (n,):
        raise ConfigError(f"eligible mask has shape {ok.shape}, expected ({n},)")
    if k > int(ok.sum()):
        raise ConfigError(f"cannot pick {k} images by k-center from {int(ok.sum())} candidates")
    min_dist = np.full(n, np.inf, np.float32)
    if labelled is not None and len(labelled):
        centres = np.asarray(labelled, np.float32)
        if centres.shape[1:] != x.shape[1:]:
            raise ConfigError(f"labelled embeddings have shape {centres.shape}, candidates "
                              f"{x.shape}; they must come from the same model")
        for start in range(0, len(centres), 1024):
            min_dist = np.minimum(min_dist, _sq_dist(x, centres[start:start + 1024]).min(1))
    picked: list[int] = []
    gains: list[float] = []
    for _ in range(k):
        if np.isinf(min_dist[ok]).all():
            if first is None or not ok[first]:
                rows = np.flatnonzero(ok)
                mean = x[rows].mean(axis=0, keepdims=True)
                first = int(rows[np.argmax(_sq_dist(x[rows], mean)[:, 0])])
            choice, gain = first, float("inf")
        else:
            masked = np.where(ok, min_dist, -1.0)
            choice = int(np.argmax(masked))
            gain = float(np.sqrt(max(masked[choice], 0.0)))
        picked.append(choice)
        gains.append(gain)
        ok[choice] = False
        min_dist = np.minimum(min_dist, _sq_dist(x, x[choice:choice + 1])[:, 0])
    return picked, gains


def _sq_dist(a: F32, b: F32) -> F32:
    """``[len(a), len(b)]`` squared Euclidean distances (clipped at 0)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.asarray(np.maximum(d, 0.0), np.float32)


def duplicate_groups(hashes: Sequence[int], digests: Sequence[str], *,
                     max_bits: int = NEAR_DUPLICATE_BITS) -> NDArray[np.int64]:
    """Group near-duplicate images: each row gets the smallest row index of its group.

    Args:
        hashes: 64-bit perceptual hash per image.
        digests: SHA-256 of each image's bytes (equal digests are duplicates).
        max_bits: Hashes at most this many bits apart are near duplicates (-1: exact only).

    Returns:
        ``[N]`` group representative per row (a row alone is its own).

    Example:
        >>> duplicate_groups([0, 1, 2**40 - 1, 0], ["a", "b", "c", "d"]).tolist()
        [0, 0, 2, 0]
    """
    n = len(hashes)
    parent = np.arange(n, dtype=np.int64)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    first_of: dict[str, int] = {}
    for i, d in enumerate(digests):
        union(first_of.setdefault(d, i), i)
    if max_bits >= 0 and n > 1:
        # Equal hashes (a run of black frames) are chained to their first row, so the pair
        # search runs over distinct hashes and stays near-linear.
        distinct, first, inverse = np.unique(np.asarray(hashes, np.uint64), return_index=True,
                                             return_inverse=True)
        for i, u in enumerate(inverse.tolist()):
            union(int(first[u]), i)
        a, b, _ = near_duplicate_pairs(distinct, max_distance=max_bits)
        for i, j in zip(a.tolist(), b.tolist(), strict=True):
            union(int(first[i]), int(first[j]))
    return np.array([find(i) for i in range(n)], np.int64)


def near_duplicates_of(hashes: Sequence[int], reference: Sequence[int], *,
                       max_bits: int = NEAR_DUPLICATE_BITS) -> dict[int, int]:
    """Rows of ``hashes`` within ``max_bits`` of some ``reference`` hash.

    Args:
        hashes: Candidate hashes (the pool).
        reference: Hashes of images already labelled.
        max_bits: Largest Hamming distance that counts.

    Returns:
        ``{candidate row: reference row}`` for every near duplicate (the closest reference).
    """
    n = len(hashes)
    if not n or not len(reference) or max_bits < 0:
        return {}
    both = np.concatenate([np.asarray(hashes, np.uint64), np.asarray(reference, np.uint64)])
    a, b, dist = near_duplicate_pairs(both, max_distance=max_bits)
    cross = (a < n) & (b >= n)
    best: dict[int, tuple[int, int]] = {}
    for i, j, d in zip(a[cross].tolist(), b[cross].tolist(), dist[cross].tolist(), strict=True):
        if i not in best or d < best[i][0]:
            best[i] = (d, j - n)
    return {i: ref for i, (_, ref) in sorted(best.items())}
