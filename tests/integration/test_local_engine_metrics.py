"""The engine's Prometheus endpoint, scraped while it runs: counts, latencies (Kafka timestamp, ingest),
batch durations, lag, feature-state keys and the model in use."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest
from local_engine_harness import free_port, model_state_dir, new_run, scrape, stop, stream, wait_for_rows

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.events.contract import partition_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def done(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], partitions: int, accounts: int) -> bool:
    """Both bad events counted and every partition's lag reported as caught up by a refresh that came after
    the events (lag and state keys are refreshed together: a refresh before the events came reports lag 0 too)."""
    lag = [value for (name, _), value in metrics.items() if name == "fraudstream_consumer_lag"]
    dead = metrics.get(("fraudstream_events_total", (("outcome", "dead_lettered"),)))
    keys = metrics.get(("fraudstream_state_keys", (("kind", "account"),)))
    return dead == 2 and keys == accounts and len(lag) == partitions and not any(lag)


def test_metrics_endpoint_reports_what_the_engine_did(kafka_ready: Settings, database: psycopg.Connection,
                                                      tmp_path: Path) -> None:
    run = new_run(kafka_ready, model_state_dir(kafka_ready), tmp_path / "logs")
    prefix = f"metrics-{uuid.uuid4().hex[:8]}-"
    port = free_port()
    process = run.start("metrics", "--metrics-port", str(port))
    try:
        run.wait_until_assigned(process, metrics_port=port)
        sent_at = time.time()
        events = stream(600, prefix)
        run.publish(events)
        producer = kafka.producer(run.settings)
        for payload in (b"{not json", b'{"transaction_id": "x"}'):
            producer.produce(run.settings.transactions_topic, value=payload, partition=0)
        assert producer.flush(30) == 0
        assert wait_for_rows(database, prefix, 600, 120, (process,)) == 600
        deadline = time.monotonic() + 30  # the lag is refreshed every 5 s
        while not done(metrics := scrape(port), run.settings.transactions_partitions, events["account_id"].nunique()):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.2)
        waited_s = time.time() - sent_at
    finally:
        stop(process)

    assert metrics[("fraudstream_events_total", (("outcome", "scored"),))] == 600
    assert sum(value for (name, _), value in metrics.items() if name == "fraudstream_decisions_total") == 600
    for latency in ("produce_to_commit", "ingest_to_commit", "event_time_to_commit"):
        assert metrics[(f"fraudstream_{latency}_seconds_count", ())] == 600
    produce_mean_s = metrics[("fraudstream_produce_to_commit_seconds_sum", ())] / 600
    assert 0 < produce_mean_s < waited_s  # from the producer's send, not from the simulated event times
    assert metrics[("fraudstream_batch_duration_seconds_count", ())] >= 1
    # merchant state is kept per partition of the account-keyed topic: one key per (partition, merchant)
    partitions = [partition_for(account, run.settings.transactions_partitions) for account in events["account_id"]]
    assert metrics[("fraudstream_state_keys", (("kind", "account"),))] == events["account_id"].nunique()
    assert metrics[("fraudstream_state_keys", (("kind", "merchant"),))] == \
        len(set(zip(partitions, events["merchant_id"], strict=True)))
    version = run.settings.models_dir.joinpath("PRODUCTION").read_text().strip()
    assert metrics[("fraudstream_model_info", (("model_version", version),))] == 1
