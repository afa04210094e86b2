"""The Spark engine on a real standalone master and two workers: every event scored exactly once across a
driver kill, bad records in the DLQ with their reason, and the local engine's features and scores.

Spark is slow to start here (the first batch takes 15-45 s), so one test covers the whole story.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import orjson
import pandas as pd
import psycopg
import pytest
from local_engine_harness import (
    FRAUDSTREAM,
    EngineRun,
    count_rows,
    model_state_dir,
    new_run,
    scored,
    stop,
    stream,
    wait_for_rows,
)

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.demo import processor_env
from fraudstream.services import manager

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

EVENTS = 3_000
#: Offset -> payload and the start of its dead-letter reason; the last is valid but dated decades ahead.
BAD = {
    "0": (b"{not json", "invalid JSON"),
    "1": (b'{"schema_version": 1, "transaction_id": "x"}', "missing field: event_time"),
    "2": (b'{"schema_version": 1, "amount": -5}', "missing field: transaction_id"),
    "3": (orjson.dumps({
        "schema_version": 1, "transaction_id": "future", "event_time": "2090-01-01T00:00:00Z", "account_id": "a",
        "amount": 1.0, "currency": "EUR", "merchant_id": "m", "merchant_category": "grocery",
        "payment_method": "credit_card", "channel": "online", "country": "DE", "latitude": 0.0, "longitude": 0.0,
        "device_id": "d"}), "event_time_in_future"),
}
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def spark_cluster(kafka_ready: Settings, postgres_ready: Settings) -> Settings:
    """The local standalone cluster: one master, two one-core workers (no-op when already up)."""
    manager.up(kafka_ready, ["spark"])
    return kafka_ready


def start_driver(run: EngineRun, checkpoint: Path, log: Path) -> subprocess.Popen:
    """`fraudstream spark submit` in its own process group (the driver's JVM is its child)."""
    command = [FRAUDSTREAM, "spark", "submit", "--checkpoint", str(checkpoint), "--max-offsets-per-trigger", "500",
               "--app-name", f"test-{run.group}"]
    return subprocess.Popen(command, env=processor_env(run.settings), stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill_driver(process: subprocess.Popen) -> None:
    """SIGKILL the driver's Python and JVM at once, as when its machine dies."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def dead_letters(settings: Settings) -> dict[str, str]:
    """The DLQ's messages as source offset -> reason (deduplicated: dead letters are at-least-once)."""
    consumer = kafka.consumer(settings, f"{settings.dlq_topic}-reader")
    consumer.subscribe([settings.dlq_topic])
    found: dict[str, str] = {}
    try:
        for _ in range(20):
            for message in consumer.consume(100, 1.0):
                if message.error() is None:
                    headers = {name: value.decode() for name, value in message.headers() or []}
                    found[headers["dlq.offset"]] = headers["dlq.reason"]
    finally:
        consumer.close()
    return found


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """The stored features (a double precision[] as text, NULL for a missing value, in the model version's
    model_features order) as a float frame aligned with the rows; columns are positions."""
    rows = [[float("nan") if value == "NULL" else float(value) for value in text.strip("{}").split(",") if value]
            for text in frame["features"]]
    return pd.DataFrame(rows, index=frame.index).astype(float)


def test_spark_job_scores_every_event_once_across_a_driver_kill_like_the_local_engine(
    spark_cluster: Settings, database: psycopg.Connection, tmp_path: Path
) -> None:
    models = model_state_dir(spark_cluster)
    events = stream(EVENTS, prefix="")
    logs = tmp_path / "logs"

    # The Spark job: bad records first in partition 0, then the stream; kill the driver mid-stream.
    run = new_run(spark_cluster, models, logs)
    prefix = f"spark-{run.group}-"
    producer = kafka.producer(run.settings)
    for payload, _ in BAD.values():
        producer.produce(run.settings.transactions_topic, key=b"bad", value=payload, partition=0)
    assert producer.flush(30) == 0
    run.publish(events.assign(transaction_id=prefix + events["transaction_id"]))
    checkpoint = tmp_path / "checkpoint"
    driver = start_driver(run, checkpoint, logs / "driver-1.log")
    written = wait_for_rows(database, prefix, 1, 240, (driver,))
    assert 0 < written < EVENTS, f"kill should land mid-stream, {written} rows were already written"
    kill_driver(driver)
    partial = count_rows(database, prefix)

    driver = start_driver(run, checkpoint, logs / "driver-2.log")
    try:
        assert wait_for_rows(database, prefix, EVENTS, 300, (driver,)) == EVENTS
    finally:
        kill_driver(driver)
    distinct, total = database.execute(
        "SELECT count(DISTINCT transaction_id), count(*) FROM transactions WHERE transaction_id LIKE %s",
        (prefix + "%",)).fetchone()
    assert (distinct, total) == (EVENTS, EVENTS), f"{partial} rows before the kill"
    letters = dead_letters(run.settings)
    assert set(letters) == set(BAD)
    for offset, (_, reason) in BAD.items():
        assert letters[offset].startswith(reason), letters[offset]

    # The local engine on the same stream (ids differ only by their prefix).
    local = new_run(spark_cluster, models, logs)
    local_prefix = f"local-{local.group}-"
    local.publish(events.assign(transaction_id=local_prefix + events["transaction_id"]))
    processor = local.start("local")
    assert wait_for_rows(database, local_prefix, EVENTS, 120, (processor,)) == EVENTS
    assert stop(processor) == 0

    spark_rows, local_rows = scored(database, prefix), scored(database, local_prefix)
    assert spark_rows.index.equals(local_rows.index)
    assert (spark_rows["model_version"] == local_rows["model_version"]).all()
    assert (spark_rows["score"] - local_rows["score"]).abs().max() <= TOLERANCE
    assert (spark_rows["decision"] == local_rows["decision"]).all()
    spark_features, local_features = features(spark_rows), features(local_rows)
    assert list(spark_features.columns) == list(local_features.columns)
    pd.testing.assert_frame_equal(spark_features, local_features, check_exact=False, rtol=0, atol=TOLERANCE)
