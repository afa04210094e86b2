"""The Spark engine's one Python step: a Kafka partition's FeatureState, scoring and writes inside
transformWithStateInPandas.

Why grouped by Kafka partition and not by account: the feature state is scoped per partition of the
transactions topic in both engines (merchant features are computed over the partition's stream, labels
reach every partition state), so running the whole per-partition ``FeatureState`` gives the local
engine's features by construction. It is also much cheaper here: Spark's Python state API costs
milliseconds per key per batch (Python <-> JVM state calls), and a batch touches thousands of
accounts but only a handful of partitions. The state value is the core's own snapshot (an npz of plain
arrays, no pickle), restored and re-taken once per key per batch.

Grouping keys are chosen so that Spark's hash partitioning sends each Kafka partition to its own
shuffle partition (``state_keys``): with the partition number itself as key, Murmur3 put three of six
partitions in one task and left two tasks empty, so one core did half of every batch.

Per key and batch, ``handleInputRows`` does (``fraudstream.engines.spark_sink.process`` holds 2-4):

1. The partition's FeatureState: the one this Python worker kept from the key's previous batch when
   the state store's token says it is that very state (skips a restore per key and batch),
   else restored from the snapshot in the state store (empty on the first batch).
2. The batch step both engines share: the batch's labels (every key gets every label; labels are
   global) before its transactions; decode and validate the transactions in offset order; features;
   score with the model version the driver chose at this batch boundary; rows, alerts, dead letters.
3. Produce the dead letters and wait for every delivery (only the key ``label owner`` dead-letters
   and stores the labels).
4. Upsert rows and labels in one database transaction (ON CONFLICT DO NOTHING); then produce the
   alerts of the rows as stored and wait for every delivery.
5. Store the new snapshot and a new token in the state store, keep the state in this worker, emit
   one row of counts.

Spark commits the state and the batch's offsets only after every task returned and the driver's
foreachBatch finished; a task or driver that dies replays the batch from the previous state version,
and the idempotent upsert keeps the rows already written. Scoring here instead of in a second Python
operator spares a JVM <-> Python round trip of every wide feature row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle, TimerValues
from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType

from fraudstream.batch import OnePartition, Records
from fraudstream.config import Settings
from fraudstream.engines import spark_sink
from fraudstream.engines.restore import restore_state
from fraudstream.features import FeatureConfig, FeatureState

#: Grouping key (LongType): stands for one transactions partition (labels: every partition's key).
KEY_COLUMN = "state_key"
#: The Kafka record's timestamp in µs since the epoch (LongType): when the event was received.
TIMESTAMP_COLUMN = "timestamp_us"
STATE_SCHEMA = StructType([StructField("snapshot", BinaryType(), False)])
#: A random id written with every snapshot: names the exact state a worker may still hold in memory.
TOKEN_SCHEMA = StructType([StructField("token", StringType(), False)])
#: The counts each key emits per batch (summed by the driver).
COUNTS = ("scored", "written", "dead_lettered", "alerted", "labels")
OUTPUT_SCHEMA = StructType([StructField(name, LongType(), False) for name in COUNTS])

#: Per Python worker: key -> (token, the FeatureState stored under that token). An entry is taken out
#: while its batch runs and put back only after the state store holds its snapshot, so a batch that
#: fails half-way leaves nothing behind; a token that differs from the store's (a failed or replayed
#: batch, another worker ran the key) means restore from the snapshot.
_kept: dict[int, tuple[str, FeatureState]] = {}

_MASK = 0xFFFFFFFF
#: Spark's hash partitioning: Murmur3Hash(keys, seed 42), pmod the number of shuffle partitions.
_SPARK_HASH_SEED = 42


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def _mix_k1(k1: int) -> int:
    return (_rotl((k1 * 0xCC9E2D51) & _MASK, 15) * 0x1B873593) & _MASK


def _mix_h1(h1: int, k1: int) -> int:
    return (_rotl(h1 ^ k1, 13) * 5 + 0xE6546B64) & _MASK


def spark_hash_long(value: int, seed: int = _SPARK_HASH_SEED) -> int:
    """Spark's ``hash(CAST(value AS BIGINT))`` (Murmur3_x86_32.hashLong), as a signed 32-bit int."""
    unsigned = value & 0xFFFFFFFFFFFFFFFF
    h1 = _mix_h1(seed & _MASK, _mix_k1(unsigned & _MASK))
    h1 = _mix_h1(h1, _mix_k1(unsigned >> 32)) ^ 8
    h1 = ((h1 ^ (h1 >> 16)) * 0x85EBCA6B) & _MASK
    h1 = ((h1 ^ (h1 >> 13)) * 0xC2B2AE35) & _MASK
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 >= 1 << 31 else h1


def state_keys(partitions: int, shuffle_partitions: int) -> list[int]:
    """For each transactions partition p, the smallest key >= 0 that Spark's hash partitioning sends to
    shuffle partition ``p % shuffle_partitions``: the partitions spread evenly over the stateful tasks."""
    keys: list[int] = []
    for partition in range(partitions):
        candidate = 0
        while spark_hash_long(candidate) % shuffle_partitions != partition % shuffle_partitions or candidate in keys:
            candidate += 1
        keys.append(candidate)
    return keys


class PartitionStepProcessor(StatefulProcessor):
    """transformWithStateInPandas processor: state in, features, scores and writes, state and counts out."""

    def __init__(self, config: FeatureConfig, settings: Settings, label_owner: int) -> None:
        self.config = config
        self.settings = settings
        #: The key that stores the labels and dead-letters the bad ones (each label reaches every key).
        self.label_owner = label_owner

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.state = handle.getValueState("features", STATE_SCHEMA)
        self.token = handle.getValueState("features_token", TOKEN_SCHEMA)

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame],
                        timerValues: TimerValues) -> Iterator[pd.DataFrame]:
        """Labels first, then the partition's transactions in offset order (event order per account)."""
        records = pd.concat(list(rows), ignore_index=True)
        batch = spark_sink.BatchContext.current()
        features = self._restore(key[0])
        is_transaction = (records["topic"] == self.settings.transactions_topic).to_numpy()
        transactions = records[is_transaction].sort_values("offset", kind="stable")
        counts = spark_sink.process(self.settings, batch, _records(self.settings.transactions_topic, transactions),
                                    _records(self.settings.labels_topic, records[~is_transaction]),
                                    OnePartition(features), owns_labels=key[0] == self.label_owner)
        token = uuid.uuid4().hex
        self.state.update((features.snapshot(),))
        self.token.update((token,))
        _kept[key[0]] = (token, features)
        yield pd.DataFrame({name: [counts[name]] for name in COUNTS})

    def _restore(self, key: int) -> FeatureState:
        kept = _kept.pop(key, None)
        if not self.state.exists():
            return FeatureState(self.config)
        if kept is not None and self.token.exists() and self.token.get()[0] == kept[0] \
                and kept[1].config == self.config:
            return kept[1]
        return restore_state(self.state.get()[0], self.config,
                             "start the job with a new checkpoint location (--checkpoint or --app-name)")


def _records(topic: str, records: pd.DataFrame) -> Records:
    """One topic's rows of the Kafka source as the batch step's columns."""
    return Records(topic, records["value"].tolist(), records["partition"].to_numpy(dtype=np.int32),
                   records["offset"].to_numpy(dtype=np.int64), records[TIMESTAMP_COLUMN].to_numpy(dtype=np.int64),
                   keys=lambda: records["key"].tolist())
