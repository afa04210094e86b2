"""Replaying history exactly as the engines see it: one FeatureState per Kafka partition.

Both engines keep one FeatureState per partition of ``raw_transactions`` (accounts are keyed to
partitions with ``events.contract.partition_for``) and apply every label to every partition
state. Account features do not care, but merchant features only see the partition's share of a
merchant's traffic. Training, dataset building and benchmarks replay through this one function so
the features a model learns from are those it is served with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from fraudstream.events.contract import partition_for
from fraudstream.features.config import FeatureConfig
from fraudstream.features.state import FeatureState

#: Bigger chunks amortize the per-call overhead; 200k events is about 11 simulated days.
REPLAY_CHUNK_EVENTS = 200_000

Progress = Callable[[int, int], None]


def partitions_of(account_ids: np.ndarray, partitions: int) -> np.ndarray:
    """Kafka partition of every row's account (partition_for, computed once per distinct account)."""
    codes, accounts = pd.factorize(np.asarray(account_ids, dtype=object))
    per_account = np.fromiter((partition_for(str(a), partitions) for a in accounts), np.int64, len(accounts))
    return per_account[codes]


def replay_partitioned(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    config: FeatureConfig | None,
    partitions: int,
    *,
    states: Sequence[FeatureState] | None = None,
    chunk_events: int = REPLAY_CHUNK_EVENTS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Features (FEATURE_NAMES + is_late) for every transaction, same index and order as the input.

    ``transactions`` in stream order (event time); each chunk is split by partition and fed to that
    partition's state. Labels are applied to every state before the first chunk reaching their
    labeled_at (states hold early labels until event time passes them, so this only bounds memory).
    Pass ``states`` (one per partition) to continue from them or to inspect them afterwards.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if states is None:
        states = [FeatureState(config) for _ in range(partitions)]
    if len(states) != partitions:
        raise ValueError(f"{len(states)} states given for {partitions} partitions")
    names = [*states[0].feature_names, "is_late"]
    total = len(transactions)
    columns = {name: np.empty(total, dtype=bool if name == "is_late" else np.float64) for name in names}
    partition = partitions_of(transactions["account_id"].to_numpy(dtype=object), partitions)
    labels = labels.sort_values("labeled_at_us", kind="stable")
    label_times = labels["labeled_at_us"].to_numpy(dtype=np.int64)
    event_times = transactions["event_time_us"].to_numpy(dtype=np.int64)
    applied = 0
    for start in range(0, total, chunk_events):
        stop = min(start + chunk_events, total)
        due = int(np.searchsorted(label_times, event_times[start:stop].max(), side="right"))
        if due > applied:
            for state in states:
                state.apply_labels(labels.iloc[applied:due])
            applied = due
        chunk_partition = partition[start:stop]
        for number, state in enumerate(states):
            rows = np.flatnonzero(chunk_partition == number)
            if rows.size == 0:
                continue
            features = state.process(transactions.iloc[start + rows])
            for name in names:
                columns[name][start + rows] = features[name].to_numpy()
        if progress is not None:
            progress(stop, total)
    return pd.DataFrame(columns, index=transactions.index, copy=False)
