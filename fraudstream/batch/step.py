"""The batch step both engines run: decode -> apply labels -> features -> score -> rows, alerts and dead
letters.

An engine hands ``BatchStep.run`` one poll's records as columns (``Records``), its feature states (as
``FeatureStates``) and the model chosen at this batch boundary (``ModelChoice``); it gets back what its
sink writes (``BatchOutput``). The step imports no Kafka client, Spark or database driver: how records
arrive, how states are checkpointed and how outputs are written is the engine's and the sink's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from fraudstream.batch import rows as build
from fraudstream.batch.rows import DeadLetter
from fraudstream.batch.scoring import Scorer
from fraudstream.events.contract import decode_labels
from fraudstream.features import FeatureRows, FeatureState
from fraudstream.features.columnar import Columns, batch_columns
from fraudstream.features.state import REQUIRED_COLUMNS
from fraudstream.model.drift import DriftWindow


@dataclass(frozen=True)
class Records:
    """One poll's records of one topic as parallel columns, in offset order within each partition."""

    topic: str
    payloads: Sequence[bytes | None]
    partitions: np.ndarray
    offsets: np.ndarray
    #: Kafka timestamps in µs since the epoch (0 or less: the record has none).
    timestamps_us: np.ndarray
    #: The records' keys, read only when a dead letter needs them (most batches have none).
    keys: Callable[[], Sequence[bytes | None]]

    def __len__(self) -> int:
        return len(self.payloads)

    @classmethod
    def empty(cls, topic: str) -> Records:
        return cls(topic, [], np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64), list)


class FeatureStates(Protocol):
    """An engine's feature states for the partitions a batch touches (one FeatureState, or several
    partitions' states sharing stores): how the engine keeps and checkpoints them is its own affair."""

    def apply_labels(self, labels: pd.DataFrame, partitions: np.ndarray, offsets: np.ndarray) -> None:
        """Label feedback; ``partitions``/``offsets`` are each label's place in the labels topic, so a state
        that already holds a label (a restore replaying old labels) can skip it."""

    def process_columns(self, batch: Columns, partitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of valid transactions (``partitions``: each row's transactions partition), updating
        state: the (rows, feature_names) matrix and is_late."""

    @property
    def feature_names(self) -> tuple[str, ...]: ...


class OnePartition:
    """FeatureStates over one partition's FeatureState (the Spark job runs one per task key)."""

    def __init__(self, state: FeatureState) -> None:
        self.state = state

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.state.feature_names

    def apply_labels(self, labels: pd.DataFrame, partitions: np.ndarray, offsets: np.ndarray) -> None:
        self.state.apply_labels(labels)

    def process_columns(self, batch: Columns, partitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.state.process_columns(batch)


@dataclass(frozen=True)
class ModelChoice:
    """The model scoring a batch (picked at its boundary) and the order the database stores its features in;
    ``shadow``: a challenger scored beside it, whose probability is stored but decides and alerts nothing."""

    scorer: Scorer
    feature_columns: Sequence[str]
    shadow: Scorer | None = None
    #: Live feature and score distributions against the model's training (PSI), when the engine exports them.
    drift: DriftWindow | None = None


@dataclass
class BatchOutput:
    """What one batch gives its sink: rows for the table, labels for the labels table, alerts and dead letters."""

    rows: pd.DataFrame
    #: Kafka timestamps (µs) of the rows' records, aligned with ``rows`` (the latency origin).
    produced_at_us: np.ndarray
    labels: pd.DataFrame
    alerts: list[tuple[bytes, bytes]]
    #: Dead letters of transactions and labels (each carries its ``dlq.source``).
    letters: list[DeadLetter]
    #: Transactions dead-lettered (the letters of labels are not counted here).
    rejected: int
    #: Valid records below their partition's committed offset: they moved the state, nothing else.
    replayed: int
    #: Their transaction ids: the sink sends the alerts of their stored rows again (a crash may have come
    #: between a batch's commit and its alerts' delivery).
    replayed_ids: list[str]

    @property
    def is_empty(self) -> bool:
        return self.rows.empty and self.labels.empty and not self.letters


class BatchStep:
    """One engine's batch step; the settings it needs are fixed for the engine's life."""

    def __init__(self, engine: str, future_tolerance_s: float) -> None:
        self.engine = engine
        self.future_tolerance_s = future_tolerance_s
        #: What a batch without labels returns (built once: an empty frame is not free to build).
        self.no_labels = decode_labels([])[0]

    def run(self, transactions: Records, labels: Records, states: FeatureStates, model: ModelChoice, *,
            ingested_at_us: int, committed: np.ndarray | None = None, owns_labels: bool = True) -> BatchOutput:
        """One batch, in data-flow order. ``committed`` (per transaction record, its partition's committed
        offset) marks records below it as a replay after a restore: they update the state and produce
        nothing. ``owns_labels`` False: the labels are applied but stored and dead-lettered elsewhere (the
        Spark job gives every partition state every label; one of them owns the writes)."""
        # Labels first: a label only affects transactions at or after its labeled_at, so applying it before
        # the batch's transactions gives what streaming them in event-time order would.
        label_frame, label_letters = self._labels(labels, states, owns_labels)
        # Decode and validate; a record of a replay is never dead-lettered again.
        received_at_us = build.received_times_us(transactions.timestamps_us, ingested_at_us)
        decoded = build.decode(transactions.payloads, received_at_us, future_tolerance_s=self.future_tolerance_s)
        fresh = (np.ones(len(transactions), dtype=bool) if committed is None
                 else transactions.offsets >= committed)
        rejected = [item for item in decoded.rejected if fresh[item.position]]
        letters = build.dead_letters(transactions.keys(), transactions.payloads, rejected, source="transactions",
                                     topic=transactions.topic, partitions=transactions.partitions.tolist(),
                                     offsets=transactions.offsets.tolist(),
                                     engine=self.engine) if rejected else []
        # Features of every valid record (replays included), each through its partition's state.
        positions = decoded.positions
        partitions = transactions.partitions[positions]
        matrix, late = states.process_columns(batch_columns(decoded.frame, REQUIRED_COLUMNS), partitions)
        features = FeatureRows(matrix, states.feature_names, late)
        new = fresh[positions]
        # Score the new records; their rows and alerts.
        valid = decoded.frame[new].reset_index(drop=True) if not new.all() else decoded.frame.reset_index(drop=True)
        valid["kafka_partition"] = partitions[new].astype(np.int32)
        valid["kafka_offset"] = transactions.offsets[positions][new].astype(np.int64)
        valid["ingested_at_us"] = ingested_at_us
        rows = self._score(valid, features.rows(new), model)
        replayed_ids = [] if new.all() else decoded.frame["transaction_id"].to_numpy()[~new].tolist()
        return BatchOutput(rows, transactions.timestamps_us[positions][new], label_frame,
                           build.alert_messages(rows), letters + label_letters, len(rejected), len(replayed_ids),
                           replayed_ids)

    def _labels(self, labels: Records, states: FeatureStates, owns: bool) -> tuple[pd.DataFrame, list[DeadLetter]]:
        if not len(labels):
            return self.no_labels, []
        frame, rejected = decode_labels(labels.payloads)
        valid = np.setdiff1d(np.arange(len(labels)), [item.position for item in rejected])
        if not frame.empty:
            states.apply_labels(frame, labels.partitions[valid], labels.offsets[valid])
        if not owns:
            return self.no_labels, []
        letters = build.dead_letters(labels.keys(), labels.payloads, rejected, source="labels", topic=labels.topic,
                                     partitions=labels.partitions.tolist(), offsets=labels.offsets.tolist(),
                                     engine=self.engine) if rejected else []
        return frame, letters

    def _score(self, transactions: pd.DataFrame, features: FeatureRows, model: ModelChoice) -> pd.DataFrame:
        if transactions.empty:
            return build.no_rows()
        scorer = model.scorer
        shadow = None if model.shadow is None else (model.shadow.probability_rows(features),
                                                    model.shadow.model_version)
        scores = scorer.score_rows(features)
        if model.drift is not None:
            model.drift.observe(features.columns(scorer.feature_names), scores.probability)
        return build.scored_rows(transactions, features, scores,
                                 model_version=scorer.model_version, engine=self.engine,
                                 scored_at_us=time.time_ns() // 1000, feature_columns=model.feature_columns,
                                 shadow=shadow)
