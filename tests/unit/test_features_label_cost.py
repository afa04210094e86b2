"""Label application at the cost of the new labels: same features as the full re-sort it replaced, and
work per batch that does not follow the stored labels (definitions: fraudstream/features/merchant.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from frames import ORIGIN_US, labels

from fraudstream.events.contract import LABEL_COLUMNS
from fraudstream.features import FeatureConfig, MerchantFeatures
from fraudstream.features import columnar as col
from fraudstream.features.merchant import LABEL_TIME, LABEL_TRANSACTION_HASH

pytestmark = pytest.mark.unit
#: Short windows so that labels fold, merchants expire and transactions are labeled again after a fold.
CONFIG = FeatureConfig(merchant_windows_s=(60, 600), merchant_fraud_window_s=300, allowed_lateness_s=30,
                       merchant_ttl_s=2_000, max_merchant_events=50)


class ResortingMerchantFeatures(MerchantFeatures):
    """The previous apply_labels, kept here as the reference: gather every stored label of the touched
    merchants, append the new ones and lexsort the lot (first label per transaction wins)."""

    def apply_labels(self, labels: pd.DataFrame) -> None:
        labels = labels[labels["merchant_id"].notna()]
        if labels.empty:
            return
        group_new, merchants = pd.factorize(labels["merchant_id"].to_numpy(dtype=object))
        slots = self.store.slots(np.asarray(merchants, dtype=object))
        old, old_group = self.store.gather("labels", slots)
        fresh = np.column_stack(
            (
                labels["labeled_at_us"].to_numpy(dtype=np.int64),
                col.hash_values(labels["transaction_id"].to_numpy(dtype=object)),
                labels["is_fraud"].to_numpy(dtype=bool).astype(np.int64),
            )
        )
        rows = np.concatenate([old, fresh])
        group = np.r_[old_group, group_new]
        transaction = rows[:, LABEL_TRANSACTION_HASH]
        first_wins = np.lexsort((np.arange(group.size), transaction, group))
        unique = first_wins[col.run_start_flags(group[first_wins], transaction[first_wins])]
        unique = unique[np.lexsort((transaction[unique], rows[unique, LABEL_TIME], group[unique]))]
        self.store.scatter("labels", slots, rows[unique], group[unique])


def events(rng: np.random.Generator, start_s: int, size: int, merchants: int) -> pd.DataFrame:
    seconds = start_s + rng.integers(-40, 20, size)  # some late events, some ties
    return pd.DataFrame({
        "event_time_us": ORIGIN_US + seconds * 1_000_000,
        "merchant_id": np.array([f"m{m}" for m in rng.integers(0, merchants, size)], dtype=object),
    })


def label_batch(rng: np.random.Generator, now_s: int, size: int, merchants: int, transactions: int) -> pd.DataFrame:
    """Duplicates (few transaction ids), late and early labels, unknown merchants and missing merchants."""
    merchant = np.array([f"m{m}" for m in rng.integers(0, merchants + 3, size)], dtype=object)
    merchant[rng.random(size) < 0.05] = None
    return pd.DataFrame({
        "transaction_id": np.array([f"t{t}" for t in rng.integers(0, transactions, size)], dtype=object),
        "account_id": "a1",
        "merchant_id": merchant,
        "is_fraud": rng.random(size) < 0.3,
        "scenario": None,
        "labeled_at_us": ORIGIN_US + (now_s + rng.integers(-400, 60, size)) * 1_000_000,
    }).astype(LABEL_COLUMNS)


@pytest.mark.parametrize("seed", range(6))
def test_same_features_and_state_as_the_full_resort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ours, reference = MerchantFeatures(CONFIG), ResortingMerchantFeatures(CONFIG)
    now_s = 0
    for step in range(60):
        now_s += int(rng.integers(0, 120)) + (3_000 if step == 30 else 0)  # one gap past the merchant TTL
        if rng.random() < 0.5:
            feedback = label_batch(rng, now_s, int(rng.integers(1, 40)), merchants=6, transactions=80)
            ours.apply_labels(feedback)
            reference.apply_labels(feedback)
        batch = events(rng, now_s, int(rng.integers(1, 30)), merchants=6)
        pd.testing.assert_frame_equal(ours.process(batch), reference.process(batch))
        for key in reference.store.index:
            np.testing.assert_array_equal(ours.store.rows("labels", key), reference.store.rows("labels", key))


def test_duplicate_is_ignored_until_the_first_label_folds_as_before() -> None:
    ours, reference = MerchantFeatures(CONFIG), ResortingMerchantFeatures(CONFIG)
    rng = np.random.default_rng(7)
    first = labels([{"transaction_id": "x", "merchant_id": "m0", "seconds": s} for s in (0, 5, 9)])
    for state in (ours, reference):
        state.apply_labels(first)
        state.apply_labels(first)
        assert len(state.store.rows("labels", "m0")) == 1
        state.process(events(rng, 2_000, 3, merchants=1))  # folds the label: the transaction may count again
        state.apply_labels(first)
        assert len(state.store.rows("labels", "m0")) == 1
        assert int(state.store.scalars[state.store.index["m0"]]["folded_label_count"]) == 1


def test_restored_state_still_deduplicates() -> None:
    """The duplicate index is derived, not snapshotted: a store loaded from arrays rebuilds it."""
    rng = np.random.default_rng(3)
    feedback = label_batch(rng, 0, 30, merchants=3, transactions=10)
    original = MerchantFeatures(CONFIG)
    original.apply_labels(feedback)
    restored = MerchantFeatures(CONFIG)
    restored.store.load_arrays("m", original.store.to_arrays("m"))
    restored.apply_labels(feedback)
    for key in original.store.index:
        np.testing.assert_array_equal(restored.store.rows("labels", key), original.store.rows("labels", key))


@pytest.mark.parametrize("stored_batches", [1, 10, 100])
def test_rows_sorted_per_batch_follow_the_new_labels_not_the_stored_ones(stored_batches: int) -> None:
    rng = np.random.default_rng(stored_batches)
    state = MerchantFeatures(FeatureConfig())  # a week's fraud window: nothing folds
    for number in range(stored_batches):
        state.apply_labels(label_batch(rng, number, 200, merchants=4, transactions=10**9))
    stored = sum(len(state.store.rows("labels", key)) for key in state.store.index)
    assert stored >= stored_batches * 150
    before = state.work["label_rows_sorted"]
    state.apply_labels(label_batch(rng, stored_batches, 200, merchants=4, transactions=10**9))
    assert state.work["label_rows_sorted"] - before <= 200
