"""Engine metrics: the produce -> commit histogram is a latency whatever clock stamped the events."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.metrics import EngineMetrics

pytestmark = pytest.mark.unit


def test_produce_to_commit_uses_the_kafka_timestamp_not_the_simulated_event_time() -> None:
    metrics = EngineMetrics("test")
    committed_us = 1_800_000_000_000_000
    simulated_event_times = np.array([1_769_817_600_000_000, 1_769_900_000_000_000])  # months earlier
    metrics.observe_batch(duration_s=0.1, committed_at_us=committed_us, event_time_us=simulated_event_times,
                          ingested_at_us=np.full(2, committed_us - 50_000), decisions={"approve": 2},
                          dead_lettered=0, produced_at_us=np.array([committed_us - 80_000, committed_us - 120_000]))
    value = metrics.registry.get_sample_value
    assert value("fraudstream_produce_to_commit_seconds_bucket", {"le": "0.1"}) == 1
    assert value("fraudstream_produce_to_commit_seconds_bucket", {"le": "0.15"}) == 2
    assert value("fraudstream_produce_to_commit_seconds_sum") == pytest.approx(0.2)
    assert value("fraudstream_event_time_to_commit_seconds_bucket", {"le": "60"}) == 0


def test_without_kafka_timestamps_the_produce_histogram_stays_empty() -> None:
    metrics = EngineMetrics("test")
    metrics.observe_batch(duration_s=0.1, committed_at_us=10, event_time_us=np.zeros(3, dtype=np.int64),
                          ingested_at_us=np.zeros(3, dtype=np.int64), decisions={}, dead_lettered=0)
    assert metrics.registry.get_sample_value("fraudstream_produce_to_commit_seconds_count") == 0


def test_dead_letters_are_counted_by_kind_of_reason_without_the_offending_values() -> None:
    metrics = EngineMetrics("test")
    metrics.observe_dead_letters(["amount must be > 0 and <= 1e+06, got -5", "amount must be > 0 and <= 1e+06, got 0",
                                  "invalid JSON: unexpected character: line 1 column 2", "empty payload"])
    value = metrics.registry.get_sample_value
    assert value("fraudstream_dead_letters_total", {"reason": "amount must be > 0 and <= 1e+06"}) == 2
    assert value("fraudstream_dead_letters_total", {"reason": "invalid JSON"}) == 1
    assert value("fraudstream_dead_letters_total", {"reason": "empty payload"}) == 1


def test_label_lag_and_the_process_collector_are_exposed() -> None:
    metrics = EngineMetrics("test")
    metrics.set_label_lag({0: 5, 1: 0})
    metrics.set_label_lag({1: 3})
    value = metrics.registry.get_sample_value
    assert value("fraudstream_label_lag", {"partition": "0"}) is None  # cleared with each update
    assert value("fraudstream_label_lag", {"partition": "1"}) == 3
    assert value("process_resident_memory_bytes") > 0


def test_drift_is_exported_per_feature_and_for_the_score() -> None:
    metrics = EngineMetrics("test")
    metrics.set_drift({"amount": 0.31, "account_transaction_count_1h": 0.02, "score": 0.05})
    value = metrics.registry.get_sample_value
    assert value("fraudstream_feature_psi", {"feature": "amount"}) == pytest.approx(0.31)
    assert value("fraudstream_feature_psi", {"feature": "account_transaction_count_1h"}) == pytest.approx(0.02)
    assert value("fraudstream_score_psi") == pytest.approx(0.05)
