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
    summary = run_demo(settings, duration_s=20, rate=300, hacker_rate=10, console=Console(quiet=True))

    assert summary.dead_lettered >= 5, "one malformed event per second should have been dead-lettered"
    assert summary.scored + summary.dead_lettered == summary.produced
    assert summary.produced >= 0.9 * 20 * 310
    assert summary.labels == summary.scored, "every transaction's label should have arrived"
    assert summary.alerted > 0 and summary.precision is not None and summary.recall is not None
    assert summary.recall > 0.3, f"hacker traffic should be caught: recall {summary.recall:.2f}"
    assert summary.event_to_commit_p50_ms is not None and summary.event_to_commit_p50_ms < 5_000
    assert summary.ingest_to_commit_p99_ms is not None
