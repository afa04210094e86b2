"""The system's own history read back from the ``transactions`` and ``labels`` tables.

Scored rows keep every raw event column, so the history can be replayed through the feature core
again (a new feature version can be trained on it). Both tables are read with ``COPY ... TO STDOUT``
as CSV and parsed by Arrow: no Python object per row.
"""

from __future__ import annotations

import io

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql

from fraudstream.history import LABEL_SCHEMA, TRANSACTION_SCHEMA, History

_EPOCH_US = "(EXTRACT(EPOCH FROM {}) * 1000000)::bigint"
_TRANSACTION_SELECT = ", ".join(
    _EPOCH_US.format("event_time") if name == "event_time_us" else name for name in TRANSACTION_SCHEMA.names
)
_LABEL_SELECT = (
    "l.transaction_id, COALESCE(l.account_id, t.account_id), COALESCE(l.merchant_id, t.merchant_id), "
    f"l.is_fraud, l.scenario, {_EPOCH_US.format('l.labeled_at')}"
)
_US = "timestamptz 'epoch' + {} * interval '1 microsecond'"


def _read_csv(payload: bytes, schema: pa.Schema) -> pa.Table:
    if not payload:
        return schema.empty_table()
    options = pa_csv.ConvertOptions(column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False,
                                    true_values=["t"], false_values=["f"])
    table = pa_csv.read_csv(io.BytesIO(payload), pa_csv.ReadOptions(column_names=schema.names), convert_options=options)
    return table.cast(schema)


def _copy_out(connection: psycopg.Connection, query: sql.Composable) -> bytes:
    buffer = bytearray()
    with connection.cursor().copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)) as copy:
        for chunk in copy:
            buffer += chunk
    return bytes(buffer)


def latest_event_us(connection: psycopg.Connection) -> int | None:
    """Event time of the newest stored transaction (µs), None when the table is empty."""
    row = connection.execute(f"SELECT {_EPOCH_US.format('max(event_time)')} FROM transactions").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def read_history(connection: psycopg.Connection, until_us: int, since_us: int | None = None) -> History:
    """Transactions with ``since_us <= event_time <= until_us`` and the labels that arrived in that time
    (``since_us <= labeled_at <= until_us``), sorted as the streams deliver them.

    A label missing its account or merchant (an analyst's verdict may carry only the transaction id)
    takes them from the transaction."""
    since = sql.SQL("'-infinity'::timestamptz") if since_us is None else sql.SQL(_US).format(sql.Literal(since_us))
    until = sql.SQL(_US).format(sql.Literal(until_us))
    transactions = sql.SQL(
        "SELECT {columns} FROM transactions WHERE event_time >= {since} AND event_time <= {until} "
        "ORDER BY event_time, transaction_id"
    ).format(columns=sql.SQL(_TRANSACTION_SELECT), since=since, until=until)
    labels = sql.SQL(
        "SELECT {columns} FROM labels l LEFT JOIN transactions t USING (transaction_id) "
        "WHERE l.labeled_at >= {since} AND l.labeled_at <= {until} ORDER BY l.labeled_at, l.transaction_id"
    ).format(columns=sql.SQL(_LABEL_SELECT), since=since, until=until)
    transaction_table = _read_csv(_copy_out(connection, transactions), TRANSACTION_SCHEMA)
    label_table = _read_csv(_copy_out(connection, labels), LABEL_SCHEMA)
    start_us = since_us if since_us is not None else (
        int(transaction_table.column("event_time_us")[0].as_py()) if transaction_table.num_rows else until_us)
    return History(transaction_table, label_table, 0, start_us, until_us + 1)


_SHADOW_SCHEMA = pa.schema([("transaction_id", pa.string()), ("event_time_us", pa.int64()), ("account_id", pa.string()),
                            ("score", pa.float64()), ("shadow_score", pa.float64()), ("model_version", pa.string())])


def read_shadow_scored(connection: psycopg.Connection, shadow_version: str) -> pa.Table:
    """Rows scored with ``shadow_version`` in shadow: both models' scores of the same transactions."""
    query = sql.SQL(
        "SELECT transaction_id, {time}, account_id, score, shadow_score, model_version FROM transactions "
        "WHERE shadow_model_version = {version} ORDER BY event_time, transaction_id"
    ).format(time=sql.SQL(_EPOCH_US.format("event_time")), version=sql.Literal(shadow_version))
    return _read_csv(_copy_out(connection, query), _SHADOW_SCHEMA)


def read_labels_of(connection: psycopg.Connection, shadow_version: str) -> pa.Table:
    """The labels arrived for the rows scored with ``shadow_version`` in shadow."""
    query = sql.SQL(
        "SELECT {columns} FROM labels l JOIN transactions t USING (transaction_id) "
        "WHERE t.shadow_model_version = {version} ORDER BY l.labeled_at, l.transaction_id"
    ).format(columns=sql.SQL(_LABEL_SELECT), version=sql.Literal(shadow_version))
    return _read_csv(_copy_out(connection, query), LABEL_SCHEMA)
