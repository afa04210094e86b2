"""Account-scoped features: velocity, amount profile, novelty, geography, time of day, account age.

Definitions (pinned by tests/unit/test_features_account.py):

- Processing order: events are handled per account in event-time order (ties: batch position).
  A feature of an event sees the account's events processed before it plus the event itself.
- ``account_transaction_count_<w>`` / ``account_amount_sum_<w>``: events with event time in the
  half-open window ``(t - w, t]``, the current one included. Events already processed with a later
  event time (a late arrival's successors) are not in its window.
- ``account_previous_transaction_count``, ``amount_to_account_mean_ratio``, ``amount_zscore``:
  over all earlier-processed transactions of the account (NaN ratio before the first, NaN z-score
  before the second; z divides by max(population std, 1 currency unit)).
- ``seconds_since_previous_transaction`` / ``speed_from_previous_kmh``: the previous event in event
  time (NaN for the first); speed divides by at least ``min_speed_interval_s``.
- ``is_new_<merchant|device|country|payment_method>``: 1 when no earlier (event-time) transaction
  of the account used that value; at most ``max_distinct_values`` most recently used values per kind
  are remembered, so a long-forgotten value counts as new again.
- ``distance_from_home_km``: home is the mean location of the account's first
  ``home_transactions`` transactions; NaN for the first transaction.
- ``hour_of_day`` / ``is_night`` (00:00-05:59) / ``is_weekend``: local solar time from longitude.
- ``account_age_days``: since the earliest event time seen for the account (0 for the first).
- ``is_late``: event time < account watermark - ``allowed_lateness_s``, where the watermark is the
  latest event time of the account's earlier batches. Late events are still scored; their windows
  use whatever history is retained.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraudstream.events.contract import CHANNELS, PAYMENT_METHODS
from fraudstream.features import columnar as col
from fraudstream.features.config import FeatureConfig, account_feature_names, window_label
from fraudstream.features.store import FAR_FUTURE, NO_TIME, KeyedStore
from fraudstream.timeunits import MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_SECOND

SCALARS = np.dtype(
    [
        ("watermark_us", "<i8"),
        ("first_seen_us", "<i8"),
        ("count", "<i8"),
        ("amount_cents_sum", "<i8"),
        ("amount_squared_sum", "<i8"),  # in 1/16 of a squared currency unit, so sums stay exact
        ("home_latitude_sum", "<i8"),  # micro-degrees
        ("home_longitude_sum", "<i8"),
        ("home_count", "<i8"),
    ]
)
DEFAULT = (NO_TIME, FAR_FUTURE, 0, 0, 0, 0, 0, 0)
#: Per-account tables (int64 matrices). history: retained events; seen: remembered values per kind.
HISTORY_TIME, HISTORY_CENTS, HISTORY_LATITUDE, HISTORY_LONGITUDE = range(4)
SEEN_KIND, SEEN_HASH, SEEN_FIRST, SEEN_LAST = range(4)
#: Novelty kinds, in the order of the is_new_* features.
NOVELTY_COLUMNS = ("merchant_id", "device_id", "country", "payment_method")
#: The batch columns account features read.
COLUMNS = ("event_time_us", "account_id", "amount", "latitude", "longitude", "channel", *NOVELTY_COLUMNS)
SQUARED_UNITS = 16.0


_CHANNELS = {name: float(code) for code, name in enumerate(CHANNELS)}
_PAYMENT_METHODS = {name: float(code) for code, name in enumerate(PAYMENT_METHODS)}


def _codes(values: np.ndarray, categories: dict[str, float]) -> np.ndarray:
    """Position in the published enumeration; NaN for a value outside it (or missing). Looks up the
    batch's few distinct values in a dict, not every row, and not through a pandas Index (slow per call)."""
    rows, distinct = pd.factorize(values)
    codes = np.array([*map(categories.get, distinct.tolist(), [np.nan] * len(distinct)), np.nan])
    return codes[rows]  # row code -1 (missing value) takes the trailing NaN


def _most_recent(group: np.ndarray, last: np.ndarray, cap: int) -> np.ndarray:
    """Rows to keep (in order): all of a group within the cap, else its ``cap`` most recently used
    (on equal last use, earlier rows win). Only rows of groups over the cap are ranked."""
    keep = np.bincount(group)[group] <= cap
    if not keep.all():
        over = np.flatnonzero(~keep)
        ranked = over[np.lexsort((over, -last[over], group[over]))]
        keep[ranked[col.rank_in_segment(group[ranked]) < cap]] = True
    return np.flatnonzero(keep)


class AccountFeatures:
    """Account state and the batch update; run it grouped by account or on mixed batches alike."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.names = account_feature_names(config)
        self.store = KeyedStore(SCALARS, DEFAULT, {"history": 4, "seen": 4})

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Features (self.names + is_late) for every row, in the batch's order; updates the state."""
        columns = col.batch_columns(batch, COLUMNS)
        return pd.DataFrame(self.columns(columns), index=batch.index, copy=False)

    def columns(self, batch: col.Columns) -> dict[str, np.ndarray]:
        """process() over arrays (col.batch_columns of COLUMNS), as a dict of arrays."""
        cfg = self.config
        n = len(batch["event_time_us"])
        order, g, t, accounts = col.group_time_order(batch["account_id"], batch["event_time_us"])
        cents = np.rint(batch["amount"][order] * 100).astype(np.int64)
        lat_e6 = np.rint(batch["latitude"][order] * 1e6).astype(np.int64)
        lon_e6 = np.rint(batch["longitude"][order] * 1e6).astype(np.int64)

        slots = self.store.slots(np.asarray(accounts, dtype=object))
        starts = col.segment_starts(g)
        ends = np.append(starts[1:], n)
        self.store.expire(slots, t[starts], cfg.account_ttl_s * MICROS_PER_SECOND)
        state = self.store.scalars[slots]

        out: dict[str, np.ndarray] = {"amount": cents / 100.0}
        history, history_group = self.store.gather("history", slots)
        merged = self._merge(history, history_group, g, t, cents, lat_e6, lon_e6)
        self._velocity(out, merged, g, t)
        rank = col.rank_in_segment(g)
        self._amount_profile(out, state, g, rank, cents)
        out.update(self._novelty(batch, order, slots, g, t))
        self._geography(out, merged, state, g, rank, t, lat_e6, lon_e6)
        self._calendar(out, state, g, t, starts, ends, lon_e6, batch, order)

        watermark = state["watermark_us"][g]
        late = (watermark > NO_TIME) & (t < watermark - cfg.allowed_lateness_s * MICROS_PER_SECOND)
        self._update(slots, state, merged, g, t, starts, ends, cents, lat_e6, lon_e6, rank)

        result = {}
        for name in self.names:
            column = np.empty(n, dtype=np.float64)
            column[order] = out[name]
            result[name] = column
        is_late = np.empty(n, dtype=bool)
        is_late[order] = late
        result["is_late"] = is_late
        return result

    @staticmethod
    def _merge(
        history: np.ndarray,
        history_group: np.ndarray,
        g: np.ndarray,
        t: np.ndarray,
        cents: np.ndarray,
        lat_e6: np.ndarray,
        lon_e6: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Retained history and the batch in one (account, time) order; history first on ties.

        Both are already sorted, so they are merged by position (searchsorted), not re-sorted."""
        upto = col.SortedTimes(history_group, history[:, HISTORY_TIME]).first_after(g, t)
        stored, batch = col.merge_positions(upto, len(history))
        merged = {}
        for name, old, new in (
            ("group", history_group, g),
            ("time", history[:, HISTORY_TIME], t),
            ("cents", history[:, HISTORY_CENTS], cents),
            ("lat_e6", history[:, HISTORY_LATITUDE], lat_e6),
            ("lon_e6", history[:, HISTORY_LONGITUDE], lon_e6),
        ):
            column = np.empty(len(history) + t.size, dtype=np.int64)
            column[stored], column[batch] = old, new
            merged[name] = column
        merged["batch_index"] = batch
        return merged

    def _velocity(
        self, out: dict[str, np.ndarray], merged: dict[str, np.ndarray], g: np.ndarray, t: np.ndarray
    ) -> None:
        index = merged["batch_index"]
        sorted_times = col.SortedTimes(merged["group"], merged["time"])
        amount_prefix = col.prefix(merged["cents"])
        for seconds in self.config.account_windows_s:
            start = sorted_times.first_after(g, t - seconds * MICROS_PER_SECOND)
            out[f"account_transaction_count_{window_label(seconds)}"] = (index + 1 - start).astype(np.float64)
            window_sum = amount_prefix[index + 1] - amount_prefix[start]
            out[f"account_amount_sum_{window_label(seconds)}"] = window_sum / 100.0

    @staticmethod
    def _amount_profile(
        out: dict[str, np.ndarray], state: np.ndarray, g: np.ndarray, rank: np.ndarray, cents: np.ndarray
    ) -> None:
        squared = np.rint((cents / 100.0) ** 2 * SQUARED_UNITS).astype(np.int64)
        count = state["count"][g] + rank
        total = state["amount_cents_sum"][g] + col.exclusive_segment_cumsum(cents, g)
        total_squared = state["amount_squared_sum"][g] + col.exclusive_segment_cumsum(squared, g)
        amount = cents / 100.0
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total / 100.0 / count
            variance = total_squared / SQUARED_UNITS / count - mean**2
            ratio = np.where((count >= 1) & (mean > 0), amount / mean, np.nan)
            zscore = (amount - mean) / np.maximum(np.sqrt(np.maximum(variance, 0.0)), 1.0)
        out["account_previous_transaction_count"] = count.astype(np.float64)
        out["amount_to_account_mean_ratio"] = ratio
        out["amount_zscore"] = np.where(count >= 2, zscore, np.nan)

    def _novelty(
        self, batch: col.Columns, order: np.ndarray, slots: np.ndarray, g: np.ndarray, t: np.ndarray
    ) -> dict[str, np.ndarray]:
        """is_new_* flags, and the remembered values updated (first/last use, capped per kind).

        A membership lookup of each (account, kind, value) in the remembered values, via hash
        tables (factorize), not a sort of them: remembered rows keep their order (first remembered
        first) and new values are appended to their account's table. Only an (account, kind) over
        ``max_distinct_values`` is ranked, to forget its least recently used values (on equal last
        use, the later-remembered one).
        """
        n, kinds = t.size, len(NOVELTY_COLUMNS)
        seen, seen_group = self.store.gather("seen", slots)
        stored = len(seen)
        hashes = [col.hash_values(batch[name][order]) for name in NOVELTY_COLUMNS]
        # One exact key per (account, kind, value): remembered rows, then (kind, batch row) rows.
        batch_group_kind = (g * kinds + np.arange(kinds)[:, None]).ravel()
        group_kind = np.concatenate((seen_group * kinds + seen[:, SEEN_KIND], batch_group_kind))
        values = np.concatenate((seen[:, SEEN_HASH], *hashes))
        value_code, unique_values = pd.factorize(values)
        code, keys = pd.factorize(group_kind * len(unique_values) + value_code)
        batch_code = code[stored:]  # remembered keys are unique, so their codes are 0..stored-1
        batch_time = np.tile(t, kinds)

        first = np.concatenate((seen[:, SEEN_FIRST], np.full(len(keys) - stored, FAR_FUTURE)))
        last = np.concatenate((seen[:, SEEN_LAST], np.full(len(keys) - stored, NO_TIME)))
        earliest_before = first[batch_code]
        # Rows per key are in (time, batch position) order, so its first row is its earliest use.
        first_row = np.zeros(batch_code.size, dtype=bool)
        first_row[np.unique(batch_code, return_index=True)[1]] = True
        is_new = (first_row & (batch_time < earliest_before)).reshape(kinds, n).astype(np.float64)
        np.minimum.at(first, batch_code, batch_time)
        np.maximum.at(last, batch_code, batch_time)

        # The updated table: remembered rows in place, new keys appended to their account's rows.
        key_group_kind = np.empty(len(keys), dtype=np.int64)
        key_group_kind[code] = group_kind
        key_hash = np.empty(len(keys), dtype=np.int64)
        key_hash[code] = values
        new_keys = np.arange(stored, len(keys))
        new_keys = new_keys[np.argsort(key_group_kind[new_keys] // kinds, kind="stable")]
        rows = np.empty(len(keys), dtype=np.int64)
        new_group = key_group_kind[new_keys] // kinds
        rows[new_keys] = np.searchsorted(seen_group, new_group, "right") + np.arange(new_keys.size)
        rows[:stored] = np.arange(stored) + np.searchsorted(new_group, seen_group, "left")
        table = np.empty((len(keys), 4), dtype=np.int64)
        table[rows] = np.column_stack((key_group_kind % kinds, key_hash, first, last))
        table_group_kind = np.empty(len(keys), dtype=np.int64)
        table_group_kind[rows] = key_group_kind
        kept = _most_recent(table_group_kind, table[:, SEEN_LAST], self.config.max_distinct_values)
        self.store.scatter("seen", slots, table[kept], table_group_kind[kept] // kinds)
        return {f"is_new_{name.removesuffix('_id')}": is_new[k] for k, name in enumerate(NOVELTY_COLUMNS)}

    def _geography(
        self,
        out: dict[str, np.ndarray],
        merged: dict[str, np.ndarray],
        state: np.ndarray,
        g: np.ndarray,
        rank: np.ndarray,
        t: np.ndarray,
        lat_e6: np.ndarray,
        lon_e6: np.ndarray,
    ) -> None:
        cfg = self.config
        index = merged["batch_index"]
        previous = np.maximum(index - 1, 0)
        has_previous = (index > 0) & (merged["group"][previous] == g)
        seconds = np.where(has_previous, (t - merged["time"][previous]) / MICROS_PER_SECOND, np.nan)
        lat, lon = lat_e6 / 1e6, lon_e6 / 1e6
        hop = col.haversine_km(merged["lat_e6"][previous] / 1e6, merged["lon_e6"][previous] / 1e6, lat, lon)
        out["seconds_since_previous_transaction"] = seconds
        out["speed_from_previous_kmh"] = np.where(
            has_previous, hop / np.maximum(seconds, cfg.min_speed_interval_s) * 3_600.0, np.nan
        )
        home_before = state["home_count"][g]
        contributes = home_before + rank < cfg.home_transactions
        home_count = np.minimum(home_before + rank, cfg.home_transactions)
        home_lat = state["home_latitude_sum"][g] + col.exclusive_segment_cumsum(np.where(contributes, lat_e6, 0), g)
        home_lon = state["home_longitude_sum"][g] + col.exclusive_segment_cumsum(np.where(contributes, lon_e6, 0), g)
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = col.haversine_km(home_lat / home_count / 1e6, home_lon / home_count / 1e6, lat, lon)
        out["distance_from_home_km"] = np.where(home_count > 0, distance, np.nan)

    @staticmethod
    def _calendar(
        out: dict[str, np.ndarray],
        state: np.ndarray,
        g: np.ndarray,
        t: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        lon_e6: np.ndarray,
        batch: col.Columns,
        order: np.ndarray,
    ) -> None:
        local_us = t + np.rint(lon_e6 / 15.0 * 3_600.0).astype(np.int64)  # lon_e6/1e6/15 h in µs
        hour = (local_us // MICROS_PER_HOUR) % 24
        weekday = (local_us // MICROS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        out["hour_of_day"] = hour.astype(np.float64)
        out["is_night"] = (hour < 6).astype(np.float64)
        out["is_weekend"] = (weekday >= 5).astype(np.float64)
        first_in_batch = np.repeat(t[starts], ends - starts)
        first_seen = np.minimum(state["first_seen_us"][g], first_in_batch)
        out["account_age_days"] = (t - first_seen) / MICROS_PER_DAY
        out["channel_code"] = _codes(batch["channel"][order], _CHANNELS)
        out["payment_method_code"] = _codes(batch["payment_method"][order], _PAYMENT_METHODS)

    def _update(
        self,
        slots: np.ndarray,
        state: np.ndarray,
        merged: dict[str, np.ndarray],
        g: np.ndarray,
        t: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        cents: np.ndarray,
        lat_e6: np.ndarray,
        lon_e6: np.ndarray,
        rank: np.ndarray,
    ) -> None:
        cfg = self.config
        squared = np.rint((cents / 100.0) ** 2 * SQUARED_UNITS).astype(np.int64)
        contributes = state["home_count"][g] + rank < cfg.home_transactions
        state["watermark_us"] = np.maximum(state["watermark_us"], t[ends - 1])
        state["first_seen_us"] = np.minimum(state["first_seen_us"], t[starts])
        state["count"] += ends - starts
        state["amount_cents_sum"] += np.add.reduceat(cents, starts)
        state["amount_squared_sum"] += np.add.reduceat(squared, starts)
        state["home_latitude_sum"] += np.add.reduceat(np.where(contributes, lat_e6, 0), starts)
        state["home_longitude_sum"] += np.add.reduceat(np.where(contributes, lon_e6, 0), starts)
        state["home_count"] = np.minimum(state["home_count"] + ends - starts, cfg.home_transactions)
        self.store.scalars[slots] = state

        horizon_us = (max(cfg.account_windows_s) + cfg.allowed_lateness_s) * MICROS_PER_SECOND
        group = merged["group"]
        keep = col.retained(group, merged["time"], state["watermark_us"][group] - horizon_us, cfg.max_history_events)
        rows = np.column_stack([merged[name][keep] for name in ("time", "cents", "lat_e6", "lon_e6")])
        self.store.scatter("history", slots, rows, group[keep])
