"""The local services are real: independent clients use them, and the manager survives misuse."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import TopicPartition

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.events import contract
from fraudstream.services import kafka_broker, manager
from fraudstream.services.exceptions import PortTaken
from fraudstream.services.process import pid_alive
from fraudstream.store.schema import migrate

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_pipeline_topics_exist_with_configured_partitions(kafka_ready: Settings) -> None:
    partitions = kafka.describe_topics(kafka_ready)
    for topic, count in kafka.topic_specs(kafka_ready).items():
        assert partitions[topic] == count


def test_keyed_messages_with_headers_round_trip(kafka_ready: Settings, unique_topic) -> None:
    topic = unique_topic("roundtrip", partitions=3)
    producer = kafka.producer(kafka_ready)
    for i in range(30):
        producer.produce(topic, key=f"acc-{i % 5}".encode(), value=orjson.dumps({"i": i}),
                         headers=[("source", b"test")])
    assert producer.flush(10) == 0
    consumer = kafka.consumer(kafka_ready, f"g-{uuid.uuid4().hex}")
    consumer.subscribe([topic])
    received = []
    deadline = time.monotonic() + 30
    while len(received) < 30 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received.append(message)
    consumer.close()
    assert len(received) == 30
    assert all(dict(m.headers())["source"] == b"test" for m in received)
    # one key, one partition (order per account is what the engines rely on), and the partition is
    # contract.partition_for's, which training replays use
    assert all(m.partition() == contract.partition_for(m.key().decode(), 3) for m in received)


def test_kcat_produces_and_consumes_raw_transactions(kafka_ready: Settings) -> None:
    marker = f"kcat-{uuid.uuid4().hex}"
    payload = orjson.dumps({"note": marker}).decode()
    subprocess.run(["kcat", "-b", kafka_ready.kafka_bootstrap, "-t", kafka_ready.transactions_topic,
                    "-P", "-k", "kcat-account", "-p", "0"], input=payload, text=True, check=True, timeout=30)
    # find the offset we wrote, then read exactly that message back with kcat
    consumer = kafka.consumer(kafka_ready, f"g-{uuid.uuid4().hex}")
    _low, high = consumer.get_watermark_offsets(TopicPartition(kafka_ready.transactions_topic, 0), timeout=10)
    consumer.close()
    out = subprocess.run(["kcat", "-b", kafka_ready.kafka_bootstrap, "-t", kafka_ready.transactions_topic,
                          "-C", "-p", "0", "-o", str(high - 1), "-c", "1", "-f", "%k %s"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert out.strip() == f"kcat-account {payload}"


def test_psql_sees_the_schema(postgres_ready: Settings) -> None:
    out = subprocess.run(["psql", postgres_ready.database_url, "-At", "-c",
                          "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"],
                         capture_output=True, text=True, check=True, timeout=30).stdout.split()
    assert {"transactions", "labels", "engine_offsets", "schema_migrations"} <= set(out)


def test_migrations_are_idempotent(postgres_ready: Settings) -> None:
    report = migrate(postgres_ready.database_url)
    assert report.applied == [] and "001_core" in report.already
    assert report.flavour in {"postgresql", "timescaledb"}


def test_second_up_is_a_no_op(services: Settings) -> None:
    before = {s.name: s.pid for s in manager.status(services, ["postgres", "kafka"])}
    again = manager.up(services, ["postgres", "kafka"])
    assert {s.name: s.pid for s in again} == before
    assert all(s.action == "already running" for s in again)


@pytest.fixture
def private_kafka(tmp_path: Path, settings: Settings):
    """A second broker on free ports with its own state, so killing it disturbs nobody."""
    private = settings.model_copy(update={"state_dir": tmp_path, "kafka_port": free_port(),
                                          "kafka_controller_port": free_port()})
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "kafka").symlink_to(settings.state_dir / "jars" / "kafka")
    yield private
    manager.down(private, ["kafka"])


def test_broker_recovers_after_kill_9_and_down_stops_it(private_kafka: Settings) -> None:
    (first,) = manager.up(private_kafka, ["kafka"])
    assert first.healthy and pid_alive(first.pid)
    os.kill(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(first.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    (status,) = manager.status(private_kafka, ["kafka"])
    assert status.pid is None and not status.healthy  # stale pid file detected
    (second,) = manager.up(private_kafka, ["kafka"])
    assert second.healthy and second.pid != first.pid
    (stopped,) = manager.down(private_kafka, ["kafka"])
    assert stopped.action == "stopped" and not pid_alive(second.pid)


def test_taken_port_names_the_setting(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        private = settings.model_copy(update={"state_dir": tmp_path, "kafka_port": port})
        with pytest.raises(PortTaken, match=f"port {port}.*FRAUDSTREAM_KAFKA_PORT"):
            kafka_broker.broker_process(private).check_ports_free()
