"""Label application at the cost of the new labels: same features as the full re-sort that kept every label
until the fraud window + lateness (legitimate labels now fold after the lateness), and work per batch that
does not follow the stored labels (definitions: fraudstream/features/merchant.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from frames import ORIGIN_US, labels

from fraudstream.events.contract import LABEL_COLUMNS
from fraudstream.features import FeatureConfig, MerchantFeatures
from fraudstream.features import columnar as col
from fraudstream.features.merchant import (
    LABEL_IS_FRAUD,
    LABEL_TIME,
    LABEL_TRANSACTION_HASH,
    SEEN_TIME,
    SEEN_TRANSACTION_HASH,
)
from fraudstream.features.store import NO_TIME

pytestmark = pytest.mark.unit
#: Short windows so that labels fold, merchants expire and transactions are labeled again after a fold.
CONFIG = FeatureConfig(merchant_windows_s=(60, 600), merchant_fraud_window_s=300, allowed_lateness_s=30,
                       merchant_ttl_s=2_000, max_merchant_events=50)


class ResortingMerchantFeatures(MerchantFeatures):
    """The previous label handling, kept here as the reference: every label stays one by one until the
    watermark passes it by the fraud window + lateness, and apply_labels gathers every stored label of the
    touched merchants, appends the new ones and lexsorts the lot (first label per transaction wins)."""

    def _fold_horizon_us(self, is_fraud: np.ndarray) -> np.ndarray:
        return np.full(is_fraud.shape, self._dedup_horizon_us())

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


def retained_transactions(state: MerchantFeatures, key: str) -> set[int]:
    """Transactions whose next label at this merchant would be ignored as a duplicate."""
    slot = state.store.index[key]
    unfolded = set(state.store.rows("labels", key)[:, LABEL_TRANSACTION_HASH].tolist())
    seen = state.store.rows("seen", key)
    after = int(state.store.scalars[slot]["watermark_us"]) - state._dedup_horizon_us()
    return unfolded | set(seen[seen[:, SEEN_TIME] > after, SEEN_TRANSACTION_HASH].tolist())


def merchant_late(state: MerchantFeatures, batch: pd.DataFrame) -> np.ndarray:
    """Events more than the lateness behind their merchant's watermark (before the batch)."""
    index, scalars = state.store.index, state.store.scalars
    watermark = np.array([scalars[index[m]]["watermark_us"] if m in index else NO_TIME
                          for m in batch["merchant_id"]], dtype=np.int64)
    return (watermark > NO_TIME) & (batch["event_time_us"].to_numpy() < watermark - CONFIG.allowed_lateness_s * 10**6)


@pytest.mark.parametrize("seed", range(8))
def test_same_features_and_duplicates_as_the_full_resort(seed: int) -> None:
    """Identical features for events within the lateness; beyond it only the label count (and so the rate)
    may be higher, by legitimate labels folded early, and the fraud count in the window stays exact."""
    rng = np.random.default_rng(seed)
    ours, reference = MerchantFeatures(CONFIG), ResortingMerchantFeatures(CONFIG)
    now_s, late_rows = 0, 0
    for step in range(60):
        now_s += int(rng.integers(0, 120)) + (3_000 if step == 30 else 0)  # one gap past the merchant TTL
        if rng.random() < 0.5:
            feedback = label_batch(rng, now_s, int(rng.integers(1, 40)), merchants=6, transactions=80)
            ours.apply_labels(feedback)
            reference.apply_labels(feedback)
        batch = events(rng, now_s, int(rng.integers(1, 30)), merchants=6)
        late = merchant_late(reference, batch)
        late_rows += int(late.sum())
        got, expected = ours.process(batch), reference.process(batch)
        pd.testing.assert_frame_equal(got[~late], expected[~late])
        pd.testing.assert_series_equal(got["merchant_fraud_count_5min"], expected["merchant_fraud_count_5min"])
        assert (got["merchant_label_count"] >= expected["merchant_label_count"]).all()
        for key in reference.store.index:
            assert retained_transactions(ours, key) == retained_transactions(reference, key)
            mine, theirs = (state.store.scalars[state.store.index[key]] for state in (ours, reference))
            assert mine["folded_label_count"] + len(ours.store.rows("labels", key)) == (
                theirs["folded_label_count"] + len(reference.store.rows("labels", key)))
    assert late_rows > 0


def test_only_fraud_labels_and_labels_within_the_lateness_stay_one_by_one() -> None:
    state = MerchantFeatures(CONFIG)
    state.apply_labels(labels([{"transaction_id": f"t{n}", "merchant_id": "m0", "seconds": n, "is_fraud": n % 10 == 0}
                               for n in range(100)]))
    state.process(events(np.random.default_rng(1), 200, 5, merchants=1))  # watermark ~ 200 s: lateness 30 s
    stored = state.store.rows("labels", "m0")
    legitimate = stored[stored[:, LABEL_IS_FRAUD] == 0]
    watermark_s = (int(state.store.scalars[state.store.index["m0"]]["watermark_us"]) - ORIGIN_US) / 1e6
    assert (legitimate[:, LABEL_TIME] > ORIGIN_US + (watermark_s - 30) * 1e6).all()
    assert stored[:, LABEL_IS_FRAUD].sum() == 10  # every fraud label: all within the 5 min window + lateness
    assert len(state.store.rows("seen", "m0")) == 100 - len(stored)


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
        assert retained_transactions(restored, key) == retained_transactions(original, key)


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


@pytest.mark.parametrize("stored_batches", [1, 10, 100])
def test_event_batches_read_only_the_labels_features_need_one_by_one(stored_batches: int) -> None:
    """Legitimate labels in effect for longer than the lateness are counted, not read again by every event
    batch; keeping them for deduplication costs O(1) rows written per label, amortized."""
    rng = np.random.default_rng(stored_batches)
    state = MerchantFeatures(FeatureConfig())  # a week's fraud window, 300 s lateness
    for number in range(stored_batches + 1):
        now_s = 1_000 * (number + 1)
        feedback = label_batch(rng, now_s - 500, 200, merchants=4, transactions=10**9).assign(is_fraud=False)
        state.apply_labels(feedback)
        before = state.work["label_rows_read"]
        state.process(events(rng, now_s, 50, merchants=4))
        read = state.work["label_rows_read"] - before
    stored = sum(len(state.store.rows("seen", key)) for key in state.store.index)
    assert stored >= stored_batches * 80  # merchants with events: all deduplicating, none read by event batches
    assert read <= 200
    assert state.work["seen_rows_rewritten"] <= 2 * stored
