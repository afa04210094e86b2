"""The feature states of several Kafka partitions, computed as one: one feature call per micro-batch.

Features are per partition of the transactions topic (a merchant's counts are those of its partition, as
in training), and the local engine owns a few partitions. A feature call has a fixed NumPy cost whatever
its size, so one call per owned partition per micro-batch would multiply it. Here the owned partitions
share one pair of keyed stores, keys qualified by partition (``"3:acct-17"``), and a batch of every
partition is one call. Each key's features depend only on its own rows, so they are those of separate
states, bit for bit. A partition still comes from, and goes to, a FeatureState snapshot of the usual
format, with its own event-time clock and counters; it is swept by that clock, so eviction keeps the TTL
of a separate state.
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


class _Owners:
    """The partition of every slot of a shared store (-1: none), kept as keys come and go, so a partition's
    slots are one vectorized comparison: a scan of the key index per sweep cost more than the features
    themselves when event time runs fast (the demo and the benchmarks sweep every few batches)."""

    def __init__(self, store: KeyedStore) -> None:
        self.store = store
        self.partition = np.zeros(0, dtype=np.int32)

    def claim(self, keys: np.ndarray, partition: np.ndarray | int) -> None:
        """Note the partition of these (qualified) keys, after the call that may have created them."""
        index = self.store.index
        slots = np.fromiter(map(index.__getitem__, keys), dtype=np.int64, count=len(keys))
        if self.partition.size < len(self.store.keys):
            grown = np.full(max(len(self.store.keys), 2 * self.partition.size), -1, dtype=np.int32)
            grown[: self.partition.size] = self.partition
            self.partition = grown
        self.partition[slots] = partition

    def release(self, slots: np.ndarray) -> None:
        self.partition[slots] = -1

    def slots_of(self, partition: int) -> np.ndarray:
        return np.flatnonzero(self.partition == partition)


class MultiPartitionFeatureState:
    """Owned partitions' feature states in shared stores; add a partition's state when it is assigned,
    take its snapshot while owned, remove it when revoked."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.feature_names = feature_names(config)
        self.accounts = AccountFeatures(config)
        self.merchants = MerchantFeatures(config)
        self.clocks: dict[int, EventClock] = {}
        self._owners = {"account": _Owners(self.accounts.store), "merchant": _Owners(self.merchants.store)}

    def add(self, partition: int, state: FeatureState) -> None:
        """Take over a partition's state (restored from its snapshot, or fresh), replacing any held."""
        if state.config != self.config:
            raise ValueError("a partition state built with another feature configuration cannot be added")
        self.remove(partition)
        prefix = key_prefix(partition)
        for name, own in (("account", state.accounts.store), ("merchant", state.merchants.store)):
            arrays = own.to_arrays(name)
            self._owners[name].store.load_arrays(name, arrays, key_prefix=prefix)
            self._owners[name].claim(prefix + arrays[f"{name}.keys"].astype(object), partition)
        self.clocks[partition] = replace(state.clock)

    def remove(self, partition: int) -> None:
        """Forget a partition (revoked: its new owner restores it from its snapshot)."""
        if self.clocks.pop(partition, None) is None:
            return
        for owners in self._owners.values():
            slots = owners.slots_of(partition)
            owners.store.evict(slots)
            owners.release(slots)

    def snapshot(self, partition: int) -> bytes:
        """The partition's state as FeatureState.snapshot() of a separate state would write it."""
        start = len(key_prefix(partition))
        arrays = {}
        for name, owners in self._owners.items():
            arrays.update(owners.store.to_arrays(name, owners.slots_of(partition), key_start=start))
        return encode_snapshot(self.config, self.clocks[partition], arrays)

    def apply_labels(self, partition: int, labels: pd.DataFrame) -> None:
        """Label feedback into one partition's merchants (LabelFeed tracks which labels each has seen)."""
        labels = labels[labels["merchant_id"].notna()]
        if labels.empty:
            return
        merchants = key_prefix(partition) + labels["merchant_id"].to_numpy(dtype=object)
        self.merchants.apply_labels(labels.assign(merchant_id=merchants))
        self._owners["merchant"].claim(merchants, partition)

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
        accounts, merchants = prefixes + batch["account_id"], prefixes + batch["merchant_id"]
        matrix, late = feature_matrix(self.accounts, self.merchants, {**batch, "account_id": accounts},
                                      {"event_time_us": batch["event_time_us"], "merchant_id": merchants})
        self._owners["account"].claim(accounts, partitions)
        self._owners["merchant"].claim(merchants, partitions)
        for partition in present:
            rows = partitions == partition
            clock = self.clocks[partition]
            if clock.advance(batch["event_time_us"][rows], late[rows]):
                owners = self._owners["account"], self._owners["merchant"]
                evicted = clock.sweep(self.config, self.accounts.store, self.merchants.store,
                                      (owners[0].slots_of(partition), owners[1].slots_of(partition)))
                for owner, slots in zip(owners, evicted, strict=True):
                    owner.release(slots)
        return matrix, late
