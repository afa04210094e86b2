"""The feature states of several Kafka partitions, computed as one: one feature call per micro-batch.

Features are per partition of the transactions topic (a merchant's counts are those of its partition,
as in training), and the local engine owns a few partitions. A feature call has ~2 ms of fixed NumPy
cost whatever its size, so one call per owned partition per micro-batch was a third of the engine's
CPU at 5,000 events/s. Here the owned partitions share one pair of keyed stores, keys qualified by
partition (``"3:acct-17"``), and a batch of every partition is one call. Each key's features depend
only on its own rows, so they are those of separate states, bit for bit. A partition still comes from,
and goes to, a FeatureState snapshot of the usual format, with its own event-time clock and counters;
it is swept by that clock, so eviction keeps the TTL of a separate state.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from fraudstream.features import columnar as col
from fraudstream.features.account import AccountFeatures
from fraudstream.features.config import FeatureConfig, feature_names
from fraudstream.features.merchant import MerchantFeatures
from fraudstream.features.state import EventClock, FeatureState, encode_snapshot, feature_matrix
from fraudstream.features.store import KeyedStore

SEPARATOR = ":"


def key_prefix(partition: int) -> str:
    """What a partition's keys start with in the shared stores (partition numbers hold no separator)."""
    return f"{partition}{SEPARATOR}"


class PartitionedFeatureState:
    """Owned partitions' feature states in shared stores; add a partition's state when it is assigned,
    take its snapshot while owned, remove it when revoked."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.feature_names = feature_names(config)
        self.accounts = AccountFeatures(config)
        self.merchants = MerchantFeatures(config)
        self.clocks: dict[int, EventClock] = {}

    def add(self, partition: int, state: FeatureState) -> None:
        """Take over a partition's state (restored from its snapshot, or fresh), replacing any held."""
        if state.config != self.config:
            raise ValueError("a partition state built with another feature configuration cannot be added")
        self.remove(partition)
        prefix = key_prefix(partition)
        for name, shared, own in (("account", self.accounts.store, state.accounts.store),
                                  ("merchant", self.merchants.store, state.merchants.store)):
            shared.load_arrays(name, own.to_arrays(name), key_prefix=prefix)
        self.clocks[partition] = replace(state.clock)

    def remove(self, partition: int) -> None:
        """Forget a partition (revoked: its new owner restores it from its snapshot)."""
        if self.clocks.pop(partition, None) is None:
            return
        prefix = key_prefix(partition)
        for store in (self.accounts.store, self.merchants.store):
            store.evict(_slots_of(store, prefix))

    def snapshot(self, partition: int) -> bytes:
        """The partition's state as FeatureState.snapshot() of a separate state would write it."""
        prefix = key_prefix(partition)
        arrays = {}
        for name, store in (("account", self.accounts.store), ("merchant", self.merchants.store)):
            arrays.update(store.to_arrays(name, _slots_of(store, prefix), key_start=len(prefix)))
        return encode_snapshot(self.config, self.clocks[partition], arrays)

    def apply_labels(self, partition: int, labels: pd.DataFrame) -> None:
        """Label feedback into one partition's merchants (LabelFeed tracks which labels each has seen)."""
        labels = labels[labels["merchant_id"].notna()]
        if labels.empty:
            return
        qualified = labels.assign(merchant_id=key_prefix(partition) + labels["merchant_id"].to_numpy(dtype=object))
        self.merchants.apply_labels(qualified)

    def process_columns(self, batch: col.Columns, partitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FeatureState.process_columns over a batch of several owned partitions (``partitions``: each
        row's), each row through its own partition's state; the rows keep their order."""
        if len(partitions) == 0:
            return np.zeros((0, len(self.feature_names))), np.zeros(0, dtype=bool)
        present = np.unique(partitions).tolist()
        unknown = set(present) - self.clocks.keys()
        if unknown:
            raise KeyError(f"partitions {sorted(unknown)} were not added: add() each partition's state first")
        prefixes = np.array([key_prefix(partition) for partition in present], dtype=object)[
            np.searchsorted(present, partitions)]
        # Account novelty hashes the raw merchant id, so only the keys are qualified.
        account_batch = {**batch, "account_id": prefixes + batch["account_id"]}
        merchant_batch = {"event_time_us": batch["event_time_us"], "merchant_id": prefixes + batch["merchant_id"]}
        matrix, late = feature_matrix(self.accounts, self.merchants, account_batch, merchant_batch)
        for partition in present:
            rows = partitions == partition
            clock = self.clocks[partition]
            if clock.advance(batch["event_time_us"][rows], late[rows]):
                prefix = key_prefix(partition)
                clock.sweep(self.config, self.accounts.store, self.merchants.store,
                            (_slots_of(self.accounts.store, prefix), _slots_of(self.merchants.store, prefix)))
        return matrix, late


def _slots_of(store: KeyedStore, prefix: str) -> np.ndarray:
    """The live slots of one partition's keys: a scan of the key index, paid per snapshot, sweep or
    revocation (seconds apart), not per batch."""
    return np.fromiter((slot for key, slot in store.index.items() if key.startswith(prefix)), dtype=np.int64)
