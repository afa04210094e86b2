"""The store writer the engines share: idempotent upserts, offsets and snapshots that only move forwards."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import psycopg
import pytest

from fraudstream.batch import rows as pipeline
from fraudstream.batch.scoring import ScoreResult
from fraudstream.config import Settings
from fraudstream.events.contract import LABEL_COLUMNS, transactions_frame
from fraudstream.features import FeatureRows
from fraudstream.store import writer

pytestmark = pytest.mark.integration


def rows(prefix: str, count: int) -> pd.DataFrame:
    frame = transactions_frame(
        (f"{prefix}{i}", 1_795_860_000_000_000 + i, f"acct,\"{i}\"", 10.5 + i, "EUR", "merch'; --", "grocery",
         "credit_card", "online", "DE", 52.5, 13.4, "dev\n{1}") for i in range(count))
    frame["kafka_partition"] = np.int32(0)
    frame["kafka_offset"] = np.arange(count, dtype=np.int64)
    frame["ingested_at_us"] = np.int64(1_795_860_001_000_000)
    features = FeatureRows(np.column_stack((frame["amount"], np.full(count, np.nan))),
                           ("amount", "speed_from_previous_kmh"), np.zeros(count, dtype=bool))
    scores = ScoreResult(np.linspace(0, 1, count), np.array(["approve", "review", "block"] * count)[:count],
                         [("amount is high", 'quote " and {brace}, comma')] * count)
    return pipeline.scored_rows(frame, features, scores, model_version="v-test", engine="test",
                                scored_at_us=1_795_860_002_000_000,
                                feature_columns=["amount", "speed_from_previous_kmh"])


def test_scored_rows_are_written_once_with_their_text_intact(database: psycopg.Connection) -> None:
    prefix = f"writer-{uuid.uuid4().hex[:8]}-"
    batch = rows(prefix, 50)
    with database.transaction():
        database.execute("SET LOCAL TimeZone = 'America/St_Johns'")  # the times carry their own offset
        assert writer.upsert_scored(database, batch) == 50
    with database.transaction():
        assert writer.upsert_scored(database, batch) == 0
    stored = database.execute(
        "SELECT account_id, merchant_id, device_id, reasons, features,"
        " (extract(epoch FROM event_time) * 1e6)::bigint, (extract(epoch FROM ingested_at) * 1e6)::bigint,"
        " (extract(epoch FROM scored_at) * 1e6)::bigint FROM transactions WHERE transaction_id = %s",
        (prefix + "0",)).fetchone()
    assert stored == ('acct,"0"', "merch'; --", "dev\n{1}", ["amount is high", 'quote " and {brace}, comma'],
                      [10.5, None], 1_795_860_000_000_000, 1_795_860_001_000_000, 1_795_860_002_000_000)


def test_feature_arrays_are_named_by_the_model_version(database: psycopg.Connection) -> None:
    prefix = f"writer-{uuid.uuid4().hex[:8]}-"
    version = f"v-{prefix}"
    names = ("amount", "speed_from_previous_kmh")
    assert writer.feature_order(database, version, names) == names
    assert writer.feature_order(database, version, names[::-1]) == names  # the first registration wins
    with pytest.raises(writer.FeatureOrderMismatch, match="new version"):
        writer.feature_order(database, version, ("amount", "another_feature"))
    batch = rows(prefix, 3).assign(model_version=version)
    with database.transaction():
        writer.upsert_scored(database, batch)
    named = database.execute("SELECT features FROM transaction_features WHERE transaction_id = %s",
                             (prefix + "2",)).fetchone()[0]
    assert named == {"amount": 12.5, "speed_from_previous_kmh": None}


def test_labels_are_written_once(database: psycopg.Connection) -> None:
    transaction = f"writer-label-{uuid.uuid4().hex[:8]}"
    labels = pd.DataFrame([(transaction, "a", "m", True, "card_testing", 1_795_860_000_000_000)] * 2,
                          columns=list(LABEL_COLUMNS)).astype(LABEL_COLUMNS)
    with database.transaction():
        assert writer.upsert_labels(database, labels) == 1
        assert writer.upsert_labels(database, labels) == 0


def test_offsets_and_snapshots_only_move_forwards(postgres_ready: Settings, database: psycopg.Connection) -> None:
    group, topic = f"writer-{uuid.uuid4().hex[:8]}", "writer-topic"
    with database.transaction():
        assert writer.advance_offsets(database, group, topic, {0: 10, 1: 5}) == []
        assert writer.advance_offsets(database, group, topic, {0: 12, 1: 4}) == [1]
        assert writer.save_snapshot(database, group, topic, 0, next_offset=12, state=b"state-12",
                                    feature_code_version="1", label_offsets={0: 3})
        assert not writer.save_snapshot(database, group, topic, 0, next_offset=11, state=b"old",
                                        feature_code_version="1", label_offsets={})
    checkpoint = writer.load_checkpoint(database, group, topic, 0)
    assert checkpoint == writer.Checkpoint(12, 12, b"state-12", "1", {0: 3})
    assert writer.load_checkpoint(database, group, topic, 2) == writer.Checkpoint(None, None, None, None, {})
