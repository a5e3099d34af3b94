"""Drift measures: the Population Stability Index (PSI) and the Kolmogorov-Smirnov statistic.

**PSI** compares two distributions over the same bins::

    PSI = sum_i (p_i - q_i) * ln(p_i / q_i)

with ``q_i`` the reference share and ``p_i`` the live share of bin ``i``. Continuous signals
are binned at the reference's deciles (:func:`quantile_edges`; ties merge bins, so a
discrete signal such as ``boxes_per_image`` gets one bin per value it takes), which gives
every reference bin about the same mass; ``class`` uses one bin per class. Empty bins
would make the logarithm infinite, so both sides are smoothed by half a count per bin
(``(n_i + 0.5) / (n + 0.5 * bins)``). The usual reading (Siddiqi, *Credit Risk
Scorecards*, 2006): under 0.1 no real change, 0.1-0.25 a moderate shift, over 0.25 a
major one; detforge alerts at 0.2 by default. The per-bin terms of the ``class`` signal
are the per-class drift gauges (a class that appears much more or less often than in the
reference has a large term).

**KS** is the largest gap between the two cumulative distributions, ``D = max |F_live(x) -
F_ref(x)|``, in 0..1. The reference keeps 101 quantiles instead of every value, so
``F_ref`` is interpolated between them (error at most 0.01). KS has no bins and does not
depend on the decile choice; PSI weighs the tails more. Both are reported; thresholds
apply to PSI, and to KS where a threshold is set for it.

Both need a live window large enough to be meaningful: the monitor reports nothing (NaN)
until the window holds ``min_images`` images.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["KS_QUANTILES", "ks_statistic", "psi", "psi_terms", "quantile_edges",
           "quantiles", "bin_counts"]

KS_QUANTILES = 101
"""Quantiles the reference keeps per continuous signal (0 %, 1 %, ..., 100 %)."""
_SMOOTH = 0.5


def quantile_edges(values: NDArray[np.floating], bins: int = 10) -> NDArray[np.float64]:
    """Inner bin edges at the ``bins``-quantiles of ``values``, ties merged.

    Bin ``i`` holds ``edges[i-1] < x <= edges[i]`` (the first from -inf, the last to +inf).

    Example:
        >>> quantile_edges(np.arange(10.0), bins=2).tolist()
        [4.0]
        >>> quantile_edges(np.array([1.0, 1, 1, 1, 2]), bins=4).tolist()
        [1.0]
    """
    if len(values) == 0:
        return np.zeros(0, np.float64)
    inner = np.quantile(np.asarray(values, np.float64), np.linspace(0, 1, bins + 1)[1:-1],
                        method="inverted_cdf")  # edges are values taken, not between them
    edges = np.unique(inner)
    return edges[edges < np.max(values)] if len(edges) else edges


def bin_counts(values: NDArray[np.floating], edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Counts of ``values`` in the ``len(edges) + 1`` bins of :func:`quantile_edges`."""
    idx = np.searchsorted(edges, np.asarray(values, np.float64), side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.int64)


def psi_terms(reference: NDArray[np.integer], live: NDArray[np.integer]) -> NDArray[np.float64]:
    """The per-bin terms ``(p_i - q_i) ln(p_i / q_i)`` of the PSI (smoothed shares)."""
    ref = np.asarray(reference, np.float64)
    cur = np.asarray(live, np.float64)
    if ref.shape != cur.shape:
        raise ValueError(f"bin counts differ in length: {ref.shape} vs {cur.shape}")
    q = (ref + _SMOOTH) / (ref.sum() + _SMOOTH * len(ref))
    p = (cur + _SMOOTH) / (cur.sum() + _SMOOTH * len(cur))
    return (p - q) * np.log(p / q)  # type: ignore[no-any-return]


def psi(reference: NDArray[np.integer], live: NDArray[np.integer]) -> float:
    """Population Stability Index of ``live`` bin counts against ``reference`` counts.

    NaN when either side is empty.

    Example:
        >>> psi(np.array([50, 50]), np.array([50, 50]))
        0.0
        >>> round(psi(np.array([50, 50]), np.array([90, 10])), 3)
        0.853
    """
    if np.sum(reference) == 0 or np.sum(live) == 0:
        return math.nan
    return max(0.0, float(psi_terms(reference, live).sum()))


def quantiles(values: NDArray[np.floating]) -> NDArray[np.float64]:
    """The :data:`KS_QUANTILES` quantiles (0 %, 1 %, ..., 100 %) of ``values``."""
    return np.quantile(np.asarray(values, np.float64), np.linspace(0, 1, KS_QUANTILES))


def ks_statistic(reference_quantiles: NDArray[np.floating],
                 live: NDArray[np.floating]) -> float:
    """Two-sample KS statistic of ``live`` values against a reference kept as quantiles.

    Values closer than 0.1 % of the reference's range count as equal (both CDFs are read
    just past each point), so a JSON Lines file's boxes rounded to 0.01 px do not make a
    discrete signal look shifted. NaN when either side is empty.

    Example:
        >>> ref = quantiles(np.linspace(0, 1, 1000))
        >>> ks_statistic(ref, np.linspace(0, 1, 500)) < 0.01
        True
        >>> round(ks_statistic(ref, np.linspace(0.5, 1, 500)), 2)
        0.5
        >>> ks_statistic(quantiles(np.full(10, 3.0)), np.full(5, 3.0 + 1e-9))
        0.0
    """
    q = np.asarray(reference_quantiles, np.float64)
    x = np.sort(np.asarray(live, np.float64))
    if len(q) == 0 or len(x) == 0:
        return math.nan
    span = float(q[-1] - q[0])
    tol = 1e-3 * span if span > 0 else 1e-6 * max(1.0, abs(float(q[0])))
    t = np.unique(np.concatenate([q, x])) + tol
    levels = np.linspace(0, 1, len(q))
    # F_ref(t): the level of the highest quantile <= t, plus the linear part up to the next
    r = np.clip(np.searchsorted(q, t, side="right"), 1, len(q) - 1)
    lo, hi = q[r - 1], q[r]
    frac = np.where(hi > lo, (t - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    f_ref = levels[r - 1] + np.clip(frac, 0.0, 1.0) * (levels[r] - levels[r - 1])
    f_ref = np.where(t < q[0], 0.0, np.where(t >= q[-1], 1.0, f_ref))
    f_live = np.searchsorted(x, t, side="right") / len(x)
    return float(np.max(np.abs(f_live - f_ref)))
