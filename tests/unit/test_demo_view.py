"""The demo's hold phase as the terminal shows it: counts read from the engine's own metrics, one line."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import generate_latest

from fraudstream.demo.hold import _counts
from fraudstream.demo.view import HoldStatus, hold_status_line
from fraudstream.metrics import EngineMetrics
from fraudstream.probes import parse_samples

pytestmark = pytest.mark.unit


def test_hold_counts_come_from_the_engines_metric_names() -> None:
    metrics = EngineMetrics("test")
    assert _counts(parse_samples(generate_latest(metrics.registry).decode())) == (0, 0, 0)
    metrics.observe_batch(duration_s=0.1, committed_at_us=2_000_000, event_time_us=np.zeros(5, dtype=np.int64),
                          ingested_at_us=np.ones(5, dtype=np.int64), decisions={"approve": 2, "review": 2, "block": 1},
                          dead_lettered=3)

    assert _counts(parse_samples(generate_latest(metrics.registry).decode())) == (5, 3, 3)


def test_hold_status_line_says_what_runs_and_how_to_stop() -> None:
    line = hold_status_line(HoldStatus(10.0, scored=5_000, alerted=40, dead_lettered=10, producers_running=2,
                                       producers=2))
    assert line.plain == ("holding 10 s: scored 5,000 (500/s), alerted 40, dead-lettered 10; producers 2/2 "
                          "running; Ctrl-C stops")
    stalled = hold_status_line(HoldStatus(0.0, 0, 0, 0, producers_running=1, producers=2))
    assert "producers 1/2 running" in stalled.plain and "(0/s)" in stalled.plain
    assert any("red" in str(span.style) for span in stalled.spans)
