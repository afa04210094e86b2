"""The history file format: a labeled history as a directory of Parquet files.

``transactions.parquet`` (the transaction contract's columns, sorted by event time, then id),
``labels.parquet`` (the label contract's columns, sorted by ``labeled_at_us``, then id) and
``summary.json`` (counts and the time span). The simulator writes it, the model build, ``score`` and
the benchmarks read it; this module is the one place that knows the layout, so neither side imports
the other.

Writes are reproducible: fixed writer options and no wall clock in the content, so the same history
gives byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fraudstream.events.contract import LABEL_COLUMNS, TRANSACTION_COLUMNS
from fraudstream.timeunits import MICROS_PER_SECOND

TRANSACTIONS_FILE = "transactions.parquet"
LABELS_FILE = "labels.parquet"
SUMMARY_FILE = "summary.json"
#: Fixed writer options: reproducible bytes. Without the stored Arrow schema, readers see plain strings
#: (in-memory dictionary columns are only a speed-up).
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "row_group_size": 1 << 20,
                   "use_dictionary": True, "write_statistics": True, "version": "2.6", "store_schema": False}

TRANSACTION_SCHEMA = pa.schema([
    (name, pa.int64() if kind == "int64" else pa.float64() if kind == "float64" else pa.string())
    for name, kind in TRANSACTION_COLUMNS.items()
])
LABEL_SCHEMA = pa.schema([
    (name, {"int64": pa.int64(), "bool": pa.bool_()}.get(kind, pa.string())) for name, kind in LABEL_COLUMNS.items()
])


def table_to_frame(table: pa.Table, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A frame with exactly these dtypes (pandas would otherwise turn strings into its ``str`` dtype)."""
    def values(column: pa.ChunkedArray) -> np.ndarray:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        return column.to_numpy(zero_copy_only=False)

    return pd.DataFrame({name: pd.Series(values(table.column(name)), dtype=dtype, copy=False)
                         for name, dtype in dtypes.items()}, copy=False)


def to_microseconds(moment: datetime) -> int:
    """Microseconds since the epoch (the contract's time unit)."""
    return int(moment.timestamp() * MICROS_PER_SECOND)


def _iso(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / MICROS_PER_SECOND, UTC).isoformat()


class History:
    """Transactions sorted by (event_time_us, transaction_id) and labels sorted by (labeled_at_us,
    transaction_id), as the streams would deliver them, over ``[start_us, end_us)``.

    Held as Arrow tables (what Parquet reads and writes without conversion); the pandas frames of
    the contract are built on first access."""

    def __init__(self, transactions: pa.Table, labels: pa.Table, seed: int, start_us: int, end_us: int) -> None:
        self.transactions_table = transactions
        self.labels_table = labels
        self.seed = seed
        self.start_us = start_us
        self.end_us = end_us

    @cached_property
    def transactions(self) -> pd.DataFrame:
        return table_to_frame(self.transactions_table, TRANSACTION_COLUMNS)

    @cached_property
    def labels(self) -> pd.DataFrame:
        return table_to_frame(self.labels_table, LABEL_COLUMNS)

    def fraud_by_scenario(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """Fraud labels per scenario: for each of ``names`` (0 when absent), else for those present."""
        counts = pc.value_counts(self.labels_table.column("scenario").drop_null()).to_pylist()
        found = {entry["values"]: int(entry["counts"]) for entry in counts}
        return {name: found.get(name, 0) for name in (sorted(found) if names is None else names)}


def history_summary(history: History, scenario_names: Iterable[str] | None = None) -> dict[str, object]:
    """Counts that describe a history (no timings, so it is as reproducible as the data)."""
    events = history.transactions_table.num_rows
    fraud = history.fraud_by_scenario(scenario_names)
    return {
        "seed": history.seed,
        "start": _iso(history.start_us),
        "end": _iso(history.end_us),
        "events": events,
        "accounts_active": len(pc.unique(history.transactions_table.column("account_id"))),
        "fraud_events": sum(fraud.values()),
        "fraud_share": sum(fraud.values()) / events if events else 0.0,
        "fraud_by_scenario": fraud,
    }


def write_history(history: History, out_dir: Path | str,
                  scenario_names: Iterable[str] | None = None) -> dict[str, object]:
    """Write the three files of the format into ``out_dir``; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:  # Arrow writes without the GIL: both files at once
        written = [pool.submit(pq.write_table, table, out / name, **PARQUET_OPTIONS)
                   for name, table in ((TRANSACTIONS_FILE, history.transactions_table),
                                       (LABELS_FILE, history.labels_table))]
        for future in written:
            future.result()
    summary = history_summary(history, scenario_names)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def is_history_dir(path: Path | str) -> bool:
    """Whether ``path`` is a directory in this format (what ``read_history`` accepts)."""
    folder = Path(path)
    return folder.is_dir() and (folder / TRANSACTIONS_FILE).is_file()


def read_history(path: Path | str) -> History:
    """A history written by ``write_history``, with the contract's column dtypes.

    A directory without ``labels.parquet`` reads as a history whose labels have not arrived yet."""
    folder = Path(path)
    if not is_history_dir(folder):
        raise FileNotFoundError(f"{folder}: not a history directory (expected {TRANSACTIONS_FILE} in it)")
    transactions = pq.read_table(folder / TRANSACTIONS_FILE, schema=TRANSACTION_SCHEMA)
    labels_file = folder / LABELS_FILE
    labels = pq.read_table(labels_file, schema=LABEL_SCHEMA) if labels_file.exists() else LABEL_SCHEMA.empty_table()
    summary_file = folder / SUMMARY_FILE
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    start_us = to_microseconds(datetime.fromisoformat(summary["start"])) if "start" in summary else 0
    end_us = to_microseconds(datetime.fromisoformat(summary["end"])) if "end" in summary else 0
    return History(transactions, labels, int(summary.get("seed", 0)), start_us, end_us)
