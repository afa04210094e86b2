"""Merchant velocity and label feedback (definitions: fraudstream/features/merchant.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from frames import labels, transactions

from fraudstream.features import FeatureConfig, FeatureState, MerchantFeatures

pytestmark = pytest.mark.unit
DAY = 86_400
PRIOR, STRENGTH = 0.01, 20.0


def test_merchant_velocity_counts_all_accounts_in_half_open_window() -> None:
    state = FeatureState()
    frame = state.process(
        transactions(
            [
                {"seconds": 0, "account_id": "a1"},
                {"seconds": 1800, "account_id": "a2"},
                {"seconds": 3600, "account_id": "a3"},
                {"seconds": 3600, "account_id": "a4", "merchant_id": "m2"},
            ]
        )
    )
    assert frame["merchant_transaction_count_1h"].tolist() == [1, 2, 2, 1]
    assert frame["merchant_transaction_count_24h"].tolist() == [1, 2, 3, 1]


def test_label_affects_only_events_at_or_after_labeled_at() -> None:
    state = FeatureState()
    # The fraud happens at 0 s and is confirmed at 1000 s; the label arrives early (before 999 s).
    state.process(transactions([{"seconds": 0, "transaction_id": "fraud"}]))
    state.apply_labels(labels([{"transaction_id": "fraud", "seconds": 1000}]))
    frame = state.process(transactions([{"seconds": 999}, {"seconds": 1000}, {"seconds": 1001, "merchant_id": "m2"}]))
    assert frame["merchant_label_count"].tolist() == [0, 1, 0]
    assert frame["merchant_fraud_count_7d"].tolist() == [0, 1, 0]
    assert frame["merchant_fraud_rate_smoothed"].tolist() == pytest.approx(
        [PRIOR, (1 + STRENGTH * PRIOR) / (1 + STRENGTH), PRIOR]
    )


def test_label_arriving_after_its_transaction_changes_later_events_only() -> None:
    state = FeatureState()
    before = state.process(transactions([{"seconds": 0, "transaction_id": "fraud"}, {"seconds": 10}]))
    assert before["merchant_label_count"].tolist() == [0, 0]
    state.apply_labels(labels([{"transaction_id": "fraud", "seconds": 20}]))
    after = state.process(transactions([{"seconds": 30}]))
    assert after["merchant_label_count"].tolist() == [1]


def test_legit_labels_lower_the_smoothed_rate_and_duplicates_are_ignored() -> None:
    state = FeatureState()
    state.apply_labels(
        labels(
            [
                {"transaction_id": "x1", "seconds": 5, "is_fraud": True},
                {"transaction_id": "x2", "seconds": 5, "is_fraud": False},
                {"transaction_id": "x3", "seconds": 5, "is_fraud": False},
                {"transaction_id": "x1", "seconds": 6, "is_fraud": True},
            ]
        )
    )
    state.apply_labels(labels([{"transaction_id": "x3", "seconds": 7, "is_fraud": True}]))  # a duplicate, later
    row = state.process(transactions([{"seconds": 10}])).iloc[0]
    assert row["merchant_label_count"] == 3
    assert row["merchant_fraud_rate_smoothed"] == pytest.approx((1 + STRENGTH * PRIOR) / (3 + STRENGTH))


def test_labels_without_merchant_are_ignored() -> None:
    state = FeatureState()
    frame = labels([{"transaction_id": "x1", "seconds": 0}])
    frame["merchant_id"] = None
    state.apply_labels(frame)
    assert state.process(transactions([{"seconds": 10}]))["merchant_label_count"].tolist() == [0]


def test_fraud_count_window_and_folded_totals() -> None:
    state = FeatureState()
    state.apply_labels(labels([{"transaction_id": "x1", "seconds": 0}]))
    frame = pd.concat(
        [
            state.process(transactions([{"seconds": 7 * DAY - 1}])),
            state.process(transactions([{"seconds": 7 * DAY}])),
            state.process(transactions([{"seconds": 30 * DAY}])),  # label long folded into the totals
        ]
    )
    assert frame["merchant_fraud_count_7d"].tolist() == [1, 0, 0]
    assert frame["merchant_label_count"].tolist() == [1, 1, 1]
    store = state.merchants.store
    assert len(store.rows("labels", "m1")) == 0


def test_labels_up_front_equal_labels_as_they_arrive() -> None:
    """Training replays with every label known; the stream gets each when it is made."""
    events = transactions([{"seconds": s, "transaction_id": f"t{s}"} for s in range(0, 5000, 250)])
    feedback = labels(
        [{"transaction_id": f"t{s}", "seconds": s + 600, "is_fraud": s % 500 == 0} for s in range(0, 5000, 250)]
    )
    upfront = FeatureState()
    upfront.apply_labels(feedback)
    expected = upfront.process(events)
    streaming = FeatureState()
    parts = []
    for index in range(len(events)):
        now = events["event_time_us"].iloc[index]
        streaming.apply_labels(feedback[feedback["labeled_at_us"] <= now])  # re-sent labels are deduplicated
        parts.append(streaming.process(events.iloc[[index]]))
    pd.testing.assert_frame_equal(pd.concat(parts), expected, check_exact=True)
    assert expected["merchant_label_count"].iloc[-1] > 0


def test_merchant_features_do_not_depend_on_which_merchants_share_a_state() -> None:
    config = FeatureConfig()
    events = transactions([{"seconds": s * 97 % 4000, "merchant_id": f"m{s % 3}"} for s in range(40)])
    feedback = labels([{"transaction_id": f"x{s}", "merchant_id": f"m{s % 3}", "seconds": s * 300} for s in range(6)])
    mixed = MerchantFeatures(config)
    mixed.apply_labels(feedback)
    expected = mixed.process(events)
    parts = []
    for merchant, group in events.groupby("merchant_id"):
        alone = MerchantFeatures(config)
        alone.apply_labels(feedback[feedback["merchant_id"] == merchant])
        parts.append(alone.process(group))
    pd.testing.assert_frame_equal(pd.concat(parts).sort_index(), expected, check_exact=True)
