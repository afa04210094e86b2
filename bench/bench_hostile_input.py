"""Hostile input at volume: generated events and labels (hypothesis) through a running processor.

Messages are drawn from hypothesis strategies: valid events and labels, each field replaced by random
JSON (wrong types, huge and tiny numbers, NUL and control characters, over-long text), fields removed,
NaN/Infinity literals, duplicate keys, invalid UTF-8, deep nesting, oversized messages, random bytes,
wrong clocks (decades ahead: ``event_time_in_future``; decades behind: late but scored). Each message's
fate is predicted with the reference validator; then they all go through one ``fraudstream process``.

It holds when every valid event is scored and every valid label stored, every invalid message is in
the dead-letter topic once per source offset with a reason from the documented list (README,
"Hostile input"; ``REASONS`` below) and as predicted, and the processor never exits. Prints the count
per reason and source.

    .venv/bin/python bench/bench_hostile_input.py [--messages 100000] [--distinct 5000] [--label-share 0.2]
        [--seed 1]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import psycopg
from confluent_kafka import TopicPartition
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from _report import BenchRun
from local_engine_harness import count_rows, model_state_dir, new_run, stop, wait_for_rows

from fraudstream import kafka
from fraudstream.config import Settings, get_settings
from fraudstream.events import contract
from fraudstream.services import manager
from fraudstream.store.schema import migrate
from fraudstream.timeunits import MICROS_PER_DAY

LOGS = Path(__file__).with_name("results") / "logs"
console = Console()

#: The documented dead-letter reasons (README, "Hostile input"): category -> how its reason text starts.
REASONS: dict[str, str] = {
    "empty payload": r"empty payload$",
    "oversized": r"oversized: \d+ bytes > 16384$",
    "invalid JSON": r"invalid JSON: ",
    "not a JSON object": r"(event|label) must be a JSON object, got \w+$",
    "schema_version": r"schema_version must be 1, got ",
    "missing field": r"missing field: \w+$",
    "not a string": r"\w+ must be a string, got \w+$",
    "length": r"\w+ must have 1 to 64 characters$",
    "invalid format": r"(currency|country|merchant_category) has an invalid format: ",
    "NUL character": re.escape(contract.NUL_REASON) + "$",
    "not a number": r"\w+ must be a number, got \w+$",
    "not finite": r"\w+ must be finite$",
    "out of range": r"\w+ must be >=? -?[\d.e+]+ and <= [\d.e+]+, got ",
    "not one of": r"(payment_method|channel) must be one of ",
    "not ISO-8601 UTC": r"(event_time|labeled_at) must be ISO-8601 UTC like ",
    "not a real date": r"(event_time|labeled_at) is not a real date: ",
    "outside 2000-2100": r"(event_time|labeled_at) must lie between 2000 and 2100$",
    "is_fraud": r"is_fraud must be true or false$",
    "event_time_in_future": contract.EVENT_TIME_IN_FUTURE + r": event_time ",
}


def category(reason: str) -> str:
    for name, pattern in REASONS.items():
        if re.match(pattern, reason):
            return name
    return f"UNDOCUMENTED: {reason[:80]}"


NOW_US = time.time_ns() // 1000
CHARACTERS = st.characters(codec="utf-8")  # what JSON text can carry (no unpaired surrogates)
ID_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=64)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 1e-300, 5e-324, 1e308, 10_000_000, 10_000_000.5, 90.5, -180.5]),
    st.text(CHARACTERS, max_size=80), st.text(alphabet="\x00\x01\x1f\u2028é𝄞 a", max_size=70),
    st.sampled_from(["", "EUR", "eur", "EUR\n", "online", "credit_card", "2026-02-30T00:00:00Z", "x" * 65]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(CHARACTERS, max_size=6), inner, max_size=3), max_leaves=5)
TIMES_US = st.one_of(st.integers(NOW_US - 60 * MICROS_PER_DAY, NOW_US),  # recent: scored
                     st.integers(contract.parse_time_us("2000-01-01T00:00:00Z"), NOW_US),  # late, still scored
                     st.integers(NOW_US + MICROS_PER_DAY, contract.parse_time_us("2099-12-31T00:00:00Z")))  # bad clock


@st.composite
def valid_event(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "schema_version": 1, "transaction_id": "", "event_time": contract.format_time_us(draw(TIMES_US)),
        "account_id": draw(ID_TEXT), "amount": draw(st.floats(0.01, 10_000_000)), "currency": "EUR",
        "merchant_id": draw(ID_TEXT), "merchant_category": draw(st.from_regex(r"[a-z0-9_]{1,40}", fullmatch=True)),
        "payment_method": draw(st.sampled_from(contract.PAYMENT_METHODS)),
        "channel": draw(st.sampled_from(contract.CHANNELS)),
        "country": "DE", "latitude": draw(st.floats(-90, 90)), "longitude": draw(st.floats(-180, 180)),
        "device_id": draw(ID_TEXT),
    }


@st.composite
def valid_label(draw: st.DrawFn) -> dict[str, Any]:
    return {"transaction_id": "", "account_id": draw(st.none() | ID_TEXT), "merchant_id": draw(st.none() | ID_TEXT),
            "is_fraud": draw(st.booleans()), "scenario": draw(st.none() | ID_TEXT),
            "labeled_at": contract.format_time_us(draw(st.integers(NOW_US - 60 * MICROS_PER_DAY, NOW_US)))}


@st.composite
def message(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> tuple[dict[str, Any] | None, bytes]:
    """(the object, when there is one, and) the bytes to send."""
    value = draw(base)
    kind = draw(st.sampled_from(["valid", "valid", "mutate", "remove", "literal", "duplicate", "utf8", "nesting",
                                 "oversized", "bytes", "empty"]))
    if kind == "mutate":
        for name in draw(st.lists(st.sampled_from(sorted(value)), min_size=1, max_size=2)):
            value[name] = draw(JSON_VALUES)
    elif kind == "remove":
        value.pop(draw(st.sampled_from(sorted(value))))
    elif kind == "bytes":
        return None, draw(st.binary(max_size=200))
    elif kind == "empty":
        return None, b""
    elif kind == "nesting":
        depth = draw(st.integers(900, 7_000))
        return None, b"[" * depth + b"]" * depth
    payload = orjson.dumps(value)
    if kind == "literal":
        payload = payload[:-1] + b',"x":' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"])) + b"}"
    elif kind == "duplicate":
        name = draw(st.sampled_from(sorted(value)))
        payload = payload[:-1] + b"," + orjson.dumps(name) + b":" + orjson.dumps(draw(JSON_VALUES)) + b"}"
    elif kind == "utf8":
        payload = payload[:-1] + b',"x":"' + draw(st.binary(min_size=1, max_size=8)) + b'"}'
    elif kind == "oversized":
        size = draw(st.integers(contract.MAX_EVENT_BYTES, 4 * contract.MAX_EVENT_BYTES))
        payload = payload[:-1] + b',"x":"' + b"y" * size + b'"}'
    return value, payload


def generate(count: int, base: st.SearchStrategy[dict[str, Any]], seed_value: int) -> list[bytes]:
    """``count`` payloads drawn by hypothesis (20 a test case: its per-case overhead dominates otherwise)."""
    drawn: list[bytes] = []

    @seed(seed_value)
    @settings(max_examples=-(-count // 20), phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(message(base), min_size=20, max_size=20))
    def draw(batch: list[tuple[dict[str, Any] | None, bytes]]) -> None:
        drawn.extend(payload for _, payload in batch)

    draw()
    return drawn[:count]


def cycled(payloads: list[bytes], count: int) -> list[bytes]:
    return [payloads[number % len(payloads)] for number in range(count)]


def with_ids(payloads: list[bytes], prefix: str) -> list[bytes]:
    """Valid-looking messages get a unique transaction_id with the run's prefix (rows are counted by it)."""
    out = []
    for number, payload in enumerate(payloads):
        try:
            value = orjson.loads(payload) if len(payload) <= contract.MAX_EVENT_BYTES else None
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict) and value.get("transaction_id") == "" and payload.count(b'"transaction_id"') == 1:
            payload = payload.replace(b'"transaction_id":""', b'"transaction_id":' + orjson.dumps(f"{prefix}{number}"))
        out.append(payload)
    return out


def predicted(payloads: list[bytes], source: str, sent_at_us: int) -> list[str | None]:
    """Each message's reason category, None when it is valid (the reference validator; the time bound)."""
    validate = contract.validate_transaction if source == "transactions" else contract.validate_label
    fates: list[str | None] = []
    for payload in payloads:
        try:
            values = validate(contract.decode_json(payload))
        except contract.InvalidEvent as error:
            fates.append(category(str(error)))
            continue
        future = source == "transactions" and values[1] > sent_at_us + 300 * 1_000_000
        fates.append(contract.EVENT_TIME_IN_FUTURE if future else None)
    return fates


def prefixed(payloads: list[bytes], fates: list[str | None], prefix: str) -> int:
    """Valid messages whose transaction_id carries the run's prefix (a mutation may have made another id valid:
    such rows exist but are not counted, as their id can repeat)."""
    return sum(fate is None and str(orjson.loads(payload).get("transaction_id")).startswith(prefix)
               for payload, fate in zip(payloads, fates, strict=True))


def read_dead_letters(run: Any, expected: int, stall_s: float = 60) -> dict[tuple[str, int, int], str]:
    """(source, partition, offset) -> reason of every dead letter (deduplicated: they are at least once)."""
    consumer = kafka.consumer(run.settings, f"dlq-reader-{uuid.uuid4().hex[:8]}")
    partitions = kafka.describe_topics(run.settings, [run.settings.dlq_topic])[run.settings.dlq_topic]
    consumer.assign([TopicPartition(run.settings.dlq_topic, p, 0) for p in range(partitions)])
    found: dict[tuple[str, int, int], str] = {}
    progress_at = time.monotonic()
    while len(found) < expected and time.monotonic() - progress_at < stall_s:
        for letter in consumer.consume(1_000, 1.0):
            if letter.error() is None:
                headers = {name: value.decode() for name, value in letter.headers() or []}
                found[(headers["dlq.source"], int(headers["dlq.partition"]), int(headers["dlq.offset"]))] = \
                    headers["dlq.reason"]
                progress_at = time.monotonic()
    consumer.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--label-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--distinct", type=int, default=5_000,
                        help="messages hypothesis draws (a few ms each); they are cycled up to --messages, each copy "
                             "with its own transaction_id")
    args = parser.parse_args()
    base = get_settings()
    manager.up(base, ["postgres", "kafka"])
    migrate(base.database_url)
    with BenchRun("bench_hostile_input", settings=vars(args)) as report:
        holds = measure(args, base, report)
    sys.exit(0 if holds else 1)


def measure(args: argparse.Namespace, base: Settings, report: BenchRun) -> bool:
    """Generate, send, process; the table of dead letters by reason against the prediction; whether it holds."""
    labels_count = round(args.messages * args.label_share)
    started = time.perf_counter()
    distinct_labels = max(1, round(args.distinct * args.label_share))
    with console.status("generating messages with hypothesis"):
        transactions = cycled(generate(args.distinct - distinct_labels, valid_event(), args.seed),
                              args.messages - labels_count)
        labels = cycled(generate(distinct_labels, valid_label(), args.seed + 1), labels_count)
    generated_s = time.perf_counter() - started
    run = new_run(base, model_state_dir(base), LOGS / f"hostile-{uuid.uuid4().hex[:8]}")  # a fresh log
    prefix = f"hostile-{run.group}-"
    transactions, labels = with_ids(transactions, prefix), with_ids(labels, prefix)
    producer = kafka.producer(run.settings)
    sent_at_us = time.time_ns() // 1000
    for topic, payloads in ((run.settings.transactions_topic, transactions), (run.settings.labels_topic, labels)):
        for number, payload in enumerate(payloads):
            producer.produce(topic, key=str(number % 997).encode(), value=payload)
            producer.poll(0)
    assert producer.flush(60) == 0
    fates = {"transactions": predicted(transactions, "transactions", sent_at_us),
             "labels": predicted(labels, "labels", sent_at_us)}
    expected_rows = prefixed(transactions, fates["transactions"], prefix)
    expected_letters = sum(fate is not None for source in fates.values() for fate in source)

    processed_at = time.perf_counter()
    processor = run.start("hostile")
    with psycopg.connect(base.database_url, autocommit=True) as database:
        rows = wait_for_rows(database, prefix, expected_rows, 120, (processor,))
        letters = read_dead_letters(run, expected_letters)
        stored_labels = database.execute("SELECT count(*) FROM labels WHERE transaction_id LIKE %s",
                                         (prefix + "%",)).fetchone()[0]
        rows = count_rows(database, prefix)
    processed_s = time.perf_counter() - processed_at
    alive = processor.poll() is None
    restarts = run.log_text("hostile").count("engine started") - 1
    stop(processor)

    counted = Counter((source, category(reason)) for (source, _, _), reason in letters.items())
    expected = Counter((source, fate) for source, items in fates.items() for fate in items if fate is not None)
    table = [[source, reason, f"{counted[(source, reason)]:,}", f"{expected[(source, reason)]:,}"]
             for source, reason in sorted(set(counted) | set(expected))]
    table.append(["transactions", "scored", f"{rows:,}", f"{expected_rows:,}"])
    valid_labels = prefixed(labels, fates["labels"], prefix)
    table.append(["labels", "stored", f"{stored_labels:,}", f"{valid_labels:,}"])
    undocumented = [key for key in counted if key[1].startswith("UNDOCUMENTED")]
    holds = (alive and restarts == 0 and counted == expected and rows == expected_rows
             and stored_labels == valid_labels and not undocumented)
    report.table(f"hostile input: {args.messages:,} messages ({args.distinct:,} drawn by hypothesis) through one "
                 "processor", ["source", "reason", "dead letters", "predicted"], table,
                 note=f"generated in {generated_s:.0f} s, processed in {processed_s:.0f} s; processor alive: {alive}, "
                      f"restarts: {restarts}; {'HOLDS' if holds else 'FAILS'}")
    report.figures.update({
        "generated_s": generated_s, "processed_s": processed_s,
        "scored": rows, "labels_stored": stored_labels, "processor_alive": alive, "restarts": restarts,
        "holds": holds, "dead_letters": {f"{source}: {reason}": count for (source, reason), count in counted.items()},
        "predicted": {f"{source}: {reason}": count for (source, reason), count in expected.items()},
    })
    return holds


if __name__ == "__main__":
    main()
