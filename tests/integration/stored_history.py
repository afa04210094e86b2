"""Write a simulated history into PostgreSQL as the engines would have: scored rows through the store writer
the engines use, and the labels arrived so far."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg

from fraudstream.batch import rows as batch_rows
from fraudstream.batch.scoring import ScoreResult
from fraudstream.features import FeatureRows
from fraudstream.store import writer


def store_history(url: str, transactions: pd.DataFrame, labels: pd.DataFrame, *, score: np.ndarray | None = None,
                  model_version: str = "v-old", shadow: tuple[np.ndarray, str] | None = None) -> None:
    """The transactions as scored rows (by default model ``v-old``, score 0, every one approved; ``shadow``: a
    challenger's scores beside) and the labels."""
    frame = transactions.copy()
    count = len(frame)
    frame["kafka_partition"] = np.int32(0)
    frame["kafka_offset"] = np.arange(count, dtype=np.int64)
    frame["ingested_at_us"] = frame["event_time_us"]
    features = FeatureRows(frame[["amount"]].to_numpy(), ("amount",), np.zeros(count, dtype=bool))
    scores = ScoreResult(np.zeros(count) if score is None else score, np.full(count, "approve", dtype=object),
                         [()] * count)
    rows = batch_rows.scored_rows(frame, features, scores, model_version=model_version, engine="test",
                                scored_at_us=int(frame["event_time_us"].max()), feature_columns=["amount"],
                                shadow=shadow)
    with psycopg.connect(url, autocommit=True) as connection, connection.transaction():
        assert writer.upsert_scored(connection, rows) == count
        writer.upsert_labels(connection, labels)
