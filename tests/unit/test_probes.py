"""Reading a processor from outside: metric samples by name and labels, owned partitions, group state."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from fraudstream.probes import GroupAssignment, Samples, owned_partitions, parse_samples, sample_value

pytestmark = pytest.mark.unit


def samples_of(registry: CollectorRegistry) -> Samples:
    return parse_samples(generate_latest(registry).decode())


def test_sample_value_matches_name_and_exact_labels() -> None:
    registry = CollectorRegistry()
    events = Counter("fraudstream_events", "events", ["outcome"], registry=registry)
    events.labels("scored").inc(5)
    events.labels("dead_lettered").inc(2)
    samples = samples_of(registry)

    assert sample_value(samples, "fraudstream_events_total", outcome="scored") == 5
    assert sample_value(samples, "fraudstream_events_total", outcome="dead_lettered") == 2
    assert sample_value(samples, "fraudstream_events_total", outcome="missing") is None
    assert sample_value(samples, "fraudstream_events_total") is None


def test_owned_partitions_are_the_lag_series_only() -> None:
    registry = CollectorRegistry()
    lag = Gauge("fraudstream_consumer_lag", "lag", ["partition"], registry=registry)
    label_lag = Gauge("fraudstream_label_lag", "label lag", ["partition"], registry=registry)
    assert owned_partitions(samples_of(registry)) == set()
    for partition in (0, 3, 5):
        lag.labels(str(partition)).set(0)
    label_lag.labels("1").set(7)

    assert owned_partitions(samples_of(registry)) == {0, 3, 5}


@pytest.mark.parametrize(("state", "expected"), [("STABLE", 2), ("PREPARING_REBALANCING", 0),
                                                 ("COMPLETING_REBALANCING", 0), ("EMPTY", 0)])
def test_only_a_stable_group_counts_members_with_partitions(state: str, expected: int) -> None:
    group = GroupAssignment(state, {"a": frozenset({0, 1}), "b": frozenset({2}), "c": frozenset()})
    assert group.assigned_members == expected
