"""The guarded promotion rule of automatic retraining: when a challenger may replace the champion.

Both models are evaluated on the same, most recent matured labels. The challenger is promoted only
when it is better by the configured margins on average precision **and** on card precision@100, and
not worse (beyond a tolerance) on recall at its review threshold, the share of fraud the analysts
would see. With too few fraud labels in the evaluation window nothing can be told apart, so the
champion stays. Ties keep the champion: a change must earn its risk. Every decision carries the
reasons, for the retrain report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: The metrics the rule reads (fraudstream.model.metrics.evaluate plus recall at the review threshold).
RULE_METRICS = ("average_precision", "card_precision_at_100", "recall_at_review")


@dataclass(frozen=True)
class PromotionRule:
    """Margins are absolute differences of metrics in [0, 1]."""

    average_precision_margin: float = 0.01
    card_precision_margin: float = 0.01
    #: How much recall at the review threshold the challenger may lose and still be promoted.
    recall_tolerance: float = 0.0
    #: Fewer fraud labels than this in the evaluation window: no decision can be trusted.
    min_fraud_labels: int = 50

    def __post_init__(self) -> None:
        for name in ("average_precision_margin", "card_precision_margin", "recall_tolerance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more (got {getattr(self, name):g})")
        if self.min_fraud_labels < 1:
            raise ValueError(f"min_fraud_labels must be at least 1 (got {self.min_fraud_labels})")


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    #: One sentence per check, in the order checked.
    reasons: tuple[str, ...]


def recall_at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> float:
    """Share of fraud scored at or above ``threshold`` (what the review queue would catch)."""
    fraud = np.asarray(y, dtype=bool)
    return float((np.asarray(score)[fraud] >= threshold).mean()) if fraud.any() else float("nan")


def decide_promotion(champion: Mapping[str, float], challenger: Mapping[str, float], fraud_labels: int,
                     rule: PromotionRule | None = None) -> PromotionDecision:
    """Promote the challenger or keep the champion, given both models' RULE_METRICS on the same rows."""
    rule = rule or PromotionRule()
    missing = [f"{who}.{name}" for who, metrics in (("champion", champion), ("challenger", challenger))
               for name in RULE_METRICS if name not in metrics]
    if missing:
        raise ValueError(f"metrics missing for the promotion rule: {', '.join(missing)}")
    if fraud_labels < rule.min_fraud_labels:
        return PromotionDecision(False, (f"too few fraud labels to compare: {fraud_labels} < "
                                         f"{rule.min_fraud_labels}; the champion stays",))
    reasons = []
    checks = (
        ("average precision", "average_precision", rule.average_precision_margin),
        ("card precision@100", "card_precision_at_100", rule.card_precision_margin),
    )
    better = True
    for label, name, margin in checks:
        gain = challenger[name] - champion[name]
        passed = gain > 0 and gain >= margin
        better &= passed
        reasons.append(f"{label}: {challenger[name]:.4f} vs {champion[name]:.4f} ({gain:+.4f}; "
                       f"needs more than 0 and at least +{margin:.4f}): {'better' if passed else 'not better'}")
    loss = champion["recall_at_review"] - challenger["recall_at_review"]
    kept = loss <= rule.recall_tolerance
    reasons.append(f"recall at the review threshold: {challenger['recall_at_review']:.4f} vs "
                   f"{champion['recall_at_review']:.4f} (may lose at most {rule.recall_tolerance:.4f}): "
                   f"{'kept' if kept else 'worse'}")
    return PromotionDecision(better and kept, tuple(reasons))
