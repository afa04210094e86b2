"""Outages of PostgreSQL or Kafka: logged once when they start, once per interval while they last, once
when they end; exported as metrics; retried with capped back-off."""

from __future__ import annotations

import logging

import pytest

from fraudstream.engines.outages import Backoff, Outage
from fraudstream.kafka import ClientLogThrottle
from fraudstream.metrics import EngineMetrics

pytestmark = pytest.mark.unit


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial_s=0.2, maximum_s=1.0)
    assert [backoff.delay_s(attempt) for attempt in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.delay_s(10_000) == 1.0


def test_an_outage_is_logged_once_per_interval_and_counted_once(caplog: pytest.LogCaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = EngineMetrics("test")
    outage = Outage("postgres", metrics, log_interval_s=10.0)
    value = metrics.registry.get_sample_value
    assert value("fraudstream_dependency_up", {"dependency": "postgres"}) == 1
    assert value("fraudstream_dependency_outages_total", {"dependency": "postgres"}) == 0
    now = [1000.0]
    monkeypatch.setattr("fraudstream.engines.outages.time.monotonic", lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="fraudstream.engines.outages"):
        for _ in range(30):  # 30 retries over 30 s
            outage.failed("connection refused")
            assert value("fraudstream_dependency_up", {"dependency": "postgres"}) == 0
            now[0] += 1.0
        outage.recovered()
        outage.recovered()
    messages = [record.getMessage() for record in caplog.records]
    assert sum("dependency unavailable dependency=postgres" in m for m in messages) == 1
    assert sum("still unavailable" in m for m in messages) == 2  # at 10 s and 20 s
    assert sum("available again" in m and "outage_s=30.0" in m for m in messages) == 1
    assert value("fraudstream_dependency_up", {"dependency": "postgres"}) == 1
    assert value("fraudstream_dependency_outages_total", {"dependency": "postgres"}) == 1
    assert value("fraudstream_dependency_outage_seconds_total", {"dependency": "postgres"}) == pytest.approx(30.0)


def test_librdkafka_lines_are_throttled_per_facility(monkeypatch: pytest.MonkeyPatch) -> None:
    throttle = ClientLogThrottle(interval_s=10.0)
    now = [500.0]
    monkeypatch.setattr("fraudstream.kafka.time.monotonic", lambda: now[0])

    def record(facility: str) -> logging.LogRecord:
        return logging.LogRecord("fraudstream.kafka.client", logging.ERROR, __file__, 1, "%s [%s] %s",
                                 (facility, "rdkafka#consumer-1", "Connect to 127.0.0.1:9092 failed"), None)

    kept = []
    for _ in range(100):  # 100 failed connections over 25 s
        kept.append(throttle.filter(record("FAIL")))
        now[0] += 0.25
    assert sum(kept) == 3  # at 0 s, 10 s and 20 s
    assert throttle.filter(record("ERROR"))  # another kind of failure is still shown at once
