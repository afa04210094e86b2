"""Idempotent writes of scored rows and labels, and the engines' offsets and state checkpoints.

Rows are copied straight into ``transactions`` (CSV and text[] literals written by Arrow, so no Python
loop per row or field) inside a savepoint; only when a row is already there (a replay, a producer's
retry) does the batch go the idempotent way: COPY into a temporary staging table, then ``INSERT ...
ON CONFLICT DO NOTHING``, so a transaction written twice stays one row. The direct COPY spares
PostgreSQL the staging table and the speculative insertion on the hot path.
None of these functions commits: the caller owns the transaction, so rows, offsets and snapshots of a
batch become durable together. Usable from a Spark foreachBatch with a plain pandas frame and a
connection.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from fraudstream.batch.rows import ROW_COLUMNS
from fraudstream.store.exceptions import FeatureOrderMismatch

#: Columns of ``transactions`` in ROW_COLUMNS order: the row frame's µs times become timestamptz.
_SCORED_COLUMNS = ", ".join(name.removesuffix("_us") for name in ROW_COLUMNS)
_TIMES_US = ("event_time_us", "ingested_at_us", "scored_at_us")
_SCORED_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS scored_stage (LIKE transactions INCLUDING DEFAULTS)"
                 " ON COMMIT DELETE ROWS")
_SCORED_UPSERT = f"""
INSERT INTO transactions ({_SCORED_COLUMNS}) SELECT {_SCORED_COLUMNS} FROM scored_stage
ON CONFLICT (transaction_id, event_time) DO NOTHING
"""
_EPOCH_PLUS = "timestamptz 'epoch' + {} * interval '1 microsecond'"
_LABEL_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS label_stage (
    transaction_id text, account_id text, merchant_id text, is_fraud boolean, scenario text, labeled_at_us bigint
) ON COMMIT DELETE ROWS
"""
_LABEL_UPSERT = f"""
INSERT INTO labels (transaction_id, account_id, merchant_id, is_fraud, scenario, labeled_at)
SELECT DISTINCT ON (transaction_id) transaction_id, account_id, merchant_id, is_fraud, scenario,
    {_EPOCH_PLUS.format("labeled_at_us")}
FROM label_stage
ON CONFLICT (transaction_id) DO NOTHING
"""
_LABEL_COLUMNS = ("transaction_id", "account_id", "merchant_id", "is_fraud", "scenario", "labeled_at_us")
_CSV = pa_csv.WriteOptions(include_header=False, quoting_style="needed")


@dataclass(frozen=True)
class Checkpoint:
    """Where a partition resumes: the committed offset, and the latest feature-state snapshot (if any)."""

    committed_offset: int | None
    snapshot_offset: int | None
    state: bytes | None
    feature_code_version: str | None
    label_offsets: dict[int, int]


def _csv(data: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pa_csv.write_csv(data, buffer, _CSV)
    return buffer.getvalue()


def _copy(connection: psycopg.Connection, target: str, payload: bytes) -> None:
    with connection.cursor().copy(f"COPY {target} FROM STDIN (FORMAT csv)") as copy:
        copy.write(payload)


def _pg_arrays(lists: pd.Series) -> pa.Array:
    """text[] literals of sequences of strings; every element quoted and escaped, so commas, braces and
    quotes in reasons are safe."""
    arrays = pa.array(lists.to_numpy(dtype=object), type=pa.list_(pa.string()))
    escaped = pc.replace_substring(pc.replace_substring(arrays.flatten(), "\\", "\\\\"), '"', '\\"')
    joined = pc.binary_join(pa.ListArray.from_arrays(arrays.offsets, escaped), '","')
    return pc.if_else(pc.equal(pc.list_value_length(arrays), 0), "{}",
                      pc.binary_join_element_wise('{"', joined, '"}', ""))


def encode_scored(rows: pd.DataFrame) -> bytes:
    """The COPY payload (CSV) of rows built by fraudstream.batch.rows.scored_rows. Separate from the write so
    that an engine can encode on its processing thread and leave its writer thread only the I/O."""
    columns = [_copy_column(rows, name) for name in ROW_COLUMNS]
    return _csv(pa.Table.from_arrays(columns, names=list(ROW_COLUMNS)))


def _copy_column(rows: pd.DataFrame, name: str) -> pa.Array | pa.ChunkedArray:
    """One row column as Arrow for the CSV: Arrow-backed text as it is, NumPy-backed values without
    inference (Table.from_pandas pays for pandas metadata on every micro-batch); reasons as text[]
    literals, µs times as timestamptz literals."""
    if name == "reasons":
        return _pg_arrays(rows[name])
    values = rows[name].array
    column = pa.array(values) if hasattr(values, "__arrow_array__") else pa.array(rows[name].to_numpy())
    return _timestamptz_text(column) if name in _TIMES_US else column


def _timestamptz_text(times_us: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """timestamptz literals ("2026-01-01 15:41:09.161135+00") of µs since the epoch, built in bulk:
    Arrow's CSV writer formats a zoned timestamp column value by value, far slower."""
    text = pc.cast(pc.cast(times_us, pa.timestamp("us")), pa.string())
    return pc.binary_join_element_wise(text, "+00", "")


def write_scored(connection: psycopg.Connection, payload: bytes, count: int) -> int:
    """Insert ``count`` rows encoded by encode_scored; returns how many were new."""
    if not count:
        return 0
    try:
        with connection.transaction():
            _copy(connection, f"transactions ({_SCORED_COLUMNS})", payload)
        return count
    except psycopg.errors.UniqueViolation:
        pass
    connection.execute(_SCORED_STAGE)
    _copy(connection, f"scored_stage ({_SCORED_COLUMNS})", payload)
    return connection.execute(_SCORED_UPSERT).rowcount


def upsert_scored(connection: psycopg.Connection, rows: pd.DataFrame) -> int:
    """Insert rows built by fraudstream.batch.rows.scored_rows; returns how many were new."""
    if rows.empty:
        return 0
    return write_scored(connection, encode_scored(rows), len(rows))


def flagged_rows(connection: psycopg.Connection, transaction_ids: Sequence[str]) -> pd.DataFrame:
    """The stored review/block rows among ``transaction_ids``, with the columns an alert carries (times as µs):
    alerts of a replayed batch are built from what is stored, never from a second scoring."""
    found = connection.execute(
        "SELECT transaction_id, account_id, merchant_id, amount, currency, score, decision, model_version,"
        " (extract(epoch FROM event_time) * 1000000)::bigint, (extract(epoch FROM scored_at) * 1000000)::bigint,"
        " reasons FROM transactions WHERE transaction_id = ANY(%s) AND decision <> 'approve'"
        " ORDER BY kafka_partition, kafka_offset", (list(transaction_ids),)).fetchall()
    return pd.DataFrame(found, columns=["transaction_id", "account_id", "merchant_id", "amount", "currency", "score",
                                        "decision", "model_version", "event_time_us", "scored_at_us", "reasons"])


def feature_order(connection: psycopg.Connection, model_version: str, names: Sequence[str]) -> tuple[str, ...]:
    """Register the feature names of a model version (the first registration wins) and return the order
    its rows' feature arrays are stored in: the model's own, except for versions whose rows predate the
    arrays (migration 003 registered those in their old key order). Call once per model load."""
    connection.execute("INSERT INTO model_features (model_version, feature_names) VALUES (%s, %s)"
                       " ON CONFLICT (model_version) DO NOTHING", (model_version, list(names)))
    stored = connection.execute("SELECT feature_names FROM model_features WHERE model_version = %s",
                                (model_version,)).fetchone()[0]
    if sorted(stored) != sorted(names):
        raise FeatureOrderMismatch(f"model_features holds other feature names for {model_version} than the model "
                                   f"has ({sorted(set(stored) ^ set(names))[:5]}); a model version must not be "
                                   "reused for another model: publish it under a new version")
    return tuple(stored)


def upsert_labels(connection: psycopg.Connection, labels: pd.DataFrame) -> int:
    """Insert labels (LABEL_COLUMNS of fraudstream.events.contract); the first label of a transaction wins."""
    if labels.empty:
        return 0
    connection.execute(_LABEL_STAGE)
    _copy(connection, "label_stage", _csv(pa.Table.from_pandas(labels[list(_LABEL_COLUMNS)], preserve_index=False)))
    return connection.execute(_LABEL_UPSERT).rowcount


def advance_offsets(connection: psycopg.Connection, group: str, topic: str, offsets: Mapping[int, int]) -> list[int]:
    """Record the next offset to consume per partition, only ever forwards.

    Returns the partitions whose stored offset is already beyond the given one (another member wrote
    it): the caller must treat that as a broken invariant and roll back. One statement for all the
    partitions, so the round trips do not grow with the partitions a batch touches.
    """
    if not offsets:
        return []
    partitions = sorted(offsets)
    advanced = connection.execute(
        "INSERT INTO engine_offsets (consumer_group, topic, partition, next_offset)"
        " SELECT %s, %s, partition, next_offset FROM unnest(%s::integer[], %s::bigint[]) AS t(partition, next_offset)"
        " ON CONFLICT (consumer_group, topic, partition) DO UPDATE"
        " SET next_offset = EXCLUDED.next_offset, updated_at = clock_timestamp()"
        " WHERE engine_offsets.next_offset <= EXCLUDED.next_offset RETURNING partition",
        (group, topic, partitions, [offsets[partition] for partition in partitions]),
    ).fetchall()
    return sorted(set(partitions) - {row[0] for row in advanced})


def save_snapshot(connection: psycopg.Connection, group: str, topic: str, partition: int, *, next_offset: int,
                  state: bytes, feature_code_version: str, label_offsets: Mapping[int, int]) -> bool:
    """Store a partition's feature state taken after consuming up to ``next_offset``; False when a newer
    snapshot is already stored (snapshots, like offsets, only move forwards)."""
    return connection.execute(
        "INSERT INTO engine_state_snapshots (consumer_group, topic, partition, next_offset, state,"
        " feature_code_version, label_offsets) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,"
        " state = EXCLUDED.state, feature_code_version = EXCLUDED.feature_code_version,"
        " label_offsets = EXCLUDED.label_offsets, created_at = clock_timestamp()"
        " WHERE engine_state_snapshots.next_offset <= EXCLUDED.next_offset",
        (group, topic, partition, next_offset, state, feature_code_version,
         orjson.dumps({str(k): v for k, v in label_offsets.items()}).decode()),
    ).rowcount == 1


def load_checkpoint(connection: psycopg.Connection, group: str, topic: str, partition: int) -> Checkpoint:
    """The committed offset and the latest snapshot of one partition (all None when never processed)."""
    committed = connection.execute(
        "SELECT next_offset FROM engine_offsets WHERE consumer_group = %s AND topic = %s AND partition = %s",
        (group, topic, partition),
    ).fetchone()
    snapshot = connection.execute(
        "SELECT next_offset, state, feature_code_version, label_offsets FROM engine_state_snapshots"
        " WHERE consumer_group = %s AND topic = %s AND partition = %s",
        (group, topic, partition),
    ).fetchone()
    return Checkpoint(
        committed_offset=committed[0] if committed else None,
        snapshot_offset=snapshot[0] if snapshot else None,
        state=bytes(snapshot[1]) if snapshot else None,
        feature_code_version=snapshot[2] if snapshot else None,
        label_offsets={int(k): int(v) for k, v in (snapshot[3] if snapshot else {}).items()},
    )
