"""The feature core: stateful features shared by training and both engines. No Kafka, Spark or DB.

::

    state = FeatureState(config)          # or FeatureState.restore(blob) after a restart
    state.apply_labels(labels_frame)      # whenever labels arrive (LABEL_COLUMNS)
    features = state.process(batch)       # TRANSACTION_COLUMNS in; FEATURE_NAMES + is_late out
    blob = state.snapshot()               # at a checkpoint (npz of plain arrays, no pickle)

Both engines keep one FeatureState per Kafka partition of the transactions topic and apply labels
to all of them: the local engine holds its partitions in one MultiPartitionFeatureState (one call per
micro-batch, snapshots per partition as a FeatureState), the Spark job one FeatureState per partition
in its state store. Training and benchmarks replay history through the same split::

    features = replay_partitioned(transactions, labels, config, partitions)  # aligned to transactions

Every sum is over integers, so the result does not depend on how events are cut into batches or
which other keys share a state (as long as events arrive within the allowed lateness). Keys idle
past their TTL (FeatureConfig.account_ttl_s / merchant_ttl_s, event time) start fresh on their next
event.
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
