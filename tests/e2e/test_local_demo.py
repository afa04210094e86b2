"""The demo end to end: producers, the processor subprocess, labels, and a summary that adds up."""

from __future__ import annotations

import uuid

import pytest
from rich.console import Console

from fraudstream.config import Settings
from fraudstream.demo import run_demo

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_demo_scores_every_event_and_reports_quality_and_latency(postgres_ready: Settings) -> None:
    tag = uuid.uuid4().hex[:10]
    settings = postgres_ready.model_copy(update={
        "transactions_topic": f"demo-tx-{tag}", "labels_topic": f"demo-labels-{tag}",
        "alerts_topic": f"demo-alerts-{tag}", "dlq_topic": f"demo-dlq-{tag}",
    })
    summary = run_demo(settings, duration_s=20, rate=300, hacker_rate=10, console=Console(quiet=True),
                       warm_up_days=7)

    assert summary.dead_lettered >= 5, "one malformed event per second should have been dead-lettered"
    assert summary.scored + summary.dead_lettered == summary.produced
    # The rate is an average over the simulated day; the first simulated hours (UTC night) are quieter.
    assert summary.produced >= 0.4 * 20 * 310
    assert summary.warm_up_events > 7 * 10_000
    assert summary.labels == summary.scored, "every transaction's label should have arrived"
    assert summary.late == 0, "producers sharing one simulated clock should not make late events"
    assert summary.alerted > 0 and summary.precision is not None and summary.recall is not None
    # Alert quality in the range of the model's held-out evaluation. Wall-clock event times (every
    # account transacting every ~20 s) gave precision 0.04 with half the events flagged; a cold
    # feature state (no warm-up) gave ~0.1.
    assert summary.recall > 0.8, f"hacker traffic should be caught: recall {summary.recall:.2f}"
    assert summary.precision > 0.3, f"alerts should mostly be fraud: precision {summary.precision:.2f}"
    assert summary.flagged_share is not None and summary.flagged_share < 0.1
    assert summary.send_to_commit_p50_ms is not None and 0 < summary.send_to_commit_p50_ms < 5_000
    assert summary.ingest_to_commit_p99_ms is not None
