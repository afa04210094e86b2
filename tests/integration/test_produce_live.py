"""Live producing against the real local Kafka, counted by an independent consumer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import orjson
import pytest

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.events import contract, fast_decode
from fraudstream.simulate.backfill import LabelDelays
from fraudstream.simulate.live import produce_live

pytestmark = pytest.mark.integration

QUICK_LABELS = LabelDelays(fraud_s=(1.0, 2.0), legit_s=(2.0, 4.0))


def consume_all(settings: Settings, topic: str, expected: int, timeout_s: float = 90.0) -> list[tuple[bytes, bytes]]:
    """(key, value) of every message on the topic, read by a fresh consumer group until it goes quiet."""
    consumer = kafka.consumer(settings, f"count-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    messages: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(10_000, timeout=0.5)
            batch = [message for message in batch if message.error() is None]
            messages.extend((message.key(), message.value()) for message in batch)
            if batch:
                quiet_since = time.monotonic()
            elif len(messages) >= expected and time.monotonic() - quiet_since > 3.0:
                break
    finally:
        consumer.close()
    return messages


def test_rate_1000_per_second_for_30_seconds_arrives_within_2_percent(
        kafka_ready: Settings, unique_topic: Callable[..., str]) -> None:
    topic, labels_topic = unique_topic("produce-rate", 6), unique_topic("produce-rate-labels", 3)
    started_us = time.time() * 1e6
    summary = produce_live(kafka_ready, "all", rate=1000, duration_s=30, seed=17, progress=False,
                           label_delays=QUICK_LABELS, transactions_topic=topic, labels_topic=labels_topic)
    messages = consume_all(kafka_ready, topic, expected=30_000)

    assert 29_400 <= len(messages) <= 30_600
    assert summary.delivery_failures == 0
    decoded = fast_decode.decode_transactions([value for _, value in messages])
    assert decoded.rejected == []
    frame = decoded.frame
    assert [key.decode() for key, _ in messages] == frame["account_id"].tolist()
    span_s = (frame["event_time_us"].max() - frame["event_time_us"].min()) / 1e6
    assert 29.4 <= span_s <= 30.6
    assert len(frame) / span_s == pytest.approx(1000, rel=0.02)
    assert abs(frame["event_time_us"].min() - started_us) < 10e6  # event time is the wall clock

    labels = consume_all(kafka_ready, labels_topic, expected=len(messages), timeout_s=30)
    label_frame, rejected = contract.decode_labels([value for _, value in labels])
    assert rejected == []
    assert sorted(label_frame["transaction_id"]) == sorted(frame["transaction_id"])
    assert 0.001 < label_frame["is_fraud"].mean() < 0.03


def test_hacker_mode_at_unlimited_rate_sends_only_fraud_and_every_label(
        kafka_ready: Settings, unique_topic: Callable[..., str]) -> None:
    topic, labels_topic = unique_topic("produce-hacker", 3), unique_topic("produce-hacker-labels", 3)
    summary = produce_live(kafka_ready, "hacker", rate=None, max_events=5_000, seed=5, progress=False,
                           accounts=2_000, merchants=300, label_delays=QUICK_LABELS,
                           transactions_topic=topic, labels_topic=labels_topic)
    assert summary.events_sent == 5_000
    assert sum(summary.fraud_by_scenario.values()) == 5_000
    messages = consume_all(kafka_ready, topic, expected=5_000, timeout_s=60)
    assert len(messages) == 5_000
    assert fast_decode.decode_transactions([value for _, value in messages]).rejected == []
    labels = [orjson.loads(value) for _, value in consume_all(kafka_ready, labels_topic, 5_000, timeout_s=60)]
    assert len(labels) == 5_000
    assert all(label["is_fraud"] and label["scenario"] for label in labels)


def test_simulated_clock_stamps_simulated_times_at_the_scale_and_labels_follow_that_clock(
        kafka_ready: Settings, unique_topic: Callable[..., str]) -> None:
    topic, labels_topic = unique_topic("produce-simulated", 6), unique_topic("produce-simulated-labels", 3)
    start_us = 1_769_817_600_000_000  # 2026-01-31, right after a 30-day default history
    began = time.time()
    summary = produce_live(kafka_ready, "all", rate=500, duration_s=10, seed=17, progress=False,
                           time_scale=None, start_us=start_us, warm_up_days=1.0, transactions_topic=topic,
                           labels_topic=labels_topic)
    took_s = time.time() - began
    messages = consume_all(kafka_ready, topic, expected=summary.events_sent)
    assert len(messages) == summary.events_sent and summary.delivery_failures == 0
    frame = fast_decode.decode_transactions([value for _, value in messages]).frame
    times = frame["event_time_us"].to_numpy()

    # The scale is what makes the population's own rate 500/s: ~18,000 events a simulated day.
    assert 2_000 < summary.time_scale < 3_000
    warm = times < start_us
    assert summary.warm_up_events == warm.sum()
    assert times[warm].min() >= start_us - 86_400_000_000 and warm.sum() > 10_000  # one simulated day, at once
    live = times[~warm]
    span_us = summary.time_scale * 10 * 1e6
    assert live.min() >= start_us and live.max() <= start_us + span_us * 1.05
    assert live.max() >= start_us + span_us * 0.9  # the clock reached (about) scale x duration
    assert 100 < len(live) / 10 < 1_000  # 500/s on average over a day; midnight UTC is quieter
    assert took_s < 60 and abs(frame["event_time_us"].min() - began * 1e6) > 1e12  # not the wall clock

    labels = consume_all(kafka_ready, labels_topic, expected=len(messages), timeout_s=30)
    label_frame, rejected = contract.decode_labels([value for _, value in labels])
    assert rejected == [] and len(label_frame) == len(frame)
    joined = label_frame.merge(frame[["transaction_id", "event_time_us"]], on="transaction_id")
    delay_days = (joined["labeled_at_us"] - joined["event_time_us"]) / 86_400e6
    assert (delay_days[joined["is_fraud"]].between(1, 21)).all()  # the history's chargeback delays
    assert (delay_days[~joined["is_fraud"]].between(30, 45)).all()


#: Runs the CLI and reports the process's own peak RSS (kilobytes) on its last line.
_CLI_WITH_PEAK_RSS = ("import resource, sys\nfrom fraudstream.cli import app\ntry:\n    app()\nfinally:\n"
                      "    print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)")


def _produce_in_a_process(settings: Settings, accounts: int, events: int, topic: str, labels_topic: str,
                          labels: str = "all") -> float:
    """``fraudstream produce`` on the wall clock as fast as possible in its own process; its peak RSS (MB)."""
    env = {**os.environ, "FRAUDSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "FRAUDSTREAM_TRANSACTIONS_TOPIC": topic, "FRAUDSTREAM_LABELS_TOPIC": labels_topic}
    command = [sys.executable, "-c", _CLI_WITH_PEAK_RSS, "produce", "all", "--time-scale", "1", "--rate", "0",
               "--accounts", str(accounts), "--max-events", str(events), "--labels", labels]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    last = finished.stdout.strip().splitlines()[-1].split()
    assert last[0] == "peak_rss_kb", finished.stdout
    return int(last[1]) / 1024


def test_a_million_account_population_produces_with_bounded_memory_and_fraud_only_labels(
        kafka_ready: Settings, unique_topic: Callable[..., str]) -> None:
    events = 3_000
    small_topic, small_labels = unique_topic("population-small", 3), unique_topic("population-small-labels", 3)
    small_mb = _produce_in_a_process(kafka_ready, 10_000, events, small_topic, small_labels)
    topic, labels_topic = unique_topic("population-1m", 3), unique_topic("population-1m-labels", 3)
    big_mb = _produce_in_a_process(kafka_ready, 1_000_000, events, topic, labels_topic, labels="fraud-only")

    messages = consume_all(kafka_ready, topic, expected=events)
    assert len(messages) == events
    decoded = fast_decode.decode_transactions([value for _, value in messages])
    assert decoded.rejected == []
    accounts = decoded.frame["account_id"]
    assert accounts.str.fullmatch(r"acct-\d{6}").all() and accounts.nunique() > 0.9 * events
    label_events = [orjson.loads(value) for _, value in consume_all(kafka_ready, labels_topic, expected=0,
                                                                     timeout_s=15.0)]
    assert label_events and all(label["is_fraud"] for label in label_events)
    # A million accounts' arrays (about 130 B each) plus one simulated window (WINDOW_ROWS events), not a
    # simulated week of the whole population (about 13 M events, several GB) as before.
    assert big_mb - small_mb < 450, f"peak RSS {big_mb:.0f} MB with 1M accounts, {small_mb:.0f} MB with 10k"
