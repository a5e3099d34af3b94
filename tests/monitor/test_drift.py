"""PSI and KS against their definitions and scipy; the window's readiness and per-class terms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detforge.core.detections import Detections
from detforge.monitor import DriftWindow, Reference, Thresholds
from detforge.monitor.drift import bin_counts, ks_statistic, psi, quantile_edges, quantiles
from detforge.monitor.signals import ImageStats, detection_stats, image_stats


def test_psi_matches_its_formula() -> None:
    ref, live = np.array([30, 50, 20]), np.array([10, 50, 40])
    q = (ref + 0.5) / (ref.sum() + 1.5)
    p = (live + 0.5) / (live.sum() + 1.5)
    assert psi(ref, live) == pytest.approx(float(((p - q) * np.log(p / q)).sum()))
    assert psi(ref, ref) == 0.0
    assert math.isnan(psi(ref, np.zeros(3, np.int64)))


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5, 1.0], ids=lambda s: f"shift{s}")
def test_ks_matches_scipy(shift: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 4000)
    live = rng.normal(shift, 1, 500)
    expected = stats.ks_2samp(ref, live).statistic
    assert ks_statistic(quantiles(ref), live) == pytest.approx(expected, abs=0.02)


def test_quantile_bins_hold_equal_mass_and_merge_ties() -> None:
    values = np.random.default_rng(1).uniform(0, 1, 10_000)
    edges = quantile_edges(values, 10)
    counts = bin_counts(values, edges)
    assert len(counts) == 10 and counts.min() > 900 and counts.sum() == 10_000
    discrete = np.array([0.0] * 50 + [1.0] * 30 + [2.0] * 20)
    assert len(bin_counts(discrete, quantile_edges(discrete, 10))) == 3


def test_image_stats_follow_the_image() -> None:
    flat = image_stats(np.full((480, 640, 3), 128, np.uint8))
    noisy = image_stats(np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8))
    assert flat.brightness == pytest.approx(128 / 255, abs=1e-3)
    assert flat.contrast == 0.0 and flat.sharpness == 0.0
    assert noisy.contrast > 0.1 and noisy.sharpness > 3
    assert flat.resolution == pytest.approx(math.log2(640 * 480))


def _window(reference: Reference, images: int, brightness: float) -> DriftWindow:
    win = DriftWindow(reference, size=100, min_images=20, thresholds=Thresholds(0.2))
    det = Detections(np.array([[0, 0, 10, 20]], np.float32), np.array([0.9], np.float32),
                     np.array([1], np.int32))
    for _ in range(images):
        win.observe(ImageStats(brightness, 0.1, 2.0, 13.0), detection_stats(det, 96, 96))
    return win


def test_window_reports_nothing_until_it_holds_min_images(
        reference: tuple[Reference, object]) -> None:
    ref = reference[0]
    result = _window(ref, 19, 0.05).measure()
    assert not result.ready and result.drifted == []
    assert all(math.isnan(s.psi) for s in result.signals)
    ready = _window(ref, 20, 0.05).measure()
    assert ready.ready and "brightness" in ready.drifted


def test_class_terms_point_at_the_class_that_moved(reference: tuple[Reference, object]) -> None:
    ref = reference[0]
    result = _window(ref, 40, 0.5).measure()
    # every live detection is "dog" (id 1); the reference's mix decides the terms' sizes
    live = dict(result.class_share)
    assert live["dog"][0] == 1.0 and live["cat"][0] == 0.0
    if ref.signals["class"].counts[0]:  # the reference saw cats: their term is the large one
        assert result.class_psi["cat"] > 0
    assert set(result.class_psi) == {"cat", "dog"}


def test_thresholds_refuse_unknown_signals() -> None:
    from detforge.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown drift signals"):
        Thresholds(psi_by_signal={"brightnes": 0.1})
