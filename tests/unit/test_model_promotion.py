"""The promotion rule of automatic retraining: better, worse, tie, too few labels."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.model.promotion import PromotionRule, decide_promotion, recall_at_threshold

pytestmark = pytest.mark.unit
RULE = PromotionRule(average_precision_margin=0.01, card_precision_margin=0.01, recall_tolerance=0.0,
                     min_fraud_labels=50)
CHAMPION = {"average_precision": 0.60, "card_precision_at_100": 0.30, "recall_at_review": 0.70}


def _challenger(**changes: float) -> dict[str, float]:
    return {**CHAMPION, **changes}


def test_a_better_challenger_is_promoted() -> None:
    decision = decide_promotion(CHAMPION, _challenger(average_precision=0.65, card_precision_at_100=0.33), 200, RULE)
    assert decision.promote
    assert len(decision.reasons) == 3 and "better" in decision.reasons[0]


def test_a_worse_challenger_is_not_promoted() -> None:
    decision = decide_promotion(CHAMPION, _challenger(average_precision=0.50, card_precision_at_100=0.20), 200, RULE)
    assert not decision.promote
    assert "not better" in decision.reasons[0] and "not better" in decision.reasons[1]


def test_a_tie_keeps_the_champion_even_with_zero_margins() -> None:
    assert not decide_promotion(CHAMPION, dict(CHAMPION), 200, RULE).promote
    no_margins = PromotionRule(average_precision_margin=0, card_precision_margin=0, min_fraud_labels=1)
    assert not decide_promotion(CHAMPION, dict(CHAMPION), 200, no_margins).promote


def test_better_by_less_than_the_margin_is_not_enough_and_the_margin_itself_is() -> None:
    below = _challenger(average_precision=0.605, card_precision_at_100=0.35)
    assert not decide_promotion(CHAMPION, below, 200, RULE).promote
    at = _challenger(average_precision=0.625, card_precision_at_100=0.3125)
    assert decide_promotion(CHAMPION, at, 200, PromotionRule(0.025, 0.0125, 0.0, 50)).promote


def test_both_ranking_metrics_must_improve() -> None:
    only_ap = _challenger(average_precision=0.70, card_precision_at_100=0.30)
    decision = decide_promotion(CHAMPION, only_ap, 200, RULE)
    assert not decision.promote and "card precision@100" in decision.reasons[1]


def test_lower_recall_at_the_review_threshold_blocks_promotion_beyond_the_tolerance() -> None:
    challenger = _challenger(average_precision=0.70, card_precision_at_100=0.40, recall_at_review=0.65)
    decision = decide_promotion(CHAMPION, challenger, 200, RULE)
    assert not decision.promote and decision.reasons[2].endswith("worse")
    tolerant = PromotionRule(recall_tolerance=0.06, min_fraud_labels=50)
    assert decide_promotion(CHAMPION, challenger, 200, tolerant).promote


def test_too_few_fraud_labels_keep_the_champion_whatever_the_figures() -> None:
    decision = decide_promotion(CHAMPION, _challenger(average_precision=0.99, card_precision_at_100=0.99), 49, RULE)
    assert not decision.promote
    assert decision.reasons == ("too few fraud labels to compare: 49 < 50; the champion stays",)
    assert decide_promotion(CHAMPION, _challenger(average_precision=0.99, card_precision_at_100=0.99), 50, RULE).promote


def test_missing_metrics_and_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match=r"challenger\.recall_at_review"):
        decide_promotion(CHAMPION, {"average_precision": 1.0, "card_precision_at_100": 1.0}, 100, RULE)
    with pytest.raises(ValueError, match="recall_tolerance"):
        PromotionRule(recall_tolerance=-0.1)
    with pytest.raises(ValueError, match="min_fraud_labels"):
        PromotionRule(min_fraud_labels=0)


def test_recall_at_threshold_counts_fraud_at_or_above_it() -> None:
    y = np.array([1, 1, 1, 1, 0])
    score = np.array([0.9, 0.5, 0.49, 0.1, 0.99])
    assert recall_at_threshold(y, score, 0.5) == pytest.approx(0.5)
    assert np.isnan(recall_at_threshold(np.zeros(3), np.ones(3), 0.5))
