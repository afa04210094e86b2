"""Drift: reference histograms at training deciles, PSI of live counts over a sliding window of batches."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.model.drift import DriftWindow, Histogram, drift_reference, drifted, psi, reference_histogram

pytestmark = pytest.mark.unit


def test_reference_bins_hold_a_tenth_each_and_missing_values_have_their_own_bin() -> None:
    values = np.append(np.arange(1000, dtype=float), [np.nan] * 10)
    histogram = reference_histogram(values)
    assert len(histogram.edges) == 9 and len(histogram.shares) == 11
    assert histogram.shares[:-1] == pytest.approx(np.full(10, 100 / 1010), abs=1e-3)
    assert histogram.shares[-1] == pytest.approx(10 / 1010)
    assert Histogram.from_dict(histogram.to_dict()).edges.tolist() == histogram.edges.tolist()


def test_a_constant_feature_has_one_edge_and_all_counts_land() -> None:
    histogram = reference_histogram(np.zeros(100))
    assert histogram.counts(np.array([-1.0, 0.0, 3.0, np.inf])).sum() == 4


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    histogram = reference_histogram(rng.normal(size=20_000))
    assert psi(histogram.shares, histogram.counts(rng.normal(size=20_000))) < 0.01
    assert psi(histogram.shares, histogram.counts(rng.normal(1.0, size=20_000))) > 0.2
    assert np.isnan(psi(histogram.shares, np.zeros(len(histogram.shares))))


def test_the_window_forgets_old_batches() -> None:
    rng = np.random.default_rng(2)
    names = ["amount", "is_weekend"]
    reference = drift_reference({"amount": rng.normal(size=5_000)}, rng.uniform(size=5_000))
    window = DriftWindow(reference, names, batches=3)
    assert window.names == ["amount"]  # features without a reference (categorical ones) are not tracked

    def batch(shift: float) -> tuple[np.ndarray, np.ndarray]:
        return np.column_stack((rng.normal(shift, size=500), np.zeros(500))), rng.uniform(size=500)

    for _ in range(3):
        window.observe(*batch(3.0))
    assert drifted(window.psi()) == {"amount": window.psi()["amount"]}
    for _ in range(3):  # the shifted batches leave the window
        window.observe(*batch(0.0))
    assert drifted(window.psi()) == {}
    assert window.psi()["score"] < 0.05
