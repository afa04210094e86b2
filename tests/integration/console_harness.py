"""Shared pieces of the console tests: a console on its own labels topic, users, flagged rows, logins."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from confluent_kafka import TopicPartition
from fastapi.testclient import TestClient

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.console.auth import create_user

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')


@dataclass
class ConsoleRun:
    """One test's console settings (own labels topic), its users' names and its transaction id prefix."""

    settings: Settings
    tag: str

    @property
    def prefix(self) -> str:
        return f"console-{self.tag}-"

    def user(self, name: str) -> str:
        return f"{name}-{self.tag}"


def new_console_run(base: Settings, state_dir: Path, users: tuple[tuple[str, str], ...] = (
        ("alice", "analyst"), ("bob", "analyst"), ("root", "admin"))) -> ConsoleRun:
    tag = uuid.uuid4().hex[:8]
    settings = base.model_copy(update={"labels_topic": f"test-console-labels-{tag}", "state_dir": state_dir})
    kafka.create_topics(settings, {settings.labels_topic: 3})
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        for name, role in users:
            create_user(connection, f"{name}-{tag}", PASSWORD, role)
    return ConsoleRun(settings, tag)


def insert_flagged(connection: psycopg.Connection, prefix: str, count: int, merchant_id: str = "m-console",
                   start: datetime | None = None, decision: str = "review") -> list[str]:
    """``count`` scored rows decided ``decision``, one second apart, scores rising; returns their ids."""
    start = start or datetime(2026, 1, 5, tzinfo=UTC)
    ids = []
    now = datetime.now(UTC)
    for index in range(count):
        transaction_id = f"{prefix}{index:04d}"
        connection.execute(
            "INSERT INTO transactions (transaction_id, event_time, account_id, amount, currency, merchant_id,"
            " merchant_category, payment_method, channel, country, latitude, longitude, device_id, score, decision,"
            " reasons, model_version, engine, ingested_at, scored_at)"
            " VALUES (%s, %s, %s, %s, 'EUR', %s, 'grocery', 'credit_card', 'online', 'DE', 52.5, 13.4, 'd-1', %s, %s,"
            " %s, 'test-console', 'test', %s, %s)",
            (transaction_id, start + timedelta(seconds=index), f"{prefix}acct", 10.0 + index, merchant_id,
             0.5 + index / (2 * count), decision, ["amount is far above the account's usual"], now, now))
        ids.append(transaction_id)
    return ids


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token (read from a page, as a browser would)."""
    page = client.get("/login")
    response = client.post("/login", data={"username": username, "password": password, "next": "/queue",
                                           "csrf_token": _CSRF.search(page.text)[1]}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return _CSRF.search(client.get("/").text)[1]


def form_request_id(client: TestClient, transaction_id: str) -> str:
    """The request id of the verdict form on the transaction page."""
    return _REQUEST_ID.search(client.get(f"/transactions/{transaction_id}").text)[1]


def read_topic(settings: Settings, topic: str, expected: int, timeout_s: float = 15.0) -> list[bytes]:
    """Every message of ``topic`` from the start (at least ``expected``, then a second more), read by a
    consumer of its own (not the console's producer)."""
    consumer = kafka.consumer(settings, f"test-reader-{uuid.uuid4().hex[:8]}")
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    values: list[bytes] = []
    deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
    while len(values) < expected and datetime.now(UTC) < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(message.value())
    # a little longer: nothing more may arrive than expected
    for message in consumer.consume(100, 1.0):
        if message.error() is None:
            values.append(message.value())
    consumer.close()
    return values
