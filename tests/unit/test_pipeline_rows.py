"""Rows for the transactions table and alert messages, from a decoded batch, features and scores."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from fraudstream.batch import rows as pipeline
from fraudstream.batch.scoring import ScoreResult
from fraudstream.events.contract import transactions_frame
from fraudstream.features import FeatureRows

pytestmark = pytest.mark.unit


def batch() -> tuple[pd.DataFrame, FeatureRows, ScoreResult]:
    frame = transactions_frame(
        (f"t{i}", 1_795_860_000_000_000 + i, f"a{i}", 10.0 + i, "EUR", "m1", "grocery", "credit_card", "online",
         "DE", 52.5, 13.4, f"d{i}") for i in range(4))
    frame["kafka_partition"] = np.int32(2)
    frame["kafka_offset"] = np.arange(40, 44, dtype=np.int64)
    frame["ingested_at_us"] = np.int64(1_795_860_001_000_000)
    features = FeatureRows(np.column_stack((frame["amount"], [1.0, np.nan, np.inf, 0.25])), ("amount", "hour_of_day"),
                           np.array([False, True, False, False]))
    scores = ScoreResult(np.array([0.1, 0.6, 0.95, 0.2]), np.array(["approve", "review", "block", "approve"]),
                         [(), ("amount is high",), ("amount is high", 'a "quoted" reason'), ()])
    return frame, features, scores


def test_scored_rows_hold_every_column_in_order_with_feature_arrays() -> None:
    frame, features, scores = batch()
    rows = pipeline.scored_rows(frame, features, scores, model_version="v0007", engine="local",
                                scored_at_us=1_795_860_002_000_000, feature_columns=["hour_of_day", "amount"])
    assert tuple(rows.columns) == pipeline.ROW_COLUMNS
    assert rows["features"].tolist() == ["{1,10}", "{NULL,11}", "{NULL,12}", "{0.25,13}"]
    assert rows["is_late"].tolist() == [False, True, False, False]
    assert rows["kafka_offset"].tolist() == [40, 41, 42, 43]
    assert set(rows["model_version"]) == {"v0007"} and set(rows["engine"]) == {"local"}
    assert rows["reasons"].tolist()[2] == ("amount is high", 'a "quoted" reason')


def test_alerts_only_for_review_and_block_keyed_by_transaction() -> None:
    frame, features, scores = batch()
    rows = pipeline.scored_rows(frame, features, scores, model_version="v0007", engine="local",
                                scored_at_us=1_795_860_002_000_000, feature_columns=["amount"])
    alerts = pipeline.alert_messages(rows)
    assert [key for key, _ in alerts] == [b"t1", b"t2"]
    second = orjson.loads(alerts[1][1])
    assert second == {"transaction_id": "t2", "account_id": "a2", "merchant_id": "m1", "amount": 12.0,
                      "currency": "EUR", "score": 0.95, "decision": "block", "model_version": "v0007",
                      "event_time": "2026-11-28T10:00:00.000002Z", "scored_at": "2026-11-28T10:00:02.000000Z",
                      "reasons": ["amount is high", 'a "quoted" reason']}
    assert pipeline.alert_messages(rows[rows["decision"] == "approve"]) == []


def test_shadow_scores_are_null_without_a_shadow_model_and_written_as_null() -> None:
    from fraudstream.store.writer import encode_scored

    frame, features, scores = batch()
    rows = pipeline.scored_rows(frame, features, scores, model_version="v0007", engine="local",
                                scored_at_us=1_795_860_002_000_000, feature_columns=["amount"])
    assert rows["shadow_score"].isna().all() and rows["shadow_model_version"].isna().all()
    assert encode_scored(rows).decode().splitlines()[0].endswith(",,")  # NULL, NULL in the COPY
    shadowed = pipeline.scored_rows(frame, features, scores, model_version="v0007", engine="local",
                                    scored_at_us=1_795_860_002_000_000, feature_columns=["amount"],
                                    shadow=(np.array([0.5, 0.25, 0.125, 1.0]), "v0008"))
    assert shadowed["shadow_score"].tolist() == [0.5, 0.25, 0.125, 1.0]
    assert set(shadowed["shadow_model_version"]) == {"v0008"}
    assert encode_scored(shadowed).decode().splitlines()[0].endswith(',0.5,"v0008"')
