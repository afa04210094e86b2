"""Label maturity: which transactions of the system's own history have a label a model can learn from.

Labels arrive late: a chargeback (fraud) within ``fraud_label_days`` of the transaction, a "no dispute"
(legitimate) label, if the labeller sends one, within ``legitimate_label_days``. At a moment ``as_of``
(event time) a transaction's label is known when

- a label for it has arrived (``labeled_at <= as_of``): fraud or legitimate as labeled, or
- no label has arrived but its fraud-label window has passed: no chargeback can come any more, so it
  is legitimate.

Any other transaction (recent, unlabeled) is unknown: it is replayed, so it warms the feature state,
but it is never counted, and in particular never counted as legitimate. The default split is laid back
from ``as_of - fraud_label_days`` (the end of the matured window), so validation and test hold matured
rows only. Transactions past their legitimate-label window without any label are counted as overdue:
a sign that the labeller is not running.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from fraudstream.events.contract import format_time_us
from fraudstream.model.dataset import LabeledHistory
from fraudstream.timeunits import MICROS_PER_DAY


@dataclass(frozen=True)
class LabelMaturity:
    """How long labels take to arrive, in days."""

    fraud_label_days: float = 21.0
    legitimate_label_days: float = 45.0

    def __post_init__(self) -> None:
        for name in ("fraud_label_days", "legitimate_label_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more (got {getattr(self, name):g})")


@dataclass(frozen=True)
class LabelStatus:
    """Per transaction (in the order given): whether its label is known and whether it is fraud."""

    known: np.ndarray
    is_fraud: np.ndarray
    #: End of the matured window: transactions before it are all known.
    matured_until_us: int
    #: Transactions past their legitimate-label window with no label at all.
    overdue: int


def label_status(
    transaction_id: np.ndarray, event_time_us: np.ndarray, labels: pd.DataFrame, as_of_us: int,
    maturity: LabelMaturity,
) -> LabelStatus:
    """Known / fraud per transaction at ``as_of_us`` from the labels (LABEL_COLUMNS) arrived by then."""
    arrived = labels[labels["labeled_at_us"].to_numpy() <= as_of_us]
    # One label per transaction (the labels table's key); the first arrival wins, as in the table.
    arrived = arrived.drop_duplicates("transaction_id", keep="first")
    label = pd.Series(arrived["is_fraud"].to_numpy(dtype=bool), index=arrived["transaction_id"].to_numpy())
    found = label.reindex(transaction_id)
    labeled = found.notna().to_numpy()
    is_fraud = found.fillna(False).to_numpy(dtype=bool)
    age_us = as_of_us - event_time_us
    matured = age_us >= round(maturity.fraud_label_days * MICROS_PER_DAY)
    overdue = ~labeled & (age_us >= round(maturity.legitimate_label_days * MICROS_PER_DAY))
    known = (labeled | matured) & (age_us >= 0)
    return LabelStatus(known, is_fraud, as_of_us - round(maturity.fraud_label_days * MICROS_PER_DAY),
                       int(overdue.sum()))


def with_maturity(history: LabeledHistory, as_of_us: int, maturity: LabelMaturity) -> LabeledHistory:
    """The history with only the labels known at ``as_of_us`` counted (and recorded in its source)."""
    transactions = history.transactions
    labels = history.labels[history.labels["labeled_at_us"].to_numpy() <= as_of_us].reset_index(drop=True)
    status = label_status(transactions["transaction_id"].to_numpy(dtype=object),
                          transactions["event_time_us"].to_numpy(dtype=np.int64), labels, as_of_us, maturity)
    source = {
        **history.source,
        "as_of": format_time_us(as_of_us),
        "label_maturity": asdict(maturity),
        "matured_until": format_time_us(status.matured_until_us),
        "rows_with_known_label": int(status.known.sum()),
        "rows_without_known_label": int((~status.known).sum()),
        "rows_overdue_for_a_label": status.overdue,
    }
    return LabeledHistory(transactions, labels, status.known, status.matured_until_us, source)
