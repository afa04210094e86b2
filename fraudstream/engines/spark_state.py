"""The Spark engine's stateful step: one FeatureState per Kafka partition inside transformWithStateInPandas.

Why grouped by Kafka partition and not by account: the feature state is scoped per partition of the
transactions topic in both engines (merchant features are computed over the partition's stream, labels
reach every partition state), so running the whole per-partition ``FeatureState`` gives the local
engine's features by construction. It is also much cheaper here: Spark's Python state API costs
milliseconds per key per batch (Python <-> JVM state calls), and a batch touches thousands of
accounts but only a handful of partitions. The state value is the core's own snapshot (an npz of plain
arrays, no pickle), restored and re-taken once per key per batch.

Labels are fanned out to every partition key before the grouping and applied before that batch's
transactions, as the local engine does; only the key ``LABEL_OWNER`` emits them (and their dead
letters) downstream, so that each label is stored once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle, TimerValues
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from fraudstream import pipeline
from fraudstream.events import TRANSACTION_COLUMNS, decode_labels
from fraudstream.features import FeatureConfig, FeatureState, feature_names

#: Grouping key: the transactions partition a record belongs to (labels: every partition).
KEY_COLUMN = "state_partition"
#: The key whose output carries the labels and the label dead letters.
LABEL_OWNER = 0

#: What each output row is.
TRANSACTION, REJECTED, LABEL = "transaction", "rejected", "label"

_SPARK_TYPES = {"object": StringType(), "int64": LongType(), "float64": DoubleType()}
SOURCE_FIELDS = [
    StructField("kind", StringType(), False),
    StructField("topic", StringType(), False),
    StructField("kafka_partition", IntegerType(), False),
    StructField("kafka_offset", LongType(), False),
    StructField("key", BinaryType(), True),
    StructField("value", BinaryType(), True),  # original bytes: only for dead letters and labels
    StructField("reason", StringType(), True),
]
#: Feature columns are prefixed in the output: a feature may share a transaction column's name ("amount").
FEATURE_PREFIX = "feature_"
STATE_SCHEMA = StructType([StructField("snapshot", BinaryType(), False)])


def output_schema(config: FeatureConfig) -> StructType:
    """Source bookkeeping, the decoded transaction, its features: one row per input record."""
    return StructType([
        *SOURCE_FIELDS,
        *(StructField(name, _SPARK_TYPES[dtype], True) for name, dtype in TRANSACTION_COLUMNS.items()),
        *(StructField(FEATURE_PREFIX + name, DoubleType(), True) for name in feature_names(config)),
        StructField("is_late", BooleanType(), True),
    ])


class PartitionFeatures(StatefulProcessor):
    """transformWithStateInPandas processor: the partition's FeatureState in, features out, state back."""

    def __init__(self, config: FeatureConfig, transactions_topic: str) -> None:
        self.config = config
        self.transactions_topic = transactions_topic
        self.columns = [field.name for field in output_schema(config).fields]

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.state = handle.getValueState("features", STATE_SCHEMA)

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame],
                        timerValues: TimerValues) -> Iterator[pd.DataFrame]:
        """Labels first, then the partition's transactions in offset order (event order per account)."""
        records = pd.concat(list(rows), ignore_index=True)
        features = self._restore()
        is_transaction = (records["topic"] == self.transactions_topic).to_numpy()
        outputs = [self._labels(records[~is_transaction], features, owner=key[0] == LABEL_OWNER)]
        transactions = records[is_transaction].sort_values("offset", kind="stable").reset_index(drop=True)
        outputs.append(self._transactions(transactions, features))
        self.state.update((features.snapshot(),))
        yield _object_strings(pd.concat(outputs, ignore_index=True)[self.columns])

    def _restore(self) -> FeatureState:
        if not self.state.exists():
            return FeatureState(self.config)
        features = FeatureState.restore(self.state.get()[0])
        if features.config != self.config:
            raise ValueError("the checkpoint's feature state was built with another feature configuration than "
                             "the model's: start the job with a new checkpoint location")
        return features

    def _labels(self, records: pd.DataFrame, features: FeatureState, owner: bool) -> pd.DataFrame:
        payloads = records["value"].tolist()
        labels, rejected = decode_labels(payloads)
        if not labels.empty:
            features.apply_labels(labels)
        if not owner or records.empty:
            return _source(records.iloc[:0], TRANSACTION)
        out = _source(records, LABEL)
        for item in rejected:
            out.loc[item.position, ["kind", "reason"]] = [REJECTED, item.reason]
        return out

    def _transactions(self, records: pd.DataFrame, features: FeatureState) -> pd.DataFrame:
        decoded = pipeline.decode(records["value"].tolist())
        out = _source(records, TRANSACTION)
        for item in decoded.rejected:
            out.loc[item.position, ["kind", "reason"]] = [REJECTED, item.reason]
        valid = out.loc[decoded.positions].reset_index(drop=True)
        valid["value"] = None
        computed = features.process(decoded.frame).reset_index(drop=True)
        names = feature_names(self.config)
        computed = computed.astype(dict.fromkeys(names, np.float64)).rename(
            columns={name: FEATURE_PREFIX + name for name in names})
        valid = pd.concat([valid, decoded.frame.reset_index(drop=True), computed], axis=1)
        return pd.concat([valid, out[out["kind"] == REJECTED]], ignore_index=True)


def features_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The core's feature frame (FEATURE_NAMES + is_late) back from output rows."""
    columns = [name for name in frame.columns if name.startswith(FEATURE_PREFIX)]
    features = frame[columns].rename(columns=lambda name: name[len(FEATURE_PREFIX):])
    features["is_late"] = frame["is_late"].astype(bool).to_numpy()
    return features.reset_index(drop=True)


def _object_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """pyspark 4.2 cannot send pandas 3's Arrow-backed string columns back to the JVM: use object columns."""
    strings = [name for name in frame.columns if isinstance(frame[name].dtype, pd.StringDtype)]
    return frame.astype(dict.fromkeys(strings, object)) if strings else frame


def _source(records: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The bookkeeping columns of the output for these input records."""
    size = len(records)
    return pd.DataFrame({
        "kind": np.full(size, kind, dtype=object),
        "topic": records["topic"].to_numpy(dtype=object),
        "kafka_partition": records["partition"].to_numpy(dtype=np.int32),
        "kafka_offset": records["offset"].to_numpy(dtype=np.int64),
        "key": records["key"].to_numpy(dtype=object),
        "value": records["value"].to_numpy(dtype=object),
        "reason": np.full(size, None, dtype=object),
    })
