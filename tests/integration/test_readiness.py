"""Waiting for a processor to hold its partitions, on real Kafka: the coordinator's assignment (any consumer)
and the engine's own metrics; a clear error when nothing is assigned or the process is gone."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from local_engine_harness import free_port, model_state_dir, new_run, stop

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.probes import NotReady, owned_partitions, scrape, wait_until_assigned

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_wait_returns_once_a_real_consumer_holds_partitions(kafka_ready: Settings, unique_topic) -> None:
    topic = unique_topic("ready", partitions=3)
    group = f"ready-{uuid.uuid4().hex[:8]}"
    consumer = kafka.consumer(kafka_ready, group)
    consumer.subscribe([topic])
    stop_polling = threading.Event()

    def poll() -> None:  # a member only joins (and keeps its assignment) while it polls
        while not stop_polling.is_set():
            consumer.poll(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        assignment = wait_until_assigned(kafka_ready, group, topic=topic, timeout_s=60)
    finally:
        stop_polling.set()
        poller.join()
        consumer.close()
    assert assignment.state == "STABLE"
    assert list(assignment.partitions_by_member.values()) == [frozenset({0, 1, 2})]


def test_wait_times_out_with_a_clear_error_when_nobody_is_assigned(kafka_ready: Settings, unique_topic) -> None:
    topic = unique_topic("ready", partitions=3)
    group = f"nobody-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()
    with pytest.raises(NotReady, match=rf"group {group}: no 1 member\(s\) with partitions of {topic} after 3 s"):
        wait_until_assigned(kafka_ready, group, topic=topic, timeout_s=3)
    assert time.monotonic() - began < 15


def test_wait_fails_at_once_when_the_process_is_gone(kafka_ready: Settings, unique_topic) -> None:
    topic = unique_topic("ready", partitions=3)
    began = time.monotonic()
    with pytest.raises(NotReady, match="exited before it was assigned"):
        wait_until_assigned(kafka_ready, "gone", topic=topic, timeout_s=60, alive=lambda: False)
    assert time.monotonic() - began < 5


def test_wait_covers_a_processor_that_reports_its_partitions(kafka_ready: Settings, tmp_path: Path) -> None:
    """The demo's wait: the group is stable and the engine's metrics list the partitions it took over."""
    run = new_run(kafka_ready, model_state_dir(kafka_ready), tmp_path / "logs", partitions=4)
    port = free_port()
    process = run.start("ready", "--metrics-port", str(port), "--from-end")
    try:
        assignment = wait_until_assigned(run.settings, run.group, metrics_ports=[port], timeout_s=120,
                                         alive=lambda: process.poll() is None)
        assert owned_partitions(scrape(port)) == {0, 1, 2, 3}
    finally:
        assert stop(process) == 0
    assert assignment.assigned_members == 1
