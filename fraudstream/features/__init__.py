"""The feature core: stateful features shared by training and both engines. No Kafka, Spark or DB.

Local engine / training replay::

    state = FeatureState(config)          # or FeatureState.restore(blob) after a restart
    state.apply_labels(labels_frame)      # whenever labels arrive (LABEL_COLUMNS)
    features = state.process(batch)       # TRANSACTION_COLUMNS in; FEATURE_NAMES + is_late out
    blob = state.snapshot()               # at a checkpoint (npz of plain arrays, no pickle)

Both engines keep one FeatureState per Kafka partition of the transactions topic and apply labels
to all of them (the local engine holds its partitions in one MultiPartitionFeatureState, so a micro-batch
is one call, and snapshots each partition as a FeatureState); training and benchmarks replay history
the same way::

    features = replay_partitioned(transactions, labels, config, partitions)  # aligned to transactions

Spark engine (per-key alternative): the same code, split by key. Account features run inside
``applyInPandasWithState`` grouped by ``account_id`` with a single BinaryType state field::

    frame, blob = AccountFeatures.step(config, account_id, state_blob_or_None, events)
    # frame: ACCOUNT_FEATURE_NAMES + is_late, same index/order as events

and merchant features in a second stateful operator grouped by ``merchant_id`` over the
transactions and the labels of that merchant::

    frame, blob = MerchantFeatures.step(config, merchant_id, state_blob_or_None, events, labels)
    # frame: MERCHANT_FEATURE_NAMES, same index/order as events; labels are applied first

Join both on ``transaction_id`` and order columns as FEATURE_NAMES. Every sum is over integers, so
the result does not depend on how events are grouped into batches: a mixed batch, one account at a
time, or one event at a time give bit-identical features (as long as events arrive within the
allowed lateness). Keys idle past their TTL (FeatureConfig.account_ttl_s / merchant_ttl_s, event
time) start fresh on their next event; Spark can drop such state with an event-time timeout.
"""

from __future__ import annotations

from fraudstream.features.account import AccountFeatures
from fraudstream.features.config import (
    CATEGORICAL_FEATURES,
    FEATURE_CODE_VERSION,
    FEATURE_NAMES,
    FeatureConfig,
    account_feature_names,
    feature_names,
    merchant_feature_names,
)
from fraudstream.features.exceptions import FeatureError, MissingColumnsError, StateFormatError
from fraudstream.features.merchant import MerchantFeatures
from fraudstream.features.replay import replay_partitioned
from fraudstream.features.state import FeatureRows, FeatureState, StateStats

ACCOUNT_FEATURE_NAMES = account_feature_names(FeatureConfig())
MERCHANT_FEATURE_NAMES = merchant_feature_names(FeatureConfig())

__all__ = [
    "ACCOUNT_FEATURE_NAMES",
    "CATEGORICAL_FEATURES",
    "FEATURE_CODE_VERSION",
    "FEATURE_NAMES",
    "MERCHANT_FEATURE_NAMES",
    "AccountFeatures",
    "FeatureConfig",
    "FeatureError",
    "FeatureRows",
    "FeatureState",
    "MerchantFeatures",
    "MissingColumnsError",
    "StateFormatError",
    "StateStats",
    "feature_names",
    "replay_partitioned",
]
