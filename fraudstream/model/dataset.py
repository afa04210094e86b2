"""Labeled history in, feature matrix out: import (CSV/Parquet or a backfill directory) and replay.

Training replays history through the very FeatureState the engines run, one state per Kafka
partition of the transactions topic (fraudstream.features.replay), applying each label to every
partition state before the chunk in which its labeled_at falls, exactly as a stream receives it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from fraudstream.events.contract import LABEL_COLUMNS, TRANSACTION_COLUMNS, parse_time_us
from fraudstream.features import FeatureConfig, FeatureState, StateStats
from fraudstream.features.replay import REPLAY_CHUNK_EVENTS, Progress, replay_partitioned
from fraudstream.history import read_history
from fraudstream.model.exceptions import ImportFormatError
from fraudstream.timeunits import MICROS_PER_DAY

#: Optional import columns and the value used when a file lacks them (docs/import-format.md).
IMPORT_DEFAULTS: dict[str, object] = {
    "currency": "USD",
    "merchant_category": "unknown",
    "payment_method": "credit_card",
    "channel": "online",
    "country": "ZZ",
    "latitude": 0.0,
    "longitude": 0.0,
    "device_id": "unknown",
}
IMPORT_REQUIRED = ("transaction_id", "timestamp", "account_id", "merchant_id", "amount", "is_fraud")


@dataclass(frozen=True)
class LabeledHistory:
    """Transactions (TRANSACTION_COLUMNS, sorted by event time) and their labels (LABEL_COLUMNS)."""

    transactions: pd.DataFrame
    labels: pd.DataFrame
    #: Per transaction, whether its label is known (fraudstream.model.maturity); None: every label is.
    known: np.ndarray | None = None
    #: End of the window whose labels have matured; the default split is laid back from there.
    #: None: from just after the last transaction.
    matured_until_us: int | None = None
    #: Where the history came from (file, simulation, database and label maturity), for the manifest.
    source: dict[str, object] = field(default_factory=dict)
    #: The event-time window ``[start, end)`` the history covers, when its producer knows it (a simulation
    #: of whole days); None: from its first to just after its last transaction. The split is laid on it.
    span_us: tuple[int, int] | None = None

    def targets(self) -> np.ndarray:
        """is_fraud per transaction (a transaction without a label counts as legitimate)."""
        fraud = self.labels.loc[self.labels["is_fraud"].astype(bool), "transaction_id"]
        return self.transactions["transaction_id"].isin(fraud).to_numpy()

    def known_mask(self) -> np.ndarray:
        """Rows a model may learn from or be evaluated on."""
        return np.ones(len(self.transactions), dtype=bool) if self.known is None else self.known


@dataclass(frozen=True)
class Replay:
    """Features for every transaction plus how fast the core produced them."""

    features: pd.DataFrame
    #: Feature states replayed (one per Kafka partition); the model must be served on as many.
    partitions: int
    seconds: float
    cpu_seconds: float
    stats: StateStats
    #: The feature configuration replayed: a model trained with another one needs its own replay.
    config: FeatureConfig = field(default_factory=FeatureConfig)

    @property
    def events_per_second(self) -> float:
        """Wall-clock rate (depends on what else the machine runs)."""
        return len(self.features) / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_events_per_second(self) -> float:
        """Rate per CPU-second of this process: comparable on a shared machine."""
        return len(self.features) / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


def load_history(path: Path, label_delay_days: float = 7.0, labeled: bool = True) -> LabeledHistory:
    """A history directory (fraudstream.history format) or one CSV/Parquet import file; with
    ``labeled=False`` a file without ``is_fraud`` is read as a history without labels (to score)."""
    path = Path(path)
    if path.is_dir():
        history = read_history(path)
        span = (history.start_us, history.end_us) if history.end_us > history.start_us else None
        return LabeledHistory(history.transactions, history.labels, source={"file": str(path)}, span_us=span)
    return replace(import_labeled(path, label_delay_days, labeled), source={"file": str(path)})


def import_labeled(path: Path, label_delay_days: float = 7.0, labeled: bool = True) -> LabeledHistory:
    """Read a labeled history file in the documented import format (CSV or Parquet)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        raw = pd.read_csv(path, dtype={"transaction_id": str, "account_id": str, "merchant_id": str})
    elif suffix in (".parquet", ".pq"):
        raw = pd.read_parquet(path)
    else:
        raise ImportFormatError(f"{path}: expected a .csv or .parquet file or a backfill directory")
    return labeled_from_frame(raw, label_delay_days, labeled)


def _times_us(column: pd.Series, name: str) -> np.ndarray:
    """ISO-8601 text or integer microseconds since the epoch."""
    if pd.api.types.is_integer_dtype(column):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.dt.tz_localize(None).astype("datetime64[us]").astype(np.int64).to_numpy()
    try:
        return np.fromiter((parse_time_us(str(value).replace(" ", "T")) for value in column), np.int64, len(column))
    except ValueError as error:
        raise ImportFormatError(f"column {name}: {error}") from None


def labeled_from_frame(raw: pd.DataFrame, label_delay_days: float = 7.0, labeled: bool = True) -> LabeledHistory:
    """Validate and convert an import frame; optional columns get IMPORT_DEFAULTS. With ``labeled=False``
    the ``is_fraud`` column may be left out (the history then has no labels)."""
    required = IMPORT_REQUIRED if labeled or "is_fraud" in raw.columns else tuple(
        name for name in IMPORT_REQUIRED if name != "is_fraud")
    missing = [name for name in required if name not in raw.columns]
    if missing:
        raise ImportFormatError(f"missing required columns: {', '.join(missing)} (see docs/import-format.md)")
    if raw["transaction_id"].duplicated().any():
        raise ImportFormatError("transaction_id must be unique")
    amount = pd.to_numeric(raw["amount"], errors="coerce")
    if amount.isna().any() or (amount <= 0).any():
        raise ImportFormatError("amount must be a positive number on every row")
    has_labels = "is_fraud" in required
    is_fraud = raw["is_fraud"].astype(str).str.lower().map({"1": True, "true": True, "0": False, "false": False}) \
        if has_labels else pd.Series(False, index=raw.index)
    if is_fraud.isna().any():
        raise ImportFormatError("is_fraud must be 0/1 or true/false on every row")
    event_time = _times_us(raw["timestamp"], "timestamp")
    frame = pd.DataFrame(
        {
            "transaction_id": raw["transaction_id"].astype(str).to_numpy(dtype=object),
            "event_time_us": event_time,
            "account_id": raw["account_id"].astype(str).to_numpy(dtype=object),
            "amount": amount.to_numpy(dtype=np.float64),
            "merchant_id": raw["merchant_id"].astype(str).to_numpy(dtype=object),
        }
    )
    for name, default in IMPORT_DEFAULTS.items():
        frame[name] = raw[name].fillna(default).to_numpy() if name in raw.columns else default
    transactions = frame[list(TRANSACTION_COLUMNS)].astype(TRANSACTION_COLUMNS)
    if "labeled_at" in raw.columns:
        labeled_at = _times_us(raw["labeled_at"], "labeled_at")
    else:
        labeled_at = event_time + int(label_delay_days * MICROS_PER_DAY)
    labels = pd.DataFrame(
        {
            "transaction_id": transactions["transaction_id"],
            "account_id": transactions["account_id"],
            "merchant_id": transactions["merchant_id"],
            "is_fraud": is_fraud.to_numpy(dtype=bool),
            "scenario": None,
            "labeled_at_us": labeled_at,
        }
    ).astype(LABEL_COLUMNS)
    if not has_labels:
        labels = labels.iloc[:0]
    order = np.lexsort((transactions["transaction_id"].to_numpy(dtype=str), event_time))
    return LabeledHistory(
        transactions.iloc[order].reset_index(drop=True),
        labels.sort_values("labeled_at_us", kind="stable").reset_index(drop=True),
    )


def replay(
    history: LabeledHistory,
    partitions: int,
    config: FeatureConfig | None = None,
    chunk_events: int = REPLAY_CHUNK_EVENTS,
    progress: Progress | None = None,
) -> Replay:
    """Features for every transaction of the history, as engines with ``partitions`` partition
    states would have computed them."""
    states = [FeatureState(config) for _ in range(partitions)]
    began, began_cpu = time.perf_counter(), time.process_time()
    features = replay_partitioned(
        history.transactions, history.labels, config, partitions,
        states=states, chunk_events=chunk_events, progress=progress,
    )
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    return Replay(features, partitions, seconds, cpu_seconds, StateStats.total(state.stats() for state in states),
                  config or FeatureConfig())
