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


def compromised_since(labels: pd.DataFrame) -> pd.Series:
    """Per account with a fraud label, when its first fraud label arrived (``labeled_at_us``): from then
    on the card is known compromised, blocked, and no longer investigated."""
    fraud = labels.loc[labels["is_fraud"].astype(bool), ["account_id", "labeled_at_us"]]
    return fraud.groupby("account_id", sort=True)["labeled_at_us"].min().astype(np.int64)


def card_precision_at_k(
    y: np.ndarray,
    score: np.ndarray,
    event_time_us: np.ndarray,
    account_id: np.ndarray,
    k: int = 100,
    known_compromised_us: pd.Series | None = None,
) -> float:
    """Per day, the share of compromised cards among the k highest-risk cards investigators can still
    look at, averaged over days.

    It models a team that can investigate k cards a day. A card (account) is ranked by its highest
    transaction score of the day and counts as compromised that day when one of its transactions is
    fraud. A card found compromised on an earlier day is blocked and leaves the ranking: found by the
    investigators (compromised and in that day's top k) or by a fraud label that had arrived
    (``known_compromised_us``, per account, e.g. ``compromised_since(labels)``; cards known before the
    period starts are out from its first day). A day with fewer than k cards still divides by k."""
    frame = pd.DataFrame(
        {"day": event_time_us // MICROS_PER_DAY, "account": account_id, "fraud": y.astype(bool), "score": score}
    )
    daily = frame.groupby(["day", "account"], sort=False).agg(score=("score", "max"), fraud=("fraud", "max"))
    daily = daily.reset_index().sort_values(["day", "score", "account"], ascending=[True, False, True])
    if known_compromised_us is not None:
        known_day = daily["account"].map(known_compromised_us // MICROS_PER_DAY)
        daily = daily[~(known_day < daily["day"]).to_numpy()]  # known on an earlier day (NaN: never)
    days = np.unique(frame["day"].to_numpy())
    if days.size == 0:
        return float("nan")
    found: set[object] = set()
    precisions = []
    by_day = dict(tuple(daily.groupby("day", sort=True)))
    for day in days.tolist():
        group = by_day.get(day)
        if group is None:
            precisions.append(0.0)
            continue
        top = group[~group["account"].isin(found)].head(k)
        hits = top.loc[top["fraud"].to_numpy(), "account"]
        found.update(hits.tolist())
        precisions.append(len(hits) / k)
    return float(np.mean(precisions))


def evaluate(
    y: np.ndarray,
    score: np.ndarray,
    event_time_us: np.ndarray,
    account_id: np.ndarray,
    known_compromised_us: pd.Series | None = None,
) -> dict[str, float]:
    """ROC AUC, average precision, recall at 1 % FPR and card precision@100 (cards known compromised
    are left out of its ranking, see ``card_precision_at_k``)."""
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "average_precision": float(average_precision_score(y, score)),
        "recall_at_1pct_fpr": recall_at_fpr(y, score, 0.01),
        "card_precision_at_100": card_precision_at_k(y, score, event_time_us, account_id, 100, known_compromised_us),
    }
