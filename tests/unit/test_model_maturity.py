"""Label maturity: which stored transactions count, and as what, at a given moment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.model.dataset import LabeledHistory
from fraudstream.model.maturity import LabelMaturity, label_status, with_maturity
from fraudstream.timeunits import MICROS_PER_DAY

pytestmark = pytest.mark.unit
DAY = MICROS_PER_DAY
AS_OF = 100 * DAY
MATURITY = LabelMaturity(fraud_label_days=21, legitimate_label_days=45)


def _labels(rows: list[tuple[str, bool, int]]) -> pd.DataFrame:
    return pd.DataFrame({
        "transaction_id": [row[0] for row in rows],
        "account_id": "acc", "merchant_id": "shop",
        "is_fraud": [row[1] for row in rows],
        "scenario": None,
        "labeled_at_us": [row[2] for row in rows],
    })


def test_recent_unlabeled_rows_are_left_out_not_counted_legitimate() -> None:
    ids = np.array(["old", "recent", "recent_fraud", "recent_verdict", "edge"], dtype=object)
    # Ages at as-of: 30 days, 5 days, 5 days, 5 days, exactly 21 days.
    times = np.array([AS_OF - 30 * DAY, AS_OF - 5 * DAY, AS_OF - 5 * DAY, AS_OF - 5 * DAY, AS_OF - 21 * DAY])
    labels = _labels([("recent_fraud", True, AS_OF - 2 * DAY), ("recent_verdict", False, AS_OF - DAY)])
    status = label_status(ids, times, labels, AS_OF, MATURITY)
    assert status.known.tolist() == [True, False, True, True, True]
    assert status.is_fraud.tolist() == [False, False, True, False, False]
    assert status.matured_until_us == AS_OF - 21 * DAY


def test_labels_after_as_of_are_not_known_yet() -> None:
    ids = np.array(["a", "b"], dtype=object)
    times = np.array([AS_OF - 3 * DAY, AS_OF - 40 * DAY])
    labels = _labels([("a", True, AS_OF + 1), ("b", True, AS_OF + DAY)])
    status = label_status(ids, times, labels, AS_OF, MATURITY)
    # a: young and its chargeback arrives later -> unknown; b: old, so it matured as legitimate at as-of.
    assert status.known.tolist() == [False, True]
    assert status.is_fraud.tolist() == [False, False]


def test_transactions_after_as_of_are_never_known() -> None:
    status = label_status(np.array(["future"], dtype=object), np.array([AS_OF + DAY]),
                          _labels([("future", True, AS_OF)]), AS_OF, MATURITY)
    assert status.known.tolist() == [False]


def test_unlabeled_rows_past_the_legitimate_label_window_are_counted_overdue() -> None:
    ids = np.array(["ancient", "old", "labeled_ancient"], dtype=object)
    times = np.array([AS_OF - 50 * DAY, AS_OF - 30 * DAY, AS_OF - 60 * DAY])
    status = label_status(ids, times, _labels([("labeled_ancient", False, AS_OF - 10 * DAY)]), AS_OF, MATURITY)
    assert status.overdue == 1
    assert status.known.all()


def test_zero_day_maturity_counts_every_unlabeled_row_as_legitimate() -> None:
    status = label_status(np.array(["x"], dtype=object), np.array([AS_OF]), _labels([]), AS_OF,
                          LabelMaturity(fraud_label_days=0, legitimate_label_days=0))
    assert status.known.tolist() == [True] and status.overdue == 1


def test_negative_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="fraud_label_days"):
        LabelMaturity(fraud_label_days=-1)


def test_with_maturity_drops_labels_not_arrived_and_records_the_figures() -> None:
    transactions = pd.DataFrame({"transaction_id": ["a", "b", "c"], "event_time_us": [AS_OF - 30 * DAY,
                                 AS_OF - 25 * DAY, AS_OF - DAY]})
    labels = _labels([("a", True, AS_OF - 20 * DAY), ("b", True, AS_OF + DAY)])
    history = with_maturity(LabeledHistory(transactions, labels, source={"database": "x"}), AS_OF, MATURITY)
    assert history.labels["transaction_id"].tolist() == ["a"]
    assert history.targets().tolist() == [True, False, False]
    assert history.known_mask().tolist() == [True, True, False]
    assert history.source["rows_without_known_label"] == 1 and history.source["database"] == "x"
    assert history.source["as_of"].startswith("1970-04-11")
