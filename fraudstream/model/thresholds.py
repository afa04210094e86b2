"""Decision thresholds chosen from costs: approve / review (an analyst looks) / block (declined)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DECISIONS = ("approve", "review", "block")


@dataclass(frozen=True)
class CostSetting:
    """What each outcome costs, in the same unit (e.g. currency).

    A missed fraud costs ``missed_fraud``; every reviewed transaction costs ``review`` (the analyst
    catches the fraud); a blocked legitimate transaction costs ``declined_legit`` (an angry customer);
    a blocked fraud costs nothing."""

    missed_fraud: float = 150.0
    review: float = 5.0
    declined_legit: float = 40.0


@dataclass(frozen=True)
class Thresholds:
    """score >= block -> block; score >= review -> review; else approve."""

    review: float
    block: float
    expected_cost_per_transaction: float
    costs: CostSetting

    def to_dict(self) -> dict[str, Any]:
        return {
            "review": self.review,
            "block": self.block,
            "expected_cost_per_transaction": self.expected_cost_per_transaction,
            "costs": asdict(self.costs),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        return cls(data["review"], data["block"], data["expected_cost_per_transaction"], CostSetting(**data["costs"]))


def decide(probability: np.ndarray, review: float, block: float) -> np.ndarray:
    """Decision per row as an object array of 'approve' / 'review' / 'block'."""
    index = (probability >= review).astype(np.int8) + (probability >= block).astype(np.int8)
    return np.asarray(DECISIONS, dtype=object)[index]


def choose_thresholds(y: np.ndarray, score: np.ndarray, costs: CostSetting, candidates: int = 400) -> Thresholds:
    """The (review, block) pair with the lowest total cost on these (validation) rows.

    Candidates are score quantiles plus 'never' (above every score); all pairs review <= block are
    costed at once from cumulative counts."""
    y = y.astype(bool)
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    never = np.nextafter(1.0, 2.0)  # above every probability, and still valid JSON
    levels = np.unique(np.r_[np.quantile(sorted_score, np.linspace(0.5, 1.0, candidates)), never])
    # For a threshold c: rows with score >= c are at index >= searchsorted(c, 'left').
    at = np.searchsorted(sorted_score, levels, side="left")
    fraud_below = np.r_[0, np.cumsum(y[order])][at]  # frauds with score < c
    legit_above = (~y).sum() - np.r_[0, np.cumsum(~y[order])][at]  # legit with score >= c
    rows_above = score.size - at
    review, block = np.meshgrid(np.arange(levels.size), np.arange(levels.size), indexing="ij")
    cost = (
        fraud_below[review] * costs.missed_fraud
        + (rows_above[review] - rows_above[block]) * costs.review
        + legit_above[block] * costs.declined_legit
    )
    cost = np.where(block >= review, cost, np.inf)
    best_review, best_block = np.unravel_index(np.argmin(cost), cost.shape)
    return Thresholds(
        review=float(levels[best_review]),
        block=float(levels[best_block]),
        expected_cost_per_transaction=float(cost[best_review, best_block] / score.size),
        costs=costs,
    )
