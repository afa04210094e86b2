"""Account features pinned on hand-built sequences (definitions: fraudstream/features/account.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from frames import transactions

from fraudstream.features import AccountFeatures, FeatureConfig, FeatureState

pytestmark = pytest.mark.unit
HOUR = 3_600
DAY = 86_400


def run(rows: list[dict], config: FeatureConfig | None = None) -> pd.DataFrame:
    """Each row in its own batch, as a stream with tiny micro-batches would see them."""
    state = FeatureState(config)
    return pd.concat([state.process(transactions([row])) for row in rows], ignore_index=True)


def test_first_event_has_counts_of_one_and_no_history() -> None:
    row = run([{"seconds": 0, "amount": 12.5}]).iloc[0]
    assert row["account_transaction_count_10min"] == 1
    assert row["account_transaction_count_7d"] == 1
    assert row["account_amount_sum_24h"] == 12.5
    assert row["account_previous_transaction_count"] == 0
    assert row["account_age_days"] == 0
    for name in (
        "seconds_since_previous_transaction",
        "amount_to_account_mean_ratio",
        "amount_zscore",
        "distance_from_home_km",
        "speed_from_previous_kmh",
    ):
        assert math.isnan(row[name]), name
    for name in ("is_new_merchant", "is_new_device", "is_new_country", "is_new_payment_method"):
        assert row[name] == 1, name
    assert not row["is_late"]


def test_window_is_half_open_and_includes_the_current_event() -> None:
    frame = run([{"seconds": 0, "amount": 5}, {"seconds": 600, "amount": 7}, {"seconds": 1199.999999, "amount": 11}])
    # Exactly 600 s before is outside the 10 min window; 599.999999 s before is inside.
    assert frame["account_transaction_count_10min"].tolist() == [1, 1, 2]
    assert frame["account_amount_sum_10min"].tolist() == [5, 7, 18]
    assert frame["account_transaction_count_1h"].tolist() == [1, 2, 3]
    assert frame["account_amount_sum_1h"].tolist() == [5, 12, 23]


def test_seven_day_window_and_account_age() -> None:
    frame = run([{"seconds": 0}, {"seconds": 7 * DAY}, {"seconds": 7 * DAY + 1}])
    assert frame["account_transaction_count_7d"].tolist() == [1, 1, 2]
    assert frame["account_transaction_count_24h"].tolist() == [1, 1, 2]
    assert frame["account_age_days"].tolist() == [0, 7, 7 + 1 / DAY]
    assert frame["seconds_since_previous_transaction"].tolist()[1:] == [7 * DAY, 1]


def test_amount_ratio_and_zscore_use_earlier_transactions_only() -> None:
    frame = run([{"seconds": s, "amount": a} for s, a in ((0, 10), (60, 20), (120, 30), (180, 10))])
    assert math.isnan(frame["amount_zscore"][1])  # one earlier transaction: no spread yet
    assert frame["amount_to_account_mean_ratio"].tolist()[1:] == [2.0, 2.0, 0.5]
    # Third: earlier 10 and 20 -> mean 15, population std 5 -> z = (30 - 15) / 5.
    assert frame["amount_zscore"][2] == pytest.approx(3.0)
    assert frame["account_previous_transaction_count"].tolist() == [0, 1, 2, 3]


def test_zscore_divides_by_at_least_one_currency_unit() -> None:
    frame = run([{"seconds": s, "amount": a} for s, a in ((0, 10), (60, 10), (120, 15))])
    assert frame["amount_zscore"][2] == pytest.approx(5.0)


def test_novelty_per_kind() -> None:
    rows = [
        {"seconds": 0, "merchant_id": "m1", "device_id": "d1", "country": "US", "payment_method": "credit_card"},
        {"seconds": 60, "merchant_id": "m2", "device_id": "d1", "country": "US", "payment_method": "credit_card"},
        {"seconds": 120, "merchant_id": "m1", "device_id": "d2", "country": "FR", "payment_method": "crypto"},
        {"seconds": 180, "merchant_id": "m2", "device_id": "d2", "country": "FR", "payment_method": "crypto"},
    ]
    frame = run(rows)
    assert frame["is_new_merchant"].tolist() == [1, 1, 0, 0]
    assert frame["is_new_device"].tolist() == [1, 0, 1, 0]
    assert frame["is_new_country"].tolist() == [1, 0, 1, 0]
    assert frame["is_new_payment_method"].tolist() == [1, 0, 1, 0]


def test_novelty_is_per_account() -> None:
    frame = run([{"seconds": 0, "account_id": "a1"}, {"seconds": 60, "account_id": "a2"}])
    assert frame["is_new_merchant"].tolist() == [1, 1]


def test_remembered_values_are_capped_least_recent_first() -> None:
    config = FeatureConfig(max_distinct_values=2)
    frame = run([{"seconds": i * 60, "merchant_id": m} for i, m in enumerate(["m1", "m2", "m3", "m2", "m1"])], config)
    # m1 was the least recently used when m3 arrived, so it was forgotten; m2 was not.
    assert frame["is_new_merchant"].tolist() == [1, 1, 1, 0, 1]


def test_home_is_mean_of_first_transactions_and_speed_since_previous() -> None:
    config = FeatureConfig(home_transactions=2)
    rows = [
        {"seconds": 0, "latitude": 40.0},
        {"seconds": HOUR, "latitude": 42.0},
        {"seconds": 2 * HOUR, "latitude": 41.0},
        {"seconds": 2 * HOUR + 10, "latitude": 50.0},
    ]
    frame = run(rows, config)
    one_degree_km = 2 * math.pi * 6371.0088 / 360
    assert frame["distance_from_home_km"][1] == pytest.approx(2 * one_degree_km)
    assert frame["distance_from_home_km"][2] == pytest.approx(0.0, abs=1e-6)  # home = (41, 0)
    assert frame["distance_from_home_km"][3] == pytest.approx(9 * one_degree_km)  # third event is not home
    assert frame["speed_from_previous_kmh"][1] == pytest.approx(2 * one_degree_km)  # 2 degrees in 1 h
    # 10 s apart: the interval is floored at min_speed_interval_s (60 s).
    assert frame["speed_from_previous_kmh"][3] == pytest.approx(9 * one_degree_km * 60)


def test_local_solar_time_night_and_weekend() -> None:
    frame = run(
        [
            {"seconds": 0, "longitude": 0.0},  # Thursday 00:00 UTC
            {"seconds": 60, "longitude": 90.0},  # +6 h of solar time
            {"seconds": 2 * DAY + 12 * HOUR, "longitude": 0.0},  # Saturday noon
        ]
    )
    assert frame["hour_of_day"].tolist() == [0, 6, 12]
    assert frame["is_night"].tolist() == [1, 0, 0]
    assert frame["is_weekend"].tolist() == [0, 0, 1]


def test_out_of_order_within_a_batch_is_processed_in_event_time_order() -> None:
    state = FeatureState()
    frame = state.process(transactions([{"seconds": 100, "amount": 1}, {"seconds": 50, "amount": 2}]))
    assert frame["account_transaction_count_10min"].tolist() == [2, 1]
    assert math.isnan(frame["seconds_since_previous_transaction"][1])
    assert frame["seconds_since_previous_transaction"][0] == 50
    assert frame["is_new_merchant"].tolist() == [0, 1]
    assert not frame["is_late"].any()


def test_out_of_order_across_batches_sees_only_earlier_event_times() -> None:
    state = FeatureState()
    state.process(transactions([{"seconds": 100, "amount": 1}]))
    late = state.process(transactions([{"seconds": 50, "amount": 2}])).iloc[0]
    assert late["account_transaction_count_10min"] == 1  # the event at 100 s is after it
    assert math.isnan(late["seconds_since_previous_transaction"])
    assert late["is_new_merchant"] == 1  # in event time, this was the first use of m1
    assert not late["is_late"]
    after = state.process(transactions([{"seconds": 200, "amount": 4}])).iloc[0]
    assert after["account_transaction_count_10min"] == 3
    assert after["seconds_since_previous_transaction"] == 100


def test_late_rule_is_strictly_older_than_watermark_minus_allowed_lateness() -> None:
    state = FeatureState(FeatureConfig(allowed_lateness_s=300))
    state.process(transactions([{"seconds": 1000}]))
    frame = state.process(transactions([{"seconds": 700}, {"seconds": 699.999999}]))
    assert frame["is_late"].tolist() == [False, True]
    assert frame["account_transaction_count_1h"].notna().all()  # late events are still scored
    assert state.stats().late_events == 1


def test_idle_account_past_ttl_starts_fresh() -> None:
    frame = run([{"seconds": 0}, {"seconds": 3 * DAY + 1}], FeatureConfig(account_ttl_s=3 * DAY))
    assert frame["account_previous_transaction_count"].tolist() == [0, 0]
    assert frame["account_age_days"].tolist() == [0, 0]


def test_history_is_bounded_per_account() -> None:
    config = FeatureConfig(max_history_events=3)
    features = AccountFeatures(config)
    for second in range(10):
        features.process(transactions([{"seconds": second}]))
    assert len(features.store.rows("history", "a1")) == 3


def random_stream(size: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 3 * DAY, size)).astype(float)
    seconds[rng.random(size) < 0.1] -= 120  # a few out-of-order events (within the lateness bound)
    rows = [
        {
            "seconds": float(s),
            "account_id": f"a{rng.integers(4)}",
            "merchant_id": f"m{rng.integers(5)}",
            "device_id": f"d{rng.integers(3)}",
            "amount": float(rng.integers(100, 100_000)) / 100,
            "latitude": float(rng.uniform(-50, 50)),
            "longitude": float(rng.uniform(-150, 150)),
        }
        for s in seconds
    ]
    return transactions(rows)


def test_features_do_not_depend_on_batching() -> None:
    stream = random_stream(120, seed=3)
    whole = FeatureState().process(stream)
    state = FeatureState()
    one_by_one = pd.concat([state.process(stream.iloc[[i]]) for i in range(len(stream))])
    pd.testing.assert_frame_equal(whole, one_by_one, check_exact=True)


def test_account_features_do_not_depend_on_which_accounts_share_a_state() -> None:
    """Why per-partition state is valid: an account's features see only its own events, so a state
    holding one account gives what a state holding every account gives, batch after batch."""
    stream = random_stream(80, seed=5)
    config = FeatureConfig()
    mixed = AccountFeatures(config).process(stream)
    alone: dict[str, AccountFeatures] = {}
    parts = []
    for start in range(0, len(stream), 20):  # four micro-batches, each split by account
        batch = stream.iloc[start : start + 20]
        for account, events in batch.groupby("account_id", sort=True):
            parts.append(alone.setdefault(account, AccountFeatures(config)).process(events))
    pd.testing.assert_frame_equal(pd.concat(parts).sort_index(), mixed, check_exact=True)
