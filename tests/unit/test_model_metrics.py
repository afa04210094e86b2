"""Evaluation metrics and cost-based thresholds on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.model.metrics import card_precision_at_k, evaluate, recall_at_fpr
from fraudstream.model.thresholds import CostSetting, choose_thresholds, decide
from fraudstream.timeunits import MICROS_PER_DAY

pytestmark = pytest.mark.unit


def test_card_precision_counts_accounts_per_day_and_averages_days() -> None:
    # Day 0: accounts a (fraud, 0.9), b (legit, 0.8 and 0.1), c (legit 0.2). Top 2 = a, b -> 1/2.
    # Day 1: a (legit 0.95), d (fraud 0.5), e (fraud 0.4). Top 2 = a, d -> 1/2... with k = 2.
    y = np.array([1, 0, 0, 0, 0, 1, 1])
    score = np.array([0.9, 0.8, 0.1, 0.2, 0.95, 0.5, 0.4])
    time = np.array([0, 1, 2, 3, MICROS_PER_DAY, MICROS_PER_DAY + 1, MICROS_PER_DAY + 2])
    account = np.array(["a", "b", "b", "c", "a", "d", "e"], dtype=object)
    assert card_precision_at_k(y, score, time, account, k=2) == pytest.approx(0.5)
    assert card_precision_at_k(y, score, time, account, k=3) == pytest.approx((1 / 3 + 2 / 3) / 2)


def test_recall_at_fpr() -> None:
    y = np.array([0] * 100 + [1] * 4)
    score = np.r_[np.linspace(0, 0.5, 99), 0.95, [0.99, 0.98, 0.9, 0.2]]
    # One legit above 0.9 is 1 % FPR: three frauds score at least 0.9.
    assert recall_at_fpr(y, score, 0.01) == pytest.approx(0.75)
    metrics = evaluate(y, score, np.zeros(104, dtype=np.int64), np.array(["a"] * 104, dtype=object))
    assert set(metrics) == {"roc_auc", "average_precision", "recall_at_1pct_fpr", "card_precision_at_100"}


def test_thresholds_follow_costs() -> None:
    rng = np.random.default_rng(0)
    # 20 frauds and 30 legit share the band 0.6-1.0; 1000 legit lie below 0.5.
    y = np.r_[np.zeros(1030), np.ones(20)].astype(bool)
    score = np.r_[rng.uniform(0, 0.5, 1000), rng.uniform(0.6, 1.0, 50)]
    costly_declines = choose_thresholds(y, score, CostSetting(missed_fraud=100, review=1, declined_legit=50))
    assert 0.5 < costly_declines.review <= score[y].min()  # review every fraud, nothing below the band...
    assert costly_declines.block > 1.0  # ...and never block
    assert costly_declines.expected_cost_per_transaction <= 50 / 1050
    free_declines = choose_thresholds(y, score, CostSetting(missed_fraud=100, review=1, declined_legit=0))
    assert free_declines.block <= 0.6 and free_declines.expected_cost_per_transaction == 0
    decisions = decide(np.array([0.1, 0.55, 0.9]), review=0.5, block=0.8)
    assert decisions.tolist() == ["approve", "review", "block"]
