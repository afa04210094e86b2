"""Evaluation metrics a fraud team reads: ranking quality and what analysts see each day."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from fraudstream.timeunits import MICROS_PER_DAY

METRIC_NAMES = ("roc_auc", "average_precision", "recall_at_1pct_fpr", "card_precision_at_100")


def recall_at_fpr(y: np.ndarray, score: np.ndarray, max_fpr: float = 0.01) -> float:
    """Share of frauds caught when at most ``max_fpr`` of legitimate transactions are flagged."""
    fpr, tpr, _ = roc_curve(y, score)
    return float(tpr[fpr <= max_fpr].max())


def card_precision_at_k(
    y: np.ndarray, score: np.ndarray, event_time_us: np.ndarray, account_id: np.ndarray, k: int = 100
) -> float:
    """Per day, the share of fraudulent accounts among the k accounts with the highest score that day
    (an account's daily score is its highest transaction score), averaged over days.

    It models a team that can investigate k cards a day; a day with fewer than k accounts still
    divides by k."""
    frame = pd.DataFrame(
        {"day": event_time_us // MICROS_PER_DAY, "account": account_id, "fraud": y.astype(bool), "score": score}
    )
    daily = frame.groupby(["day", "account"], sort=False).agg(score=("score", "max"), fraud=("fraud", "max"))
    daily = daily.reset_index().sort_values(["day", "score", "account"], ascending=[True, False, True])
    top = daily.groupby("day", sort=True).head(k)
    return float((top.groupby("day")["fraud"].sum() / k).mean())


def evaluate(y: np.ndarray, score: np.ndarray, event_time_us: np.ndarray, account_id: np.ndarray) -> dict[str, float]:
    """ROC AUC, average precision, recall at 1 % FPR and card precision@100."""
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "average_precision": float(average_precision_score(y, score)),
        "recall_at_1pct_fpr": recall_at_fpr(y, score, 0.01),
        "card_precision_at_100": card_precision_at_k(y, score, event_time_us, account_id, 100),
    }
