"""The engine contract, run against every engine (``engine`` fixture, conftest.py) on real Kafka, PostgreSQL
and Spark.

- Exact rows after SIGKILLs, with labels flowing: every event stored once, with the features, score and
  decision of a reference computed in-process by the batch step on the same stream (one FeatureState per
  partition, the labels applied before the transactions they precede). Each engine is held to the same
  reference within half the 1e-9 parity tolerance, so the two engines agree within it.
- Labels stored once each; bad events and a bad label dead-lettered with their reasons.
- Every alert names a transaction whose stored row has the alert's decision and score, and every flagged
  row has an alert (at least once), kills included.
- A promoted model takes over at a batch boundary: no batch mixes model versions, and each partition
  switches once.

Labels and transactions are ordered so that the result does not depend on arrival timing: the first
labels (dated after the first half of the stream, before the second) flow during the first half, and the
second half is published only once the engine has stored them; the second labels, dated after the whole
stream, flow during the second half.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psycopg
import pytest
from contract_helpers import EngineUnderTest, kill, read_topic
from local_engine_harness import (
    EngineRun,
    count_rows,
    model_state_dir,
    new_run,
    private_model_state,
    scored,
    stop,
    stream,
    wait_for_rows,
)

from fraudstream import kafka
from fraudstream.batch import BatchStep, ModelChoice, OnePartition, Records
from fraudstream.batch.scoring import Scorer
from fraudstream.config import Settings
from fraudstream.events.contract import LABEL_COLUMNS, encode, label_to_dict, partition_for, transaction_to_dict
from fraudstream.features import FeatureState
from fraudstream.model.registry import Registry
from fraudstream.store import writer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

#: Events per engine: enough for several batches between kills, few enough for Spark's pace.
EVENTS = {"local": 8_000, "spark": 3_000}
#: Half the parity tolerance between the engines: each is compared with the same reference.
TOLERANCE = 0.5e-9
#: Offset in partition 0 -> payload and the start of its dead-letter reason (published before the stream).
BAD_EVENTS = {
    0: (b"{not json", "invalid JSON"),
    1: (b'{"schema_version": 1, "transaction_id": "x"}', "missing field: event_time"),
    2: (orjson.dumps({
        "schema_version": 1, "transaction_id": "future", "event_time": "2090-01-01T00:00:00Z", "account_id": "a",
        "amount": 1.0, "currency": "EUR", "merchant_id": "m", "merchant_category": "grocery",
        "payment_method": "credit_card", "channel": "online", "country": "DE", "latitude": 0.0, "longitude": 0.0,
        "device_id": "d"}), "event_time_in_future"),
}
BAD_LABEL = (b'{"transaction_id": "no-other-field"}', "is_fraud must be true or false")


def labels_for(transactions: pd.DataFrame, labeled_at_us: int) -> pd.DataFrame:
    """A label for each transaction (every third one fraud), all dated ``labeled_at_us``."""
    count = len(transactions)
    return pd.DataFrame({
        "transaction_id": transactions["transaction_id"].to_numpy(),
        "account_id": transactions["account_id"].to_numpy(), "merchant_id": transactions["merchant_id"].to_numpy(),
        "is_fraud": np.arange(count) % 3 == 0,
        "scenario": None, "labeled_at_us": np.full(count, labeled_at_us)}).astype(LABEL_COLUMNS)


def publish_labels(run: EngineRun, labels: pd.DataFrame) -> None:
    producer = kafka.producer(run.settings)
    for row in labels.itertuples(index=False):
        kafka.produce(producer, run.settings.labels_topic, encode(label_to_dict(row)), row.transaction_id.encode())
    assert producer.flush(30) == 0


def publish_bad(run: EngineRun) -> None:
    producer = kafka.producer(run.settings)
    for payload, _ in BAD_EVENTS.values():
        kafka.produce(producer, run.settings.transactions_topic, payload, b"bad", partition=0)
    kafka.produce(producer, run.settings.labels_topic, BAD_LABEL[0], b"bad", partition=0)
    assert producer.flush(30) == 0


def publish_slowly(run: EngineRun, events: pd.DataFrame, labels: pd.DataFrame, seconds: float) -> threading.Thread:
    """Publish events and labels in ten steps over ``seconds``, on a thread (started)."""

    def publish() -> None:
        for event_rows, label_rows in zip(np.array_split(np.arange(len(events)), 10),
                                          np.array_split(np.arange(len(labels)), 10), strict=True):
            run.publish(events.iloc[event_rows])
            publish_labels(run, labels.iloc[label_rows])
            time.sleep(seconds / 10)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return thread


def phase(engine: EngineUnderTest, run: EngineRun, database: psycopg.Connection, prefix: str,
          events: pd.DataFrame, labels: pd.DataFrame, kills: int, rng: random.Random) -> list[int]:
    """Publish events and labels in ``kills + 1`` parts; during each of the first ``kills``, start a member,
    let it commit and SIGKILL it at a random moment while the part still arrives. Rows after each kill."""
    parts = zip(np.array_split(np.arange(len(events)), kills + 1), np.array_split(np.arange(len(labels)), kills + 1),
                strict=True)
    progress = []
    for number, (event_rows, label_rows) in enumerate(parts):
        if number == kills:  # the last part arrives with no kill to come
            publish_slowly(run, events.iloc[event_rows], labels.iloc[label_rows], 0).join()
            break
        member = engine.start(run, "member")
        before = count_rows(database, prefix)
        feed = publish_slowly(run, events.iloc[event_rows], labels.iloc[label_rows], 2.0)
        wait_for_rows(database, prefix, before + 1, engine.stall_s, (member,))
        time.sleep(rng.uniform(0.0, 0.6))
        kill(member)
        feed.join()
        progress.append(count_rows(database, prefix))
    return progress


def count_labels(database: psycopg.Connection, prefix: str) -> int:
    return database.execute("SELECT count(*) FROM labels WHERE transaction_id LIKE %s", (prefix + "%",)).fetchone()[0]


def wait_for_labels(database: psycopg.Connection, prefix: str, expected: int, member: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while count_labels(database, prefix) < expected:
        assert member.poll() is None, "the engine exited"  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"{count_labels(database, prefix)} of {expected} labels stored"
        time.sleep(0.5)


def reference(settings: Settings, database: psycopg.Connection, phases: Sequence[tuple[pd.DataFrame, pd.DataFrame]],
              ) -> pd.DataFrame:
    """The rows a clean run must store: per partition, each phase's labels then its transactions through the
    batch step with one FeatureState, scored by the production model."""
    scorer = Scorer.from_registry(settings.models_dir)
    model = ModelChoice(scorer, writer.feature_order(database, scorer.model_version, scorer.feature_names))
    step = BatchStep("reference", settings.event_time_future_tolerance_s)
    now_us = time.time_ns() // 1000
    partitions = settings.transactions_partitions
    rows = []
    for partition in range(partitions):
        state = OnePartition(FeatureState(scorer.feature_config))
        for labels, transactions in phases:
            mine = transactions[[partition_for(a, partitions) == partition for a in transactions["account_id"]]]
            payloads = [encode(transaction_to_dict(row)) for row in mine.itertuples(index=False)]
            label_payloads = [encode(label_to_dict(row)) for row in labels.itertuples(index=False)]
            rows.append(step.run(records(settings.transactions_topic, payloads, partition),
                                 records(settings.labels_topic, label_payloads, 0), state, model,
                                 ingested_at_us=now_us).rows)
    return pd.concat(rows, ignore_index=True)


def records(topic: str, payloads: list[bytes], partition: int) -> Records:
    count = len(payloads)
    return Records(topic, payloads, np.full(count, partition, np.int32), np.arange(count, dtype=np.int64),
                   np.full(count, time.time_ns() // 1000, np.int64), keys=lambda: [None] * count)


def test_exact_rows_after_kills_with_labels_flowing(
    engine: EngineUnderTest, postgres_ready: Settings, database: psycopg.Connection, logs: Path
) -> None:
    run = new_run(postgres_ready, model_state_dir(postgres_ready), logs)
    prefix = f"contract-{engine.name}-{run.group}-"
    events = stream(EVENTS[engine.name], prefix)
    half = len(events) // 2
    first, second = events.iloc[:half], events.iloc[half:]
    first_labels = labels_for(first.iloc[::4], int(second["event_time_us"].min()) - 1)
    second_labels = labels_for(second.iloc[::4], int(events["event_time_us"].max()) + 1)
    rng = random.Random(20261203)
    publish_bad(run)

    # Phase 1: the first half and the first labels flow while the engine is killed.
    progress = phase(engine, run, database, prefix, first, first_labels, engine.kills // 2, rng)
    member = engine.start(run, "member")
    try:
        assert wait_for_rows(database, prefix, half, engine.stall_s, (member,)) == half
        wait_for_labels(database, prefix, len(first_labels), member, engine.stall_s)
    finally:
        kill(member)
    # Phase 2: the second half (which the first labels affect) and the second labels, with more kills.
    progress += phase(engine, run, database, prefix, second, second_labels, engine.kills - engine.kills // 2, rng)
    member = engine.start(run, "member")
    try:
        assert wait_for_rows(database, prefix, len(events), engine.stall_s, (member,)) == len(events)
        wait_for_labels(database, prefix, len(first_labels) + len(second_labels), member, 240)
        time.sleep(2)  # anything written late would show as an extra row
    finally:
        if engine.name == "local":
            assert stop(member) == 0
        else:
            kill(member)
    assert len(progress) == engine.kills and progress[0] > 0 and progress[-1] < len(events), \
        f"kills did not land mid-stream: rows after each {progress}"

    # Every event once, as the reference scores it.
    distinct, total = database.execute(
        "SELECT count(DISTINCT transaction_id), count(*) FROM transactions WHERE transaction_id LIKE %s",
        (prefix + "%",)).fetchone()
    assert (distinct, total) == (len(events), len(events)), f"rows after each kill: {progress}"
    stored = scored(database, prefix)
    expected = reference(run.settings, database, [(first_labels.iloc[:0], first), (first_labels, second)])
    expected = expected.assign(id=expected["transaction_id"].str.slice(len(prefix))).set_index("id").sort_index()
    assert stored.index.equals(expected.index)
    mismatched = stored.index[stored["features"] != expected["features"]]
    assert mismatched.empty, f"{len(mismatched)} rows with other features than the reference, e.g. {mismatched[:3]}"
    assert (stored["score"] - expected["score"]).abs().max() <= TOLERANCE
    assert (stored["decision"] == expected["decision"]).all()
    affected = expected.loc[second["transaction_id"].str.slice(len(prefix)), "features"]
    unlabeled = reference(run.settings, database, [(first_labels.iloc[:0], events)])
    unlabeled = unlabeled.set_index(unlabeled["transaction_id"].str.slice(len(prefix)))
    assert (affected != unlabeled.loc[affected.index, "features"]).any(), "the labels changed no feature"

    # Labels once each; dead letters with their reasons.
    labels = dict(database.execute("SELECT transaction_id, is_fraud FROM labels WHERE transaction_id LIKE %s",
                                   (prefix + "%",)).fetchall())
    all_labels = pd.concat([first_labels, second_labels])
    assert labels == dict(zip(all_labels["transaction_id"], all_labels["is_fraud"].tolist(), strict=True))
    letters = {(h["dlq.source"], int(h["dlq.offset"])): h["dlq.reason"]
               for _, _, h in read_topic(run.settings, run.settings.dlq_topic, len(BAD_EVENTS) + 1)}
    assert set(letters) == {("transactions", offset) for offset in BAD_EVENTS} | {("labels", 0)}
    for offset, (_, reason) in BAD_EVENTS.items():
        assert letters["transactions", offset].startswith(reason), letters["transactions", offset]
    assert letters["labels", 0].startswith(BAD_LABEL[1]), letters["labels", 0]

    # Alerts match the stored rows, kills included; every flagged row has one.
    flagged = stored[stored["decision"] != "approve"]
    alerts = [orjson.loads(value) for _, value, _ in read_topic(run.settings, run.settings.alerts_topic, len(flagged))]
    assert flagged.index.isin([alert["transaction_id"][len(prefix):] for alert in alerts]).all()
    for alert in alerts:
        row = stored.loc[alert["transaction_id"][len(prefix):]]
        assert (alert["decision"], alert["score"]) == (row["decision"], row["score"]), alert


def test_a_promoted_model_takes_over_at_a_batch_boundary(
    engine: EngineUnderTest, postgres_ready: Settings, database: psycopg.Connection, logs: Path, tmp_path: Path
) -> None:
    state = private_model_state(postgres_ready, tmp_path / "state")
    registry = Registry(state / "models")
    before = registry.production_version()
    artifact = registry.load(before)
    after = registry.publish(artifact.booster, artifact.manifest)
    run = new_run(postgres_ready, state, logs)
    prefix = f"switch-{engine.name}-{run.group}-"
    events = stream(3_000, prefix)
    stall_s = engine.stall_s
    member = engine.start(run, "switch")
    try:
        run.publish(events.iloc[:1_000])
        assert wait_for_rows(database, prefix, 1_000, stall_s, (member,)) == 1_000
        registry.promote(after)
        # A trickle until the new model scores (it is loaded in the background, then taken at a boundary).
        sent, deadline = 1_000, time.monotonic() + stall_s
        while not database.execute("SELECT count(*) FROM transactions WHERE transaction_id LIKE %s"
                                   " AND model_version = %s", (prefix + "%", after)).fetchone()[0]:
            assert time.monotonic() < deadline and member.poll() is None, "the promoted model never scored"
            if sent < 2_000:
                run.publish(events.iloc[sent:sent + 50])
                sent += 50
            time.sleep(0.5)
        run.publish(events.iloc[sent:])
        assert wait_for_rows(database, prefix, len(events), stall_s, (member,)) == len(events)
        assert engine.switch_log in run.log_text("switch")
    finally:
        kill(member)

    rows = pd.DataFrame(database.execute(
        "SELECT transaction_id, model_version, kafka_partition, kafka_offset, xmin::text FROM transactions"
        " WHERE transaction_id LIKE %s ORDER BY kafka_partition, kafka_offset", (prefix + "%",)).fetchall(),
        columns=["id", "version", "partition", "offset", "transaction"])
    assert set(rows.loc[rows["id"].isin(events["transaction_id"].iloc[:1_000]), "version"]) == {before}
    assert set(rows.loc[rows["id"].isin(events["transaction_id"].iloc[sent:]), "version"]) == {after}
    assert (rows.groupby("transaction")["version"].nunique() == 1).all(), "a database transaction mixed models"
    for _, partition in rows.groupby("partition"):
        switched = (partition["version"] == after).to_numpy()
        assert (np.diff(switched.astype(int)) >= 0).all(), "a partition went back to the old model"


def test_a_challenger_in_shadow_is_scored_beside_production_at_a_batch_boundary(
    engine: EngineUnderTest, postgres_ready: Settings, database: psycopg.Connection, logs: Path, tmp_path: Path
) -> None:
    """The same model republished as the challenger: once in shadow, each row stores its score beside the
    production score (equal, being the same trees) while the production model alone decides."""
    state = private_model_state(postgres_ready, tmp_path / "state")
    registry = Registry(state / "models")
    production = registry.production_version()
    artifact = registry.load(production)
    challenger = registry.publish(artifact.booster, artifact.manifest)
    run = new_run(postgres_ready, state, logs)
    prefix = f"shadow-{engine.name}-{run.group}-"
    events = stream(2_000, prefix)
    member = engine.start(run, "shadow")
    try:
        run.publish(events.iloc[:500])
        assert wait_for_rows(database, prefix, 500, engine.stall_s, (member,)) == 500
        registry.set_shadow(challenger)
        sent, deadline = 500, time.monotonic() + engine.stall_s
        while not database.execute("SELECT count(*) FROM transactions WHERE transaction_id LIKE %s"
                                   " AND shadow_model_version = %s", (prefix + "%", challenger)).fetchone()[0]:
            assert time.monotonic() < deadline and member.poll() is None, "the shadow model never scored"
            if sent < 1_500:
                run.publish(events.iloc[sent:sent + 50])
                sent += 50
            time.sleep(0.5)
        run.publish(events.iloc[sent:])
        assert wait_for_rows(database, prefix, len(events), engine.stall_s, (member,)) == len(events)
    finally:
        kill(member)

    rows = pd.DataFrame(database.execute(
        "SELECT transaction_id, model_version, score, shadow_score, shadow_model_version, xmin::text"
        " FROM transactions WHERE transaction_id LIKE %s", (prefix + "%",)).fetchall(),
        columns=["id", "version", "score", "shadow_score", "shadow_version", "transaction"])
    assert set(rows["version"]) == {production}
    first = rows["id"].isin(events["transaction_id"].iloc[:500])
    assert rows.loc[first, "shadow_version"].isna().all() and rows.loc[first, "shadow_score"].isna().all()
    last = rows[rows["id"].isin(events["transaction_id"].iloc[sent:])]
    assert set(last["shadow_version"]) == {challenger}
    shadowed = rows[rows["shadow_version"].notna()]
    assert np.array_equal(shadowed["shadow_score"].to_numpy(float), shadowed["score"].to_numpy(float))
    mixed = rows.fillna({"shadow_version": ""}).groupby("transaction")["shadow_version"].nunique()
    assert (mixed == 1).all(), "a database transaction mixed shadow models"
