"""MultiPartitionFeatureState: several partitions in one call give exactly what separate states give."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from frames import labels, transactions

from fraudstream.features import FeatureConfig, FeatureState
from fraudstream.features.columnar import batch_columns
from fraudstream.features.partitioned import MultiPartitionFeatureState
from fraudstream.features.state import REQUIRED_COLUMNS

pytestmark = pytest.mark.unit
DAY = 86_400
PARTITIONS = (0, 2, 5)
CONFIG = FeatureConfig(account_ttl_s=2 * DAY, merchant_ttl_s=3 * DAY)


def partitioned_stream(size: int = 600, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Events of three partitions that share merchant ids (a merchant's counts differ per partition), with
    accounts and merchants that go idle past their TTL, late events, and labels; each event's partition."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, 12 * DAY, size))
    seconds[rng.random(size) < 0.05] -= DAY  # a few late arrivals
    partition = np.array(PARTITIONS)[rng.integers(len(PARTITIONS), size=size)]
    events = transactions([
        {"seconds": float(s), "account_id": f"p{p}-a{int(s // (3 * DAY))}-{rng.integers(4)}",
         "merchant_id": f"m{int(s // (4 * DAY))}-{rng.integers(3)}",
         "amount": float(rng.integers(100, 50_000)) / 100, "device_id": f"d{rng.integers(4)}"}
        for s, p in zip(seconds, partition, strict=True)
    ])
    feedback = labels([
        {"transaction_id": events["transaction_id"][i], "merchant_id": events["merchant_id"][i],
         "is_fraud": bool(rng.random() < 0.3), "seconds": float(seconds[i] + DAY)}
        for i in range(0, size, 3)
    ])
    return events, partition, feedback


def separate_run(events: pd.DataFrame, partition: np.ndarray, feedback: pd.DataFrame,
                 cuts: list[int]) -> tuple[np.ndarray, dict[int, FeatureState]]:
    """The reference: one FeatureState per partition, fed that partition's rows of every batch."""
    states = {number: FeatureState(CONFIG) for number in PARTITIONS}
    for state in states.values():
        state.apply_labels(feedback)
    columns = batch_columns(events, REQUIRED_COLUMNS)
    matrix = np.empty((len(events), len(states[0].feature_names) + 1))
    for start, stop in itertools.pairwise(cuts):
        for number, state in states.items():
            rows = start + np.flatnonzero(partition[start:stop] == number)
            features, late = state.process_columns({name: values[rows] for name, values in columns.items()})
            matrix[rows] = np.column_stack((features, late))
    return matrix, states


def contents(state: FeatureState) -> tuple:
    """A state's keys with their scalars and tables, and its clock: what must survive, in any slot order."""
    stores = [
        {key: (store.scalars[slot].tobytes(), *(store.rows(table, key).tobytes() for table in store.tables))
         for key, slot in store.index.items()}
        for store in (state.accounts.store, state.merchants.store)
    ]
    return *stores, state.clock


def shared_batch(shared: MultiPartitionFeatureState, events: pd.DataFrame, partition: np.ndarray,
                 rows: slice) -> np.ndarray:
    columns = {name: values[rows] for name, values in batch_columns(events, REQUIRED_COLUMNS).items()}
    features, late = shared.process_columns(columns, partition[rows])
    return np.column_stack((features, late))


def test_one_call_over_partitions_equals_separate_states_bit_for_bit() -> None:
    events, partition, feedback = partitioned_stream()
    cuts = [0, 1, 40, 41, 250, 400, 600]
    expected, states = separate_run(events, partition, feedback, cuts)

    shared = MultiPartitionFeatureState(CONFIG)
    for number in PARTITIONS:
        shared.add(number, FeatureState(CONFIG))
        shared.apply_labels(number, feedback)
    got = np.vstack([shared_batch(shared, events, partition, slice(a, b)) for a, b in itertools.pairwise(cuts)])

    np.testing.assert_array_equal(got, expected)
    assert got[:, -1].any(), "the stream has late events"
    for number, state in states.items():
        stats = state.stats()
        assert stats.evicted_accounts > 0 and stats.evicted_merchants > 0, "keys go idle past the TTL"
        # A partition's snapshot holds what its separate state holds (keys, tables, clock, counters).
        assert contents(FeatureState.restore(shared.snapshot(number))) == contents(state)


def test_partitions_added_from_snapshots_and_removed_continue_exactly() -> None:
    events, partition, feedback = partitioned_stream(seed=8)
    expected, _ = separate_run(events, partition, feedback, [0, 300, 600])

    first = MultiPartitionFeatureState(CONFIG)
    for number in PARTITIONS:
        first.add(number, FeatureState(CONFIG))
        first.apply_labels(number, feedback)
    head = shared_batch(first, events, partition, slice(0, 300))

    # A rebalance: partition 2 moves to a member that restores it; the old member forgets it.
    second = MultiPartitionFeatureState(CONFIG)
    for number in PARTITIONS:
        second.add(number, FeatureState.restore(first.snapshot(number)))
    first.remove(2)
    assert not any(key.startswith("2:") for key in first.accounts.store.index)
    assert not any(key.startswith("2:") for key in first.merchants.store.index)
    tail = shared_batch(second, events, partition, slice(300, 600))
    np.testing.assert_array_equal(np.vstack((head, tail)), expected)

    # Adding a partition again replaces what was held.
    second.add(5, FeatureState(CONFIG))
    assert FeatureState.restore(second.snapshot(5)).stats().accounts == 0


def test_labels_reach_only_the_partition_they_are_applied_to() -> None:
    shared = MultiPartitionFeatureState(CONFIG)
    for number in (0, 1):
        shared.add(number, FeatureState(CONFIG))
    shared.apply_labels(0, labels([{"transaction_id": "t0", "merchant_id": "m1", "is_fraud": True, "seconds": 0},
                                   {"transaction_id": "t1", "merchant_id": None, "seconds": 0}]))
    batch = transactions([{"seconds": 10, "merchant_id": "m1", "account_id": "a"},
                          {"seconds": 10, "merchant_id": "m1", "account_id": "b", "transaction_id": "t9"}])
    features, _ = shared.process_columns(batch_columns(batch, REQUIRED_COLUMNS), np.array([0, 1]))
    label_count = features[:, shared.feature_names.index("merchant_label_count")]
    assert label_count.tolist() == [1.0, 0.0]


def test_a_state_of_another_configuration_or_a_partition_not_added_is_refused() -> None:
    shared = MultiPartitionFeatureState(CONFIG)
    with pytest.raises(ValueError, match="another feature configuration"):
        shared.add(0, FeatureState(FeatureConfig()))
    shared.add(0, FeatureState(CONFIG))
    batch = batch_columns(transactions([{"seconds": 0}, {"seconds": 1, "transaction_id": "t1"}]), REQUIRED_COLUMNS)
    with pytest.raises(KeyError, match=r"\[3\] were not added"):
        shared.process_columns(batch, np.array([0, 3]))
    assert len(shared.accounts.store) == 0, "nothing was processed"
