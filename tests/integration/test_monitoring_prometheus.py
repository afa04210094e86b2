"""The project's Prometheus (`services up monitoring`) finds a running processor by itself (the processor
announces its endpoint) and every PromQL query of "Pipeline health" returns series."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from local_engine_harness import free_port, model_state_dir, new_run, stop, stream, wait_for_rows

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.events.contract import encode, format_time_us
from fraudstream.monitoring import health
from fraudstream.monitoring.targets import targets_dir
from fraudstream.services import manager, prometheus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def query(settings: Settings, expr: str) -> list[dict]:
    """Grafana's $__rate_interval becomes 30 s (four scrape intervals of 5 s, Grafana's own rule)."""
    text = expr.replace("$__rate_interval", "30s")
    address = f"{prometheus.url(settings)}/api/v1/query?{urllib.parse.urlencode({'query': text})}"
    with urllib.request.urlopen(address, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_every_health_query_returns_series_from_a_running_processor(kafka_ready: Settings,
                                                                    database: psycopg.Connection,
                                                                    tmp_path: Path) -> None:
    run = new_run(kafka_ready, model_state_dir(kafka_ready), tmp_path / "logs")
    settings = run.settings.model_copy(update={"prometheus_port": free_port()})
    manager.up(settings, ["prometheus"])
    process = None
    try:
        port = free_port()
        process = run.start("health", "--metrics-port", str(port))
        run.wait_until_assigned(process, metrics_port=port)
        assert any(str(port) in path.read_text() for path in targets_dir(settings).glob("*.json"))
        prefix = f"health-{uuid.uuid4().hex[:8]}-"
        producer = kafka.producer(run.settings)
        for payload in (b"{not json", b'{"transaction_id": "x"}'):
            producer.produce(run.settings.transactions_topic, value=payload, partition=0)
        producer.produce(run.settings.labels_topic, value=encode({
            "transaction_id": prefix + "x", "account_id": "a", "merchant_id": "m", "is_fraud": True,
            "scenario": None, "labeled_at": format_time_us(1_770_000_000_000_000)}))
        assert producer.flush(30) == 0
        frame = stream(3_000, prefix)
        deadline = time.monotonic() + 120
        pending = {q.expr for panel in health.PANELS for q in panel.queries}
        sent = 0
        while pending:  # keep traffic flowing so that rates over the last 30 s are not empty
            assert time.monotonic() < deadline, f"no series for: {sorted(pending)}"
            if sent < len(frame):
                run.publish(frame.iloc[sent:sent + 300])
                sent += 300
            time.sleep(2)
            pending = {expr for expr in pending if not query(settings, expr)}
        assert wait_for_rows(database, prefix, sent, 120, (process,)) == sent
        lag = query(settings, "fraudstream_consumer_lag")
        assert {series["metric"]["partition"] for series in lag} == {str(p) for p in range(6)}
        dead = query(settings, "sum by (reason) (fraudstream_dead_letters_total)")
        assert {series["metric"]["reason"] for series in dead} >= {"invalid JSON"}
    finally:
        if process is not None:
            assert stop(process) == 0
        manager.down(settings, ["prometheus"])
    assert not list(targets_dir(settings).glob(f"*{process.pid}*"))  # the processor withdrew its endpoint
