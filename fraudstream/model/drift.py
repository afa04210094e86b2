"""Drift: how far live features and scores have moved from what the model was trained on, as PSI.

Training stores a reference histogram per feature and for the score in the manifest: bin edges at the
deciles of the training values (so each bin holds about a tenth of them) plus a bin for missing values.
Live traffic is counted into the same bins over a sliding window of recent batches, and the population
stability index compares the two distributions:

    PSI = sum over bins of (live share - reference share) * ln(live share / reference share)

with empty bins floored at a small share so that a bin seen on one side only counts, but finitely. The
usual reading: below 0.1 stable, 0.1-0.2 moderate shift, above 0.2 (the default threshold) a shift that
calls for retraining.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Bins per histogram (quantiles of the training values); a missing-value bin comes on top.
BINS = 10
#: Share given to an empty bin on either side.
FLOOR = 1e-4
DEFAULT_THRESHOLD = 0.2
SCORE = "score"


@dataclass(frozen=True)
class Histogram:
    """Inner bin edges (values below the first edge fall in bin 0, at or above the last in the last bin) and
    the share of values per bin, the missing-value bin last."""

    edges: np.ndarray
    shares: np.ndarray

    def counts(self, values: np.ndarray) -> np.ndarray:
        """How many of ``values`` fall in each bin (missing and infinite values in the last one)."""
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        bins = np.searchsorted(self.edges, values[finite], side="right")
        counts = np.bincount(bins, minlength=len(self.edges) + 1).astype(np.float64)
        return np.append(counts, float((~finite).sum()))

    def to_dict(self) -> dict[str, list[float]]:
        return {"edges": self.edges.tolist(), "shares": self.shares.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> Histogram:
        return cls(np.asarray(data["edges"], dtype=np.float64), np.asarray(data["shares"], dtype=np.float64))


def reference_histogram(values: np.ndarray, bins: int = BINS) -> Histogram:
    """The training distribution of one feature (or the score): decile edges, shares per bin."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if finite.size else np.zeros(0)
    empty = Histogram(edges, np.zeros(len(edges) + 2))
    counts = empty.counts(values)
    return Histogram(edges, counts / max(counts.sum(), 1.0))


def psi(reference: np.ndarray, observed_counts: np.ndarray) -> float:
    """Population stability index of observed counts against reference shares; NaN with nothing observed."""
    total = observed_counts.sum()
    if total <= 0:
        return float("nan")
    live = np.maximum(observed_counts / total, FLOOR)
    expected = np.maximum(reference, FLOOR)
    return float(((live - expected) * np.log(live / expected)).sum())


def drift_reference(features: Mapping[str, np.ndarray], score: np.ndarray) -> dict[str, Any]:
    """The manifest's ``drift_reference``: a histogram per feature and for the score."""
    histograms = {name: reference_histogram(values).to_dict() for name, values in features.items()}
    return {"bins": BINS, "features": histograms, SCORE: reference_histogram(score).to_dict()}


class DriftWindow:
    """Counts of live values in the reference's bins over the last ``batches`` batches; PSI per feature and
    for the score. Cost per batch: one binary search per value, no stored rows."""

    def __init__(self, reference: Mapping[str, Any], feature_names: Sequence[str], batches: int = 200) -> None:
        known = reference.get("features", {})
        self.names = [name for name in feature_names if name in known]
        self._columns = [list(feature_names).index(name) for name in self.names]
        self.histograms = [Histogram.from_dict(known[name]) for name in self.names]
        self.score_histogram = Histogram.from_dict(reference[SCORE])
        self._recent: deque[list[np.ndarray]] = deque(maxlen=batches)
        self._totals = [np.zeros(len(h.shares)) for h in (*self.histograms, self.score_histogram)]

    @classmethod
    def for_manifest(cls, manifest: Mapping[str, Any], feature_names: Sequence[str]) -> DriftWindow | None:
        """The window for a model's manifest; None for a model trained before references were stored."""
        reference = manifest.get("drift_reference")
        return None if reference is None else cls(reference, feature_names)

    def observe(self, matrix: np.ndarray, score: np.ndarray) -> None:
        """One batch: ``matrix`` (rows, feature_names) and the model's probabilities."""
        if matrix.shape[0] == 0:
            return
        counts = [h.counts(matrix[:, column]) for h, column in zip(self.histograms, self._columns, strict=True)]
        counts.append(self.score_histogram.counts(score))
        if len(self._recent) == self._recent.maxlen:
            for total, old in zip(self._totals, self._recent[0], strict=True):
                total -= old
        self._recent.append(counts)
        for total, new in zip(self._totals, counts, strict=True):
            total += new

    def psi(self) -> dict[str, float]:
        """PSI per feature name and for ``score`` over the window."""
        values = {name: psi(h.shares, total) for name, h, total in zip(self.names, self.histograms, self._totals,
                                                                          strict=False)}
        values[SCORE] = psi(self.score_histogram.shares, self._totals[-1])
        return values


def drifted(values: Mapping[str, float], threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """The entries above the threshold (NaN, nothing observed, is not drift)."""
    return {name: value for name, value in values.items() if value > threshold}
