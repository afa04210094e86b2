"""replay_partitioned: training sees exactly what the engines compute with one state per partition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from frames import labels, transactions

from fraudstream.events.contract import partition_for
from fraudstream.features import FeatureConfig, FeatureState
from fraudstream.features.replay import partitions_of, replay_partitioned

pytestmark = pytest.mark.unit
DAY = 86_400
PARTITIONS = 3


def history(size: int = 600, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, 5 * DAY, size))
    events = transactions(
        [
            {
                "seconds": float(s),
                "account_id": f"acc{rng.integers(24)}",
                "merchant_id": f"m{rng.integers(5)}",
                "amount": float(rng.integers(100, 50_000)) / 100,
                "device_id": f"d{rng.integers(4)}",
                "country": ["US", "FR", "DE"][rng.integers(3)],
            }
            for s in seconds
        ]
    ).set_axis(np.arange(size) * 10 + 3)  # a non-default index must be kept
    fraud = rng.random(size) < 0.2
    feedback = labels(
        [
            {
                "transaction_id": events["transaction_id"].iloc[i],
                "account_id": events["account_id"].iloc[i],
                "merchant_id": events["merchant_id"].iloc[i],
                "is_fraud": bool(fraud[i]),
                "seconds": float(seconds[i] + rng.uniform(0.1, 1.5) * DAY),
            }
            for i in range(size)
        ]
    )
    return events, feedback


def engine_like(events: pd.DataFrame, feedback: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """What the local engine does: micro-batches, each split by partition, labels to every state."""
    states = [FeatureState() for _ in range(PARTITIONS)]
    partition = np.array([partition_for(a, PARTITIONS) for a in events["account_id"]])
    label_times = feedback["labeled_at_us"].to_numpy()
    times = events["event_time_us"].to_numpy()
    applied = np.zeros(len(feedback), dtype=bool)
    parts = []
    for start in range(0, len(events), batch_size):
        due = ~applied & (label_times <= times[start : start + batch_size].max())
        for state in states:
            state.apply_labels(feedback[due])
        applied |= due
        for number, state in enumerate(states):
            batch = events.iloc[start : start + batch_size][partition[start : start + batch_size] == number]
            parts.append(state.process(batch))
    return pd.concat(parts).loc[events.index]


def test_partitions_of_is_partition_for() -> None:
    accounts = np.array(["a", "b", "a", "zz", "account-17"], dtype=object)
    assert partitions_of(accounts, 6).tolist() == [partition_for(a, 6) for a in accounts]


@pytest.mark.parametrize("chunk_events", [50, 1_000])
def test_replay_equals_one_state_per_partition_fed_in_micro_batches(chunk_events: int) -> None:
    events, feedback = history()
    assert len(set(partitions_of(events["account_id"].to_numpy(), PARTITIONS))) == PARTITIONS
    replayed = replay_partitioned(events, feedback, FeatureConfig(), PARTITIONS, chunk_events=chunk_events)
    assert replayed.index.equals(events.index)
    pd.testing.assert_frame_equal(replayed, engine_like(events, feedback, batch_size=17), check_exact=True)
    assert replayed["merchant_label_count"].max() > 0


def test_merchant_features_see_only_the_partitions_share() -> None:
    events, feedback = history()
    partitioned = replay_partitioned(events, feedback, None, PARTITIONS)
    single = replay_partitioned(events, feedback, None, 1)
    whole = FeatureState()
    whole.apply_labels(feedback)
    pd.testing.assert_frame_equal(single, whole.process(events), check_exact=True)
    account_columns = [c for c in single.columns if not c.startswith("merchant_")]
    pd.testing.assert_frame_equal(partitioned[account_columns], single[account_columns], check_exact=True)
    count = "merchant_transaction_count_24h"
    assert (partitioned[count] <= single[count]).all() and (partitioned[count] < single[count]).any()
    # Label feedback is global: every partition state knows every label.
    pd.testing.assert_series_equal(partitioned["merchant_label_count"], single["merchant_label_count"])


def test_states_can_be_given_and_are_updated() -> None:
    events, feedback = history(size=100)
    states = [FeatureState() for _ in range(PARTITIONS)]
    replay_partitioned(events, feedback, None, PARTITIONS, states=states)
    assert sum(state.stats().accounts for state in states) == events["account_id"].nunique()
    with pytest.raises(ValueError, match="states"):
        replay_partitioned(events, feedback, None, 2, states=states)
