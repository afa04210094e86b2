"""Engine-agnostic steps around the feature core and the model: decode, build the database rows, the
alert messages and the dead letters.

Pure functions over pandas frames and bytes (no Kafka client, no Spark, no database driver), so the
local engine and the Spark engine's foreachBatch build identical outputs from the same batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.events.contract import (
    TRANSACTION_COLUMNS,
    DecodedBatch,
    Rejected,
    format_time_us,
    reject_future_events,
)
from fraudstream.events.fast_decode import decode_transactions

if TYPE_CHECKING:
    from fraudstream.batch.scoring import ScoreResult
    from fraudstream.features import FeatureRows

#: Bookkeeping columns an engine adds beside TRANSACTION_COLUMNS before building rows.
SOURCE_COLUMNS: dict[str, str] = {"kafka_partition": "int32", "kafka_offset": "int64", "ingested_at_us": "int64"}

#: Columns of the row frame, in the order of the writer's staging table (times as µs since the epoch).
ROW_COLUMNS: tuple[str, ...] = (
    *TRANSACTION_COLUMNS, "features", "score", "decision", "reasons", "model_version", "is_late", "engine",
    "kafka_partition", "kafka_offset", "ingested_at_us", "scored_at_us", "shadow_score", "shadow_model_version",
)

ALERT_DECISIONS = ("review", "block")

#: The broker accepts 2 MB messages; a dead letter keeps at most this much of the original payload.
MAX_DEAD_LETTER_BYTES = 2 * 1024 * 1024 - 64 * 1024

#: What a dead letter came from (its ``dlq.source`` header): a transaction event or a label.
DEAD_LETTER_SOURCES = ("transactions", "labels")

#: (key, original bytes, reason, provenance) as fraudstream.kafka.publish_dead_letters takes them.
DeadLetter = tuple[bytes | None, bytes | None, str, Mapping[str, str]]


def received_times_us(kafka_timestamps_us: np.ndarray, read_at_us: int) -> np.ndarray:
    """When each record was received: its Kafka timestamp, or the read time where the record has none."""
    stamps = np.asarray(kafka_timestamps_us, dtype=np.int64)
    return np.where(stamps > 0, stamps, read_at_us)


def decode(payloads: Sequence[bytes | None], received_at_us: np.ndarray, *, future_tolerance_s: float) -> DecodedBatch:
    """Decode and validate (text PostgreSQL cannot store, NUL characters, is rejected there too), so
    that no payload can make the database write fail and stop the engine; events dated more than
    ``future_tolerance_s`` after ``received_at_us`` (``received_times_us``) are rejected too, so that no
    producer's clock can move the feature state's event time."""
    return reject_future_events(decode_transactions(payloads), received_at_us, round(future_tolerance_s * 1_000_000))


def scored_rows(transactions: pd.DataFrame, features: FeatureRows, scores: ScoreResult, *, model_version: str,
                engine: str, scored_at_us: int, feature_columns: Sequence[str],
                shadow: tuple[np.ndarray, str] | None = None) -> pd.DataFrame:
    """The rows for the ``transactions`` table, in ROW_COLUMNS order.

    ``transactions`` holds TRANSACTION_COLUMNS and SOURCE_COLUMNS; ``features`` are the core's output
    aligned with it; ``feature_columns`` name the stored feature values, in order
    (fraudstream.store.writer.feature_order gives the order the database holds for a model version).
    ``shadow``: the challenger's probabilities and version, stored beside the score (null without one).
    """
    count = len(transactions)
    if shadow is None:
        shadow_score, shadow_version = pa.nulls(count, pa.float64()), pa.nulls(count, pa.string())
    else:
        shadow_score = pa.array(np.asarray(shadow[0], dtype=np.float64))
        shadow_version = pa.array(np.full(count, shadow[1], dtype=object), type=pa.string())
    computed = {
        "features": features_array(features.columns(feature_columns)),
        "score": np.asarray(scores.probability, dtype=np.float64),
        "decision": np.asarray(scores.decision, dtype=object),
        "reasons": np.fromiter(scores.reasons, dtype=object, count=len(scores.reasons)),
        "model_version": np.full(count, model_version, dtype=object),
        "is_late": features.is_late,
        "engine": np.full(count, engine, dtype=object),
        "scored_at_us": np.full(count, scored_at_us, dtype=np.int64),
        "shadow_score": pd.arrays.ArrowExtensionArray(shadow_score),
        "shadow_model_version": pd.arrays.ArrowExtensionArray(shadow_version),
    }
    # One construction: inserting columns one by one into a frame cost ~5 ms per micro-batch.
    return pd.DataFrame({name: computed[name] if name in computed else transactions[name].array
                         for name in ROW_COLUMNS}, copy=False)


def no_rows() -> pd.DataFrame:
    """An empty row frame (a batch with nothing new to write)."""
    return pd.DataFrame({name: [] for name in ROW_COLUMNS})


def features_array(matrix: np.ndarray) -> pd.arrays.ArrowStringArray:
    """One PostgreSQL double precision[] literal per row of a (rows, features) matrix, assembled in Arrow
    (no Python per row: this runs for every event). A number is the shortest text that reads back as the
    same double; a missing or infinite value is NULL."""
    values = np.where(np.isinf(matrix), np.nan, matrix).ravel()
    text = pc.fill_null(pc.cast(pa.array(values, from_pandas=True), pa.string()), "NULL")
    offsets = pa.array(np.arange(matrix.shape[0] + 1, dtype=np.int32) * matrix.shape[1])
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, text), ",")
    return pd.arrays.ArrowStringArray(pc.binary_join_element_wise("{", joined, "}", ""))


def alert_messages(rows: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    """(key, value) for every review/block row: keyed by transaction_id so that a consumer can drop the
    duplicates that at-least-once delivery may bring."""
    flagged = np.flatnonzero(np.isin(rows["decision"].to_numpy(dtype=object), ALERT_DECISIONS))
    if not flagged.size:
        return []

    def column(name: str) -> list[Any]:  # only the flagged rows of the columns an alert carries
        return rows[name].to_numpy()[flagged].tolist()

    names = ("transaction_id", "account_id", "merchant_id", "amount", "currency", "score", "decision",
             "model_version")
    columns = {name: column(name) for name in names}
    columns["event_time"] = [format_time_us(value) for value in column("event_time_us")]
    columns["scored_at"] = [format_time_us(value) for value in column("scored_at_us")]
    columns["reasons"] = [list(reasons) for reasons in column("reasons")]
    alerts = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    return [(alert["transaction_id"].encode(), orjson.dumps(alert)) for alert in alerts]


def dead_letters(keys: Sequence[bytes | None], payloads: Sequence[bytes | None], rejected: Sequence[Rejected],
                 *, source: str, topic: str, partitions: Sequence[int], offsets: Sequence[int],
                 engine: str) -> list[DeadLetter]:
    """The dead letters of a batch: the original bytes (cut to what the broker accepts, which a header
    says), the reason, and where the record came from so that it can be found and replayed.

    ``source`` is one of DEAD_LETTER_SOURCES (the ``dlq.source`` header): events and labels share the
    dead-letter topic, and a reader tells them apart by it."""
    if source not in DEAD_LETTER_SOURCES:
        raise ValueError(f"dead-letter source must be one of {', '.join(DEAD_LETTER_SOURCES)}, got {source!r}")
    letters: list[DeadLetter] = []
    for item in rejected:
        payload = payloads[item.position]
        provenance = {"source": source, "topic": topic, "partition": str(partitions[item.position]),
                      "offset": str(offsets[item.position]), "engine": engine}
        if payload is not None and len(payload) > MAX_DEAD_LETTER_BYTES:
            provenance["truncated_from_bytes"] = str(len(payload))
            payload = payload[:MAX_DEAD_LETTER_BYTES]
        letters.append((keys[item.position], payload, item.reason, provenance))
    return letters
