"""Merchant-scoped features: merchant velocity and merchant risk from labels that have arrived.

Definitions (pinned by tests/unit/test_features_merchant.py):

- ``merchant_transaction_count_<w>``: the merchant's events with event time in ``(t - w, t]``,
  the current one included (same processing order as the account features).
- Label feedback: a label takes effect for transactions whose event time is >= its ``labeled_at``.
  apply_labels() may receive a label before its time: it waits in state until the event-time clock
  passes it, so replaying history with every label up front gives exactly the features a stream
  gets when labels arrive as they are made. A label never influences an event before its labeled_at.
- ``merchant_label_count``: labels in effect; ``merchant_fraud_count_<w>``: fraud labels whose
  labeled_at is in ``(t - w, t]``; ``merchant_fraud_rate_smoothed``:
  ``(fraud labels + strength * prior) / (labels + strength)``.
- Labels without a merchant_id are ignored; a second label for the same transaction at the same merchant
  is ignored while the first is retained: until the merchant's watermark passes its labeled_at by the
  fraud window + lateness (then the transaction may count again).

State per merchant, so that an event batch reads only what the features need one by one: counters of the
labels in effect long enough ago (``folded_*``); the individual labels a feature still tells apart (legitimate
labels until the watermark passes their labeled_at by the lateness, fraud labels by the fraud window +
lateness, and labels still waiting for their labeled_at); and, for deduplication only, the transactions
of folded legitimate labels still retained (table ``seen``, read by apply_labels, never by an event batch).
Tolerance: an event more than ``allowed_lateness_s`` behind its merchant's watermark counts the legitimate
labels folded so far in ``merchant_label_count`` and the smoothed rate, even those after its own time
(at most the merchant's legitimate labels between the event and the watermark - lateness); the fraud
counts stay exact up to the fraud window + lateness. Events within the lateness see exact features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraudstream.features import columnar as col
from fraudstream.features.config import FeatureConfig, merchant_feature_names, window_label
from fraudstream.features.keyindex import ABSENT, KeyIndex
from fraudstream.features.store import FAR_FUTURE, NO_TIME, KeyedStore
from fraudstream.timeunits import MICROS_PER_SECOND

SCALARS = np.dtype([("watermark_us", "<i8"), ("folded_label_count", "<i8"), ("folded_fraud_count", "<i8")])
DEFAULT = (NO_TIME, 0, 0)
#: Per-merchant tables (int64 matrices). events: retained event times; labels: labels not yet folded,
#: sorted by (labeled_at, transaction); seen: folded legitimate labels kept for deduplication (any order).
EVENT_TIME = 0
LABEL_TIME, LABEL_TRANSACTION_HASH, LABEL_IS_FRAUD = range(3)
SEEN_TIME, SEEN_TRANSACTION_HASH = range(2)
TABLES = {"events": 1, "labels": 3, "seen": 2}
#: In the duplicate index: retained whatever the watermark (a label that arrived already past the dedup
#: horizon stays retained until its merchant's next event batch folds it; other labels index their labeled_at).
UNFOLDED = FAR_FUTURE


def transaction_keys(slots: np.ndarray, transaction_hash: np.ndarray) -> np.ndarray:
    """One int64 key per (merchant slot, transaction) for the duplicate index (a 64-bit mix, as the hashes)."""
    mixed = slots.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ transaction_hash.view(np.uint64)
    return mixed.view(np.int64)


class MerchantFeatures:
    """Merchant state and the batch update; run it grouped by merchant or on mixed batches alike."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.names = merchant_feature_names(config)
        self.store = KeyedStore(SCALARS, DEFAULT, TABLES)
        #: (slot, transaction) -> labeled_at (or UNFOLDED) of its retained label: derived from the labels and
        #: seen tables of the slots whose generation it was built for (see _index_slots).
        self._index = KeyIndex(self._index_live)
        self._indexed_generation = np.zeros(0, dtype=np.int64)
        #: Rows sorted by apply_labels and label rows read by event batches (costs that must follow the new
        #: labels and the features' needs, not the stored labels).
        self.work = {"label_rows_sorted": 0, "label_rows_read": 0, "seen_rows_rewritten": 0}

    def apply_labels(self, labels: pd.DataFrame) -> None:
        """Remember labels (deduplicated per transaction, the first one wins) until events pass their labeled_at.

        Only the new labels are sorted; they are merged into each touched merchant's stored run (kept
        sorted by labeled_at, transaction) at searched positions, and duplicates are looked up in a sorted
        index of the retained transactions, so a batch never re-sorts what is stored."""
        merchant = labels["merchant_id"].to_numpy(dtype=object)
        known = ~pd.isna(merchant)
        if not known.any():
            return
        group_new, merchants = pd.factorize(merchant[known])
        slots = self.store.slots(np.asarray(merchants, dtype=object))
        fresh = np.column_stack(
            (
                labels["labeled_at_us"].to_numpy(dtype=np.int64)[known],
                col.hash_values(labels["transaction_id"].to_numpy(dtype=object)[known]),
                labels["is_fraud"].to_numpy(dtype=bool)[known].astype(np.int64),
            )
        )
        self._index_slots(slots)
        row_slot = slots[group_new]
        keys = transaction_keys(row_slot, fresh[:, LABEL_TRANSACTION_HASH])
        distinct, first_row = np.unique(keys, return_index=True)  # the first label of a transaction wins
        first_row_slot = row_slot[first_row]
        # A folded label is retained (a duplicate of it ignored) while labeled_at > watermark - dedup horizon.
        retained_after = self.store.scalars["watermark_us"][row_slot] - self._dedup_horizon_us()
        retained = self._index.get(distinct, self.store.generation[first_row_slot]) > retained_after[first_row]
        accepted = first_row[~retained]
        labeled_at = fresh[accepted, LABEL_TIME]
        self._index.put(distinct[~retained], np.where(labeled_at > retained_after[accepted], labeled_at, UNFOLDED),
                        row_slot[accepted], self.store.generation[row_slot[accepted]])
        fresh, group_new = fresh[accepted], group_new[accepted]
        order = np.lexsort((fresh[:, LABEL_TRANSACTION_HASH], fresh[:, LABEL_TIME], group_new))
        fresh, group_new = fresh[order], group_new[order]
        self.work["label_rows_sorted"] += len(order)
        old, old_group = self.store.gather("labels", slots)
        upto = self._merge_upto(old, old_group, fresh, group_new)
        stored_position, batch_position = col.merge_positions(upto, len(old))
        merged = np.empty((len(old) + len(fresh), 3), dtype=np.int64)
        merged_group = np.empty(len(merged), dtype=np.int64)
        merged[stored_position], merged_group[stored_position] = old, old_group
        merged[batch_position], merged_group[batch_position] = fresh, group_new
        self.store.scatter("labels", slots, merged, merged_group)

    @staticmethod
    def _merge_upto(old: np.ndarray, old_group: np.ndarray, fresh: np.ndarray, fresh_group: np.ndarray) -> np.ndarray:
        """Stored rows preceding each new row in (merchant, labeled_at, transaction) order, by search."""
        stored = col.SortedTimes(old_group, old[:, LABEL_TIME])
        before = stored.first_after(fresh_group, fresh[:, LABEL_TIME] - 1)
        after = stored.first_after(fresh_group, fresh[:, LABEL_TIME])
        # Equal labeled_at (rare): the transaction hash orders them, as a full sort would.
        for row in np.flatnonzero(after > before).tolist():
            tied = old[before[row] : after[row], LABEL_TRANSACTION_HASH]
            before[row] += int(np.count_nonzero(tied < fresh[row, LABEL_TRANSACTION_HASH]))
        return before

    def _dedup_horizon_us(self) -> int:
        return (self.config.merchant_fraud_window_s + self.config.allowed_lateness_s) * MICROS_PER_SECOND

    def _fold_horizon_us(self, is_fraud: np.ndarray) -> np.ndarray:
        """How far the watermark must pass a label's labeled_at before it only needs counting: a
        legitimate label matters one by one only to events within the lateness, a fraud label to the
        fraud window as well."""
        lateness_us = self.config.allowed_lateness_s * MICROS_PER_SECOND
        return lateness_us + is_fraud * (self.config.merchant_fraud_window_s * MICROS_PER_SECOND)

    def _index_slots(self, slots: np.ndarray) -> None:
        """Bring the duplicate index up to date for these (distinct) slots: after a restore, or when a slot
        was cleared or recycled (its generation moved), its entries are rebuilt from its stored rows."""
        generation = self.store.generation
        stale = slots[~self._indexed(slots)]
        if stale.size == 0:
            return
        folded, folded_group = self.store.gather("seen", stale)
        unfolded, unfolded_group = self.store.gather("labels", stale)
        slot = stale[np.r_[folded_group, unfolded_group]]
        keys = transaction_keys(slot, np.r_[folded[:, SEEN_TRANSACTION_HASH], unfolded[:, LABEL_TRANSACTION_HASH]])
        retained_after = self.store.scalars["watermark_us"][stale[unfolded_group]] - self._dedup_horizon_us()
        values = np.r_[folded[:, SEEN_TIME],
                       np.where(unfolded[:, LABEL_TIME] > retained_after, unfolded[:, LABEL_TIME], UNFOLDED)]
        order = np.lexsort((values, keys))  # the latest entry of a transaction (UNFOLDED last) stands
        last = order[np.append(keys[order][1:] != keys[order][:-1], True)] if keys.size else order
        self._index.put(keys[last], values[last], slot[last], generation[slot[last]])
        self._indexed_generation[stale] = generation[stale]

    def _indexed(self, slots: np.ndarray) -> np.ndarray:
        """Whether the duplicate index describes each slot's current tables."""
        generation = self.store.generation
        if self._indexed_generation.size < generation.size:
            grown = np.full(generation.size, -1, dtype=np.int64)
            grown[: self._indexed_generation.size] = self._indexed_generation
            self._indexed_generation = grown
        return self._indexed_generation[slots] == generation[slots]

    def _index_live(self, slot: np.ndarray, generation: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Index entries worth keeping: of the slot's current generation, and still retained."""
        store = self.store
        return (generation == store.generation[slot]) & (
            value > store.scalars["watermark_us"][slot] - self._dedup_horizon_us())

    def derived_nbytes(self) -> int:
        """Bytes of the duplicate index (derived from the store, rebuilt after a restore: not in snapshots)."""
        return self._index.nbytes()

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Features (self.names) for every row, in the batch's order; updates the state."""
        columns = col.batch_columns(batch, ("event_time_us", "merchant_id"))
        return pd.DataFrame(self.columns(columns), index=batch.index, copy=False)

    def columns(self, batch: col.Columns) -> dict[str, np.ndarray]:
        """process() over arrays (col.batch_columns), as a dict of arrays."""
        cfg = self.config
        n = len(batch["event_time_us"])
        order, g, t, merchants = col.group_time_order(batch["merchant_id"], batch["event_time_us"])
        slots = self.store.slots(np.asarray(merchants, dtype=object))
        starts = col.segment_starts(g)
        ends = np.append(starts[1:], n)
        self.store.expire(slots, t[starts], cfg.merchant_ttl_s * MICROS_PER_SECOND)
        state = self.store.scalars[slots]

        # Stored tables are already sorted by (merchant, time): search them instead of sorting them
        # with the batch, so the cost grows with the batch and the touched merchants' rows only.
        events, events_group = self.store.gather("events", slots)
        labels, labels_group = self.store.gather("labels", slots)
        self.work["label_rows_read"] += len(labels)
        stored_events = col.SortedTimes(events_group, events[:, EVENT_TIME])
        stored_labels = col.SortedTimes(labels_group, labels[:, LABEL_TIME])
        in_batch = col.SortedTimes(g, t)
        position = np.arange(n)
        # Stored rows at time t come first (a label takes effect at its labeled_at; a stored event
        # precedes a batch event at the same time); batch events count up to and including their own.
        events_upto = stored_events.first_after(g, t)
        labels_upto = stored_labels.first_after(g, t)
        labels_start = stored_labels.first_after(g, np.full(n, NO_TIME))
        fraud_prefix = col.prefix(labels[:, LABEL_IS_FRAUD])

        out: dict[str, np.ndarray] = {}
        for seconds in cfg.merchant_windows_s:
            bound = t - seconds * MICROS_PER_SECOND
            stored = events_upto - stored_events.first_after(g, bound)
            out[f"merchant_transaction_count_{window_label(seconds)}"] = (
                stored + position + 1 - in_batch.first_after(g, bound)
            ).astype(np.float64)
        label_count = state["folded_label_count"][g] + labels_upto - labels_start
        fraud_count = state["folded_fraud_count"][g] + fraud_prefix[labels_upto] - fraud_prefix[labels_start]
        strength = cfg.merchant_risk_strength
        out["merchant_fraud_rate_smoothed"] = (fraud_count + strength * cfg.merchant_risk_prior) / (
            label_count + strength
        )
        fraud_start = stored_labels.first_after(g, t - cfg.merchant_fraud_window_s * MICROS_PER_SECOND)
        out[f"merchant_fraud_count_{window_label(cfg.merchant_fraud_window_s)}"] = (
            fraud_prefix[labels_upto] - fraud_prefix[fraud_start]
        ).astype(np.float64)
        out["merchant_label_count"] = label_count.astype(np.float64)

        state["watermark_us"] = np.maximum(state["watermark_us"], t[ends - 1])
        # Stored events and the batch merged by (merchant, time), stored first on ties: no sort needed.
        stored_position, batch_position = col.merge_positions(events_upto, len(events))
        merged_group, merged_time = np.empty(len(events) + n, np.int64), np.empty(len(events) + n, np.int64)
        merged_group[stored_position], merged_time[stored_position] = events_group, events[:, EVENT_TIME]
        merged_group[batch_position], merged_time[batch_position] = g, t
        self._retain(slots, state, merged_group, merged_time, labels, labels_group)

        result = {}
        for name in self.names:
            column = np.empty(n, dtype=np.float64)
            column[order] = out[name]
            result[name] = column
        return result

    def _retain(
        self,
        slots: np.ndarray,
        state: np.ndarray,
        event_group: np.ndarray,
        event_time: np.ndarray,
        labels: np.ndarray,
        labels_group: np.ndarray,
    ) -> None:
        """Keep recent events; fold labels into counters once no feature needs them one by one."""
        cfg = self.config
        watermark = state["watermark_us"]
        lateness_us = cfg.allowed_lateness_s * MICROS_PER_SECOND
        horizon_us = max(cfg.merchant_windows_s) * MICROS_PER_SECOND + lateness_us
        keep = col.retained(event_group, event_time, watermark[event_group] - horizon_us, cfg.max_merchant_events)
        self.store.scatter("events", slots, event_time[keep, None], event_group[keep])

        fold = labels[:, LABEL_TIME] <= watermark[labels_group] - self._fold_horizon_us(labels[:, LABEL_IS_FRAUD])
        state["folded_label_count"] += np.bincount(labels_group[fold], minlength=slots.size)
        state["folded_fraud_count"] += np.bincount(
            labels_group[fold], weights=labels[fold, LABEL_IS_FRAUD], minlength=slots.size
        ).astype(np.int64)
        self.store.scalars[slots] = state
        if not fold.any():
            return
        # Folded legitimate labels still retained keep deduplicating (table seen); the others are forgotten.
        remember = fold & (labels[:, LABEL_IS_FRAUD] == 0) & (
            labels[:, LABEL_TIME] > watermark[labels_group] - self._dedup_horizon_us())
        # The index holds labeled_at for the others already; forgotten ones that may hold UNFOLDED are cleared.
        forget = np.flatnonzero(fold & ~remember)
        forget = forget[self._indexed(slots[labels_group[forget]])]
        if forget.size:  # slots not indexed yet are rebuilt from their tables when labels next arrive
            forget_slot = slots[labels_group[forget]]
            self._index.put(transaction_keys(forget_slot, labels[forget, LABEL_TRANSACTION_HASH]),
                            np.full(forget.size, ABSENT), forget_slot, self.store.generation[forget_slot])
        if remember.any():
            self._remember(slots, watermark, labels[remember][:, [LABEL_TIME, LABEL_TRANSACTION_HASH]],
                           labels_group[remember])
        # Rewrite only the label tables that lost rows.
        changed = np.zeros(slots.size, dtype=bool)
        changed[labels_group[fold]] = True
        kept = ~fold & changed[labels_group]
        renumber = np.cumsum(changed) - 1
        self.store.scatter("labels", slots[changed], labels[kept], renumber[labels_group[kept]])

    def _remember(self, slots: np.ndarray, watermark: np.ndarray, rows: np.ndarray, group: np.ndarray) -> None:
        """Append folded legitimate labels to the seen tables. A full table first drops the labels no longer
        retained and then gets room for as many rows again as it keeps, so the cost per label stays O(1)."""
        table = self.store.tables["seen"]
        added = np.bincount(group, minlength=slots.size)
        full = table.length[slots] + added > table.capacity[slots]
        if full.any():
            full_slots = full.nonzero()[0]
            old, old_group = table.gather(slots[full_slots])
            self.work["seen_rows_rewritten"] += len(old)
            live = old[:, SEEN_TIME] > watermark[full_slots][old_group] - self._dedup_horizon_us()
            kept = np.bincount(old_group[live], minlength=full_slots.size)
            table.scatter(slots[full_slots], old[live], old_group[live], reserve=2 * (kept + added[full]))
        table.append(slots, rows, group)
