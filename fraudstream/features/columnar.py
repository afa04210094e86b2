"""Vectorized primitives over rows sorted by (group, time): windows, segments, hashing.

Every sum is over integers (cents, micro-degrees, counts), so a result depends only on the rows of
its own group, never on float rounding across groups or on how events were cut into batches. That is
what lets training replays, the local engine and the Spark engine, each cutting the stream
differently, agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd


def hash_values(values: object) -> np.ndarray:
    """Stable 64-bit hashes of strings (fixed SipHash key) as int64, so codes need no shared dictionary."""
    array = np.asarray(values, dtype=object)
    return pd.util.hash_array(array, categorize=False).view(np.int64)


#: A batch as plain arrays by column name: text as object arrays, times as int64 µs, numbers float64.
Columns = Mapping[str, np.ndarray]

_NUMBER_COLUMNS = {"event_time_us": np.int64, "amount": np.float64, "latitude": np.float64, "longitude": np.float64}


def batch_columns(batch: pd.DataFrame, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named columns of a frame as arrays, converted once per batch: the feature parts read them many
    times, and a DataFrame column lookup costs more than the arithmetic on a small batch."""
    return {name: batch[name].to_numpy(dtype=_NUMBER_COLUMNS.get(name, object)) for name in names}


def float_matrix(frame: pd.DataFrame, names: pd.Index) -> np.ndarray:
    """The named columns as a (rows, names) float64 matrix; KeyError names a missing one (reindex is
    cheaper than .loc on a small frame)."""
    missing = names.difference(frame.columns)
    if len(missing):
        raise KeyError(f"feature columns missing: {', '.join(map(str, missing[:5]))}")
    return frame.reindex(columns=names).to_numpy(dtype=np.float64)


def group_time_order(keys: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows ordered by (key, event time, arrival): (order, sorted group codes, sorted times, distinct keys).

    Arrival breaks ties so that equal timestamps keep the stream's order, in every engine.
    """
    group_raw, distinct = pd.factorize(keys)
    order = np.lexsort((np.arange(len(keys)), times, group_raw))
    return order, group_raw[order], times[order], distinct


def segment_starts(group: np.ndarray) -> np.ndarray:
    """Index of the first row of each run of equal values in a sorted array."""
    if group.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))


def run_start_flags(*keys: np.ndarray) -> np.ndarray:
    """True where any key differs from the previous row (rows sorted by the keys)."""
    size = keys[0].size
    flags = np.zeros(size, dtype=bool)
    if size:
        flags[0] = True
        for key in keys:
            flags[1:] |= key[1:] != key[:-1]
    return flags


def rank_in_segment(group: np.ndarray) -> np.ndarray:
    """0-based position of each row inside its run of equal ``group`` values (sorted)."""
    starts = segment_starts(group)
    lengths = np.diff(np.append(starts, group.size))
    return np.arange(group.size) - np.repeat(starts, lengths)


def rank_from_segment_end(group: np.ndarray) -> np.ndarray:
    """0 for the last row of each run, 1 for the one before, and so on."""
    starts = segment_starts(group)
    ends = np.append(starts[1:], group.size)
    lengths = ends - starts
    return np.repeat(ends, lengths) - 1 - np.arange(group.size)


def exclusive_segment_cumsum(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Sum of the earlier rows of the same group (integers: exact and batch-independent)."""
    total = np.cumsum(values) - values
    starts = segment_starts(group)
    lengths = np.diff(np.append(starts, group.size))
    return total - np.repeat(total[starts], lengths)


class SortedTimes:
    """Rows sorted by (group, time); finds, per query, the first row of a group after a bound.

    One searchsorted over the composite key ``group * width + offset``, where offset is the time
    relative to the earliest row; if that could overflow int64 (huge spans), times are replaced by
    their dense rank instead.
    """

    def __init__(self, group: np.ndarray, time: np.ndarray) -> None:
        self._origin = int(time.min()) - 1 if time.size else 0
        # Row offsets fall in [1, max - origin]; a bound past every row clips to max - origin + 1.
        width = int(time.max()) - self._origin + 2 if time.size else 2
        self._unique: np.ndarray | None = None
        if (int(group.max()) + 1 if group.size else 1) * width >= 2**62:
            self._unique = np.unique(time)
            width = self._unique.size + 1
        self._width = np.int64(width)
        self._key = group.astype(np.int64) * self._width + self._offset(time, "left")

    def _offset(self, time: np.ndarray, side: str) -> np.ndarray:
        """Order-preserving position of times in [0, width); 'right' puts a bound after equal times."""
        if self._unique is not None:
            return np.searchsorted(self._unique, time, side=side)  # type: ignore[call-overload]
        shift = 1 if side == "right" else 0
        return np.clip(time - self._origin + shift, 0, self._width - 1)

    def first_after(self, group: np.ndarray, bound: np.ndarray) -> np.ndarray:
        """Index of the first row of ``group`` with time > ``bound`` (its group's end if none)."""
        key = group.astype(np.int64) * self._width + self._offset(bound, "right")
        return np.searchsorted(self._key, key, side="left")


def merge_positions(upto: np.ndarray, stored: int) -> tuple[np.ndarray, np.ndarray]:
    """Merged positions of ``stored`` sorted rows and of sorted batch rows, without a sort.

    ``upto[i]`` is how many stored rows precede batch row i (nondecreasing, e.g. from
    SortedTimes.first_after: stored rows first on equal times). Returns (stored, batch) positions.
    """
    rows = np.arange(stored)
    return rows + np.searchsorted(upto, rows, "right"), upto + np.arange(upto.size)


def prefix(values: np.ndarray) -> np.ndarray:
    """Cumulative sum with a leading zero: sum of rows [a, b) is prefix[b] - prefix[a]."""
    return np.concatenate(([0], np.cumsum(values, dtype=np.int64)))


def retained(group: np.ndarray, time: np.ndarray, cutoff: np.ndarray, cap: int) -> np.ndarray:
    """Rows to keep of a (group, time)-sorted table: those after the per-row ``cutoff``, plus the one
    row just before them (so 'previous event' survives a quiet spell), at most ``cap`` per group."""
    inside = time > cutoff
    same_next = np.append(group[1:] == group[:-1], False)
    keep = inside | ~same_next | (same_next & np.append(inside[1:], False))
    kept = np.flatnonzero(keep)
    return kept[rank_from_segment_end(group[kept]) < cap]


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in kilometres between coordinates in degrees."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = np.radians(lon2 - lon1) / 2
    a = np.sin(half_dphi) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(half_dlambda) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
