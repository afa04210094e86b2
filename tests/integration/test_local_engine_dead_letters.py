"""Malformed and hostile events go to the dead-letter topic with a reason; the valid ones are scored;
the processor keeps running."""

from __future__ import annotations

import base64
import random
import time
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from local_engine_harness import EngineRun, count_rows, model_state_dir, new_run, stop, wait_for_rows

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.events.contract import format_time_us, partition_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

START_US = 1_795_860_000_000_000  # 2026-11-28T09:20:00Z
MEGABYTE = 1024 * 1024


def event(prefix: str, number: int, **changes: object) -> dict[str, object]:
    base = {
        "schema_version": 1, "transaction_id": f"{prefix}{number:05d}",
        "event_time": format_time_us(START_US + number * 1_000_000), "account_id": f"acct-{number % 37}",
        "amount": 10.0 + number, "currency": "EUR", "merchant_id": f"merch-{number % 11}",
        "merchant_category": "grocery", "payment_method": "credit_card", "channel": "online", "country": "DE",
        "latitude": 52.5, "longitude": 13.4, "device_id": f"dev-{number % 37}",
    }
    base.update(changes)
    return base


def without(payload: dict[str, object], name: str) -> dict[str, object]:
    return {key: value for key, value in payload.items() if key != name}


def hostile(prefix: str) -> dict[str, tuple[bytes | None, str]]:
    """Dead-letter key -> (payload, a fragment of the expected reason)."""
    good = orjson.dumps(event(prefix, 99_999))
    return {
        "broken-json": (b'{"transaction_id": "x", "amount": ', "invalid JSON"),
        "empty": (b"", "empty payload"),
        "null-value": (None, "empty payload"),
        "missing-amount": (orjson.dumps(without(event(prefix, 90_001), "amount")), "missing field: amount"),
        "missing-time": (orjson.dumps(without(event(prefix, 90_002), "event_time")), "missing field: event_time"),
        "negative-amount": (orjson.dumps(event(prefix, 90_003, amount=-5.0)), "amount must be > 0"),
        "zero-amount": (orjson.dumps(event(prefix, 90_004, amount=0)), "amount must be > 0"),
        "nan-literal": (good.replace(b'"amount":100009.0', b'"amount":NaN'), "invalid JSON"),
        "nan-string": (orjson.dumps(event(prefix, 90_005, amount="NaN")), "amount must be a number"),
        "huge-amount": (orjson.dumps(event(prefix, 90_006, amount=1e300)), "amount must be > 0 and <="),
        "string-amount": (orjson.dumps(event(prefix, 90_007, amount="12.50")), "amount must be a number"),
        "bool-amount": (orjson.dumps(event(prefix, 90_008, amount=True)), "amount must be a number"),
        "int-account": (orjson.dumps(event(prefix, 90_009, account_id=12345)), "account_id must be a string"),
        "bad-time": (orjson.dumps(event(prefix, 90_010, event_time="yesterday")), "event_time must be ISO-8601"),
        "future-schema": (orjson.dumps(event(prefix, 90_011, schema_version=2)), "schema_version must be 1"),
        "array": (b"[1, 2, 3]", "must be a JSON object"),
        "long-id": (orjson.dumps(event(prefix, 90_012, transaction_id="x" * 500)), "1 to 64 characters"),
        "sql-currency": (orjson.dumps(event(prefix, 90_013, currency="'; DROP TABLE transactions; --")),
                         "currency has an invalid format"),
        "nul-character": (orjson.dumps(event(prefix, 90_014, merchant_id="merch\u0000-1")), "NUL character"),
        "latitude-out-of-range": (orjson.dumps(event(prefix, 90_015, latitude=123.0)), "latitude must be"),
        "deep-nesting": (b"[" * 100_000 + b"]" * 100_000, "oversized"),
        "one-megabyte": (orjson.dumps(event(prefix, 90_016, note="x" * MEGABYTE)), "oversized"),
        "invalid-utf8": (b'{"transaction_id": "\xff\xfe"}', "invalid JSON"),
        # a producer whose clock is decades ahead: a valid event, but it would move the features' clock
        "future-clock": (orjson.dumps(event(prefix, 90_017, event_time="2090-01-01T00:00:00Z")),
                         "event_time_in_future: event_time 2090-01-01T00:00:00.000000Z is"),
    }


def tricky_but_valid(prefix: str) -> list[dict[str, object]]:
    """Hostile-looking text that is a legal value: it must be stored verbatim, not executed or mangled."""
    return [
        event(prefix, 80_001, merchant_id="'; DROP TABLE transactions; --"),
        event(prefix, 80_002, device_id='a"b,c\n{d}\\e\t'),
        event(prefix, 80_003, account_id="café ☕ 𝄞"),
        event(prefix, 80_004, merchant_id="{\"json\": [1,2]}"),
        event(prefix, 80_005, amount=9_999_999.99),
    ]


def produce(run: EngineRun, items: list[tuple[bytes, bytes | None]]) -> None:
    producer = kafka.producer(run.settings, **{"message.max.bytes": 2 * MEGABYTE})
    partitions = run.settings.transactions_partitions
    for key, value in items:
        producer.produce(run.settings.transactions_topic, key=key, value=value,
                         partition=partition_for(key.decode(), partitions))
        producer.poll(0)
    assert producer.flush(30) == 0


def dead_letters(run: EngineRun, expected: int,
                 timeout_s: float = 60) -> dict[str, tuple[bytes | None, dict[str, str]]]:
    consumer = kafka.consumer(run.settings, f"dlq-reader-{uuid.uuid4().hex[:8]}")
    partitions = kafka.describe_topics(run.settings, [run.settings.dlq_topic])[run.settings.dlq_topic]
    consumer.assign([TopicPartition(run.settings.dlq_topic, p, 0) for p in range(partitions)])
    found: dict[str, tuple[bytes | None, dict[str, str]]] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < expected and time.monotonic() < deadline:
        for message in consumer.consume(100, 1.0):
            if message.error() is None:
                headers = {name: value.decode() for name, value in message.headers() or []}
                found[message.key().decode()] = (message.value(), headers)
    consumer.close()
    return found


def test_hostile_events_are_dead_lettered_with_reasons_and_the_rest_is_scored(
    postgres_ready: Settings, database: psycopg.Connection, tmp_path: Path
) -> None:
    run = new_run(postgres_ready, model_state_dir(postgres_ready), tmp_path / "logs")
    prefix = f"dlq-{run.group}-"
    bad = hostile(prefix)
    valid = [event(prefix, number) for number in range(300)] + tricky_but_valid(prefix)
    items: list[tuple[bytes, bytes | None]] = [(str(e["account_id"]).encode(), orjson.dumps(e)) for e in valid]
    for index, (key, (payload, _)) in enumerate(bad.items()):  # spread the bad ones through the stream
        items.insert(index * 13, (key.encode(), payload))
    produce(run, items)

    processor = run.start("dlq")
    assert wait_for_rows(database, prefix, len(valid), 120, (processor,)) == len(valid)
    letters = dead_letters(run, len(bad))
    assert set(letters) == set(bad), f"missing: {set(bad) - set(letters)}, unexpected: {set(letters) - set(bad)}"
    for key, (payload, fragment) in bad.items():
        value, headers = letters[key]
        assert value == (payload or None) or (payload == b"" and value in (b"", None)), key
        assert fragment in headers["dlq.reason"], f"{key}: {headers['dlq.reason']!r}"
        assert (headers["dlq.source"], headers["dlq.topic"]) == ("transactions", run.settings.transactions_topic)
        assert int(headers["dlq.offset"]) >= 0

    stored = dict(database.execute(
        "SELECT transaction_id, merchant_id || '|' || device_id || '|' || account_id FROM transactions"
        " WHERE transaction_id LIKE %s", (prefix + "%",)).fetchall())
    for item in tricky_but_valid(prefix):
        assert stored[item["transaction_id"]] == f"{item['merchant_id']}|{item['device_id']}|{item['account_id']}"

    more = [event(prefix, number) for number in range(1_000, 1_200)]  # still alive and scoring
    produce(run, [(str(e["account_id"]).encode(), orjson.dumps(e)) for e in more])
    assert wait_for_rows(database, prefix, len(valid) + len(more), 60, (processor,)) == len(valid) + len(more)
    assert stop(processor) == 0
    assert count_rows(database, prefix) == len(valid) + len(more)


def set_topic_config(settings: Settings, topic: str, name: str, value: str) -> None:
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    client = kafka.admin(settings)  # kept alive until the futures resolve
    for future in client.incremental_alter_configs([resource]).values():
        future.result(30)


def committed_offset(database: psycopg.Connection, run: EngineRun, partition: int) -> int:
    row = database.execute("SELECT next_offset FROM engine_offsets WHERE consumer_group = %s AND topic = %s"
                           " AND partition = %s", (run.group, run.settings.transactions_topic, partition)).fetchone()
    return row[0] if row else 0


def test_a_dead_letter_the_broker_refuses_fails_the_batch_and_is_retried(
    postgres_ready: Settings, database: psycopg.Connection, tmp_path: Path
) -> None:
    """Defect: dead letters were produced without a delivery callback, so a letter the broker refused was
    lost while the offsets covering it were committed."""
    run = new_run(postgres_ready, model_state_dir(postgres_ready), tmp_path / "logs")
    set_topic_config(run.settings, run.settings.dlq_topic, "max.message.bytes", "2048")
    prefix = f"dlq-refused-{run.group}-"
    valid = [event(prefix, number) for number in range(200)]
    items: list[tuple[bytes, bytes | None]] = [(str(e["account_id"]).encode(), orjson.dumps(e)) for e in valid]
    bad_key = "acct-5"  # invalid (no amount) and, even compressed, bigger than the dead-letter topic takes
    noise = base64.b64encode(random.Random(5).randbytes(6_000)).decode()
    items.insert(100, (bad_key.encode(), orjson.dumps(without(event(prefix, 90_001, note=noise), "amount"))))
    produce(run, items)
    partitions = run.settings.transactions_partitions
    partition = partition_for(bad_key, partitions)
    bad_offset = sum(1 for key, _ in items[:100] if partition_for(key.decode(), partitions) == partition)

    processor = run.start("refused")
    try:
        deadline = time.monotonic() + 90
        while "Message size too large" not in run.log_text("refused"):
            assert time.monotonic() < deadline, f"the refused dead letter went unnoticed:\n{run.log_text('refused')}"
            time.sleep(0.25)
    finally:
        stop(processor)
    assert committed_offset(database, run, partition) <= bad_offset, "offsets committed past a lost dead letter"
    assert dead_letters(run, 1, timeout_s=3) == {}

    set_topic_config(run.settings, run.settings.dlq_topic, "max.message.bytes", str(2 * MEGABYTE))
    processor = run.start("refused")
    try:
        assert wait_for_rows(database, prefix, len(valid), 120, (processor,)) == len(valid)
        letters = dead_letters(run, 1)
        assert list(letters) == [bad_key]
        assert "missing field: amount" in letters[bad_key][1]["dlq.reason"]
        assert letters[bad_key][1]["dlq.offset"] == str(bad_offset)
    finally:
        assert stop(processor) == 0
    assert committed_offset(database, run, partition) > bad_offset


def test_a_hostile_label_is_dead_lettered_and_the_processor_keeps_scoring(
    postgres_ready: Settings, database: psycopg.Connection, tmp_path: Path
) -> None:
    """Defect: a label with NUL characters reached COPY label_stage and stopped `fraudstream process`, again
    after each restart (the same label was read again). Labels now get the events' rules and dead letters
    of their own (same topic, header dlq.source=labels)."""
    run = new_run(postgres_ready, model_state_dir(postgres_ready), tmp_path / "logs")
    prefix = f"dlq-labels-{run.group}-"
    label = {"transaction_id": f"{prefix}00001", "account_id": "acct-1", "merchant_id": "merch-1", "is_fraud": True,
             "scenario": "card_testing", "labeled_at": format_time_us(START_US + 2_000_000)}
    hostile_labels = {
        "label-nul": ({**label, "account_id": "acct\u0000", "merchant_id": "m\u0000", "scenario": "\u0000"},
                      "NUL character"),
        "label-long": ({**label, "merchant_id": "m" * 5_000}, "merchant_id must have 1 to 64 characters"),
        "label-types": ({**label, "account_id": 12345}, "account_id must be a string, got int"),
    }
    producer = kafka.producer(run.settings)
    for key, (payload, _) in hostile_labels.items():
        producer.produce(run.settings.labels_topic, key=key.encode(), value=orjson.dumps(payload))
    producer.produce(run.settings.labels_topic, key=b"acct-1", value=orjson.dumps(label))
    assert producer.flush(30) == 0
    first = [event(prefix, number) for number in range(100)]
    produce(run, [(str(e["account_id"]).encode(), orjson.dumps(e)) for e in first])

    processor = run.start("labels")
    try:
        assert wait_for_rows(database, prefix, len(first), 120, (processor,)) == len(first)
        later = [event(prefix, number) for number in range(1_000, 1_100)]
        produce(run, [(str(e["account_id"]).encode(), orjson.dumps(e)) for e in later])
        assert wait_for_rows(database, prefix, len(first) + len(later), 60, (processor,)) == len(first) + len(later)
    except BaseException:
        stop(processor)
        raise

    letters = dead_letters(run, len(hostile_labels))
    assert set(letters) == set(hostile_labels)
    for key, (payload, fragment) in hostile_labels.items():
        value, headers = letters[key]
        assert value == orjson.dumps(payload)
        assert fragment in headers["dlq.reason"], f"{key}: {headers['dlq.reason']!r}"
        assert (headers["dlq.source"], headers["dlq.topic"]) == ("labels", run.settings.labels_topic)
    stored = database.execute("SELECT account_id, merchant_id, scenario FROM labels WHERE transaction_id = %s",
                              (label["transaction_id"],)).fetchall()
    assert stored == [("acct-1", "merch-1", "card_testing")]
    assert stop(processor) == 0
