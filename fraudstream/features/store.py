"""Keyed state: one scalar record per key (columnar, indexed by slot) plus small per-key tables.

Accounts and merchants both use it. A batch touches only the keys it contains (cost grows with the
batch, not with the population): every table lives in one arena array where each key owns a block
of rows, so reading or rewriting the tables of a thousand keys is a few vectorized gathers and
scatters instead of a thousand small arrays. Everything is fixed-dtype NumPy: no pickle anywhere.
"""

from __future__ import annotations

import numpy as np

from fraudstream.features import columnar as col
from fraudstream.features.exceptions import StateFormatError

#: "Never": far enough from int64 limits that subtracting a window cannot overflow.
NO_TIME = -(2**62)
FAR_FUTURE = 2**62
#: Smallest block a key gets; blocks double when outgrown so a growing key moves O(log n) times.
MIN_BLOCK_ROWS = 4


class Arena:
    """One table of every key in one int64 array: slot ``s`` owns rows ``start[s] : start[s] + capacity[s]``
    and uses the first ``length[s]`` (``length <= capacity`` always). Outgrown blocks move to the end;
    when the array is full the live rows are compacted into a new one (see _compact)."""

    def __init__(self, columns: int) -> None:
        self.data = np.zeros((0, columns), dtype=np.int64)
        self.start = np.zeros(0, dtype=np.int64)
        self.length = np.zeros(0, dtype=np.int64)
        self.capacity = np.zeros(0, dtype=np.int64)
        self.end = 0

    def resize_slots(self, size: int) -> None:
        """Room for ``size`` slots (new slots own nothing yet)."""
        grown = size - self.start.size
        self.start, self.length, self.capacity = (np.r_[a, np.zeros(grown, np.int64)] for a in (
            self.start, self.length, self.capacity))

    def _rows(self, slots: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Arena row of each (slot, i < lengths) pair, slot by slot."""
        offsets = np.cumsum(lengths) - lengths
        return np.arange(int(lengths.sum())) + np.repeat(self.start[slots] - offsets, lengths)

    def gather(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = self.length[slots]
        return self.data[self._rows(slots, lengths)], np.repeat(np.arange(slots.size), lengths)

    def scatter(self, slots: np.ndarray, rows: np.ndarray, group: np.ndarray,
                reserve: np.ndarray | None = None) -> None:
        """Replace the rows of every (distinct) slot; a block that must move gets room for twice its rows,
        or for ``reserve`` rows per slot if that is more (room for appends to come)."""
        lengths = np.bincount(group, minlength=slots.size)
        wanted = lengths if reserve is None else np.maximum(lengths, reserve)
        move = wanted > self.capacity[slots]
        if move.any():
            blocks = np.maximum(np.maximum(2 * lengths[move], wanted[move]), MIN_BLOCK_ROWS)
            if self.end + int(blocks.sum()) <= len(self.data):
                self.start[slots[move]] = self.end + np.cumsum(blocks) - blocks
                self.capacity[slots[move]] = blocks
                self.end += int(blocks.sum())
            else:
                blocks = np.maximum(np.maximum(2 * lengths, wanted), MIN_BLOCK_ROWS)
                self._compact(slots, np.maximum(self.capacity[slots], blocks))
        self.length[slots] = lengths
        self.data[self._rows(slots, lengths)] = rows

    def append(self, slots: np.ndarray, rows: np.ndarray, group: np.ndarray) -> None:
        """Add rows after each (distinct) slot's own; only blocks that overflow are copied (to twice their
        new length), so appending costs the new rows, amortized."""
        added = np.bincount(group, minlength=slots.size)
        before = self.length[slots]
        overflow = before + added > self.capacity[slots]
        if overflow.any():
            moved = slots[overflow]
            old, old_group = self.gather(moved)
            self.scatter(moved, old, old_group, reserve=2 * (before + added)[overflow])
        order = np.argsort(group, kind="stable")
        rank = col.rank_in_segment(group[order])
        self.data[self.start[slots][group[order]] + before[group[order]] + rank] = rows[order]
        self.length[slots] = before + added

    def _compact(self, slots: np.ndarray, blocks: np.ndarray) -> None:
        """Move every live block into a fresh array: ``blocks`` rows for ``slots`` (their old rows are
        dropped, scatter rewrites them), twice the current length for every other key; abandoned and
        evicted blocks are dropped. The array gets as much room again at its end: amortized O(1) per
        row written, memory within a small factor of peak data.

        Sizing the scattered slots by what they are about to hold matters: a block sized by its old
        length would be overrun by the rows written next, into the block of the key after it."""
        kept_length = self.length.copy()
        kept_length[slots] = 0
        kept_slots = np.flatnonzero(kept_length)
        kept = self.data[self._rows(kept_slots, kept_length[kept_slots])]
        capacity = np.where(kept_length > 0, np.maximum(2 * kept_length, MIN_BLOCK_ROWS), 0)
        capacity[slots] = blocks
        self.capacity = capacity
        self.start = np.cumsum(self.capacity) - self.capacity
        self.end = int(self.capacity.sum())
        self.data = np.empty((2 * self.end, self.data.shape[1]), dtype=np.int64)
        self.data[self._rows(kept_slots, self.length[kept_slots])] = kept

    def nbytes(self, slots: np.ndarray) -> int:
        return int(self.length[slots].sum()) * self.data.shape[1] * self.data.itemsize


class KeyedStore:
    """Scalars live in one structured array by slot; each table in an Arena of int64 rows by slot."""

    def __init__(self, scalar_dtype: np.dtype, default: tuple, table_columns: dict[str, int]) -> None:
        self.scalar_dtype = np.dtype(scalar_dtype)
        self.default = np.array([default], dtype=self.scalar_dtype)[0]
        self.table_columns = dict(table_columns)
        self.index: dict[str, int] = {}
        self.keys: list[str | None] = []
        self.free: list[int] = []
        self.scalars = np.zeros(0, dtype=self.scalar_dtype)
        #: Bumped whenever a slot's tables are cleared or recycled: lets owners keep derived per-slot
        #: indexes (never snapshotted) and know when one no longer describes the slot's rows.
        self.generation = np.zeros(0, dtype=np.int64)
        self.tables = {name: Arena(columns) for name, columns in table_columns.items()}

    def __len__(self) -> int:
        return len(self.index)

    def slots(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, creating fresh state for keys not seen yet."""
        index = self.index
        slots = np.fromiter(map(index.get, keys, [-1] * len(keys)), dtype=np.int64, count=len(keys))
        missing = np.flatnonzero(slots < 0)
        if missing.size:
            for position in missing.tolist():
                slots[position] = self._create(str(keys[position]))
            self.reset(slots[missing])
        return slots

    def _create(self, key: str) -> int:
        if self.free:
            slot = self.free.pop()
            self.keys[slot] = key
        else:
            slot = len(self.keys)
            self.keys.append(key)
            if slot >= self.scalars.size:
                grown = np.empty(max(16, 2 * self.scalars.size), dtype=self.scalar_dtype)
                grown[: self.scalars.size] = self.scalars
                self.scalars = grown
                self.generation = np.r_[self.generation, np.zeros(grown.size - self.generation.size, np.int64)]
                for table in self.tables.values():
                    table.resize_slots(grown.size)
        self.index[key] = slot
        return slot

    def reset(self, slots: np.ndarray) -> None:
        """Forget everything about these keys (first event after a TTL, or new keys)."""
        self.scalars[slots] = self.default
        self.generation[slots] += 1
        for table in self.tables.values():
            table.length[slots] = 0

    def expire(self, slots: np.ndarray, first_time_us: np.ndarray, ttl_us: int) -> None:
        """Reset keys whose next event (``first_time_us``) comes more than the TTL after their last."""
        watermark = self.scalars["watermark_us"][slots]
        stale = (watermark > NO_TIME) & (first_time_us - watermark > ttl_us)
        if stale.any():
            self.reset(slots[stale])

    def evict_idle(self, clock_us: int, ttl_us: int, slots: np.ndarray | None = None) -> np.ndarray:
        """Evict keys (among ``slots``, default all) idle for longer than the TTL at this event-time clock;
        returns their slots.

        Keys without any event yet (a merchant known only from labels, e.g. in a partition that has
        not seen it) are kept: their labels must wait for the key's first event, whenever the sweep
        runs, or features would depend on how the stream was cut into batches.
        """
        slots = self.live_slots() if slots is None else slots
        watermark = self.scalars["watermark_us"][slots]
        idle = slots[(watermark > NO_TIME) & (watermark < clock_us - ttl_us)]
        self.evict(idle)
        return idle

    def evict(self, slots: np.ndarray) -> None:
        """Drop keys and recycle their slots (a recycled slot keeps its arena block)."""
        for slot in slots.tolist():
            key = self.keys[slot]
            if key is None:
                continue
            del self.index[key]
            self.keys[slot] = None
            self.free.append(slot)
        self.generation[slots] += 1
        for table in self.tables.values():
            table.length[slots] = 0

    def live_slots(self) -> np.ndarray:
        return np.fromiter(self.index.values(), dtype=np.int64, count=len(self.index))

    def gather(self, name: str, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of table ``name`` for the slots, concatenated, and each row's position in ``slots``."""
        return self.tables[name].gather(slots)

    def scatter(self, name: str, slots: np.ndarray, rows: np.ndarray, group: np.ndarray) -> None:
        """Replace the table of every (distinct) slot with its rows (``rows`` sorted by ``group``)."""
        self.tables[name].scatter(slots, rows, group)

    def rows(self, name: str, key: str) -> np.ndarray:
        """One key's table (a copy)."""
        return self.gather(name, np.array([self.index[key]]))[0]

    def nbytes(self) -> int:
        """Bytes held by live keys (scalar records plus table rows; arena slack and Python excluded)."""
        slots = self.live_slots()
        payload = sum(table.nbytes(slots) for table in self.tables.values())
        return len(self.index) * self.scalar_dtype.itemsize + payload

    # -- whole-store snapshot ------------------------------------------------------------------
    def to_arrays(self, prefix: str, slots: np.ndarray | None = None, *, key_start: int = 0) -> dict[str, np.ndarray]:
        """Columnar arrays for np.savez: keys, scalar records, and each table with per-key lengths; of the
        live ``slots`` only if given, each key written from character ``key_start`` on."""
        slots = np.sort(self.live_slots() if slots is None else slots)
        arrays = {
            f"{prefix}.keys": np.array([self.keys[slot][key_start:] for slot in slots.tolist()], dtype=np.str_),
            f"{prefix}.scalars": self.scalars[slots],
        }
        for name in self.tables:
            rows, group = self.gather(name, slots)
            arrays[f"{prefix}.{name}"] = rows
            arrays[f"{prefix}.{name}.lengths"] = np.bincount(group, minlength=slots.size)
        return arrays

    def load_arrays(self, prefix: str, arrays: dict[str, np.ndarray], *, key_prefix: str = "") -> None:
        """Inverse of to_arrays, for keys the store does not hold yet (each key read as ``key_prefix`` + key)."""
        keys = arrays[f"{prefix}.keys"].astype(object)
        slots = self.slots(key_prefix + keys if key_prefix else keys)
        self.scalars[slots] = self._check(arrays[f"{prefix}.scalars"], self.scalar_dtype)
        for name, columns in self.table_columns.items():
            rows = self._check(arrays[f"{prefix}.{name}"], np.dtype(np.int64))
            if rows.ndim != 2 or rows.shape[1] != columns:
                raise StateFormatError(f"snapshot table {prefix}.{name} has shape {rows.shape}")
            lengths = arrays[f"{prefix}.{name}.lengths"]
            self.generation[slots] += 1
            self.scatter(name, slots, rows, np.repeat(np.arange(slots.size), lengths))

    @staticmethod
    def _check(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
        if array.dtype != dtype:
            raise StateFormatError(f"snapshot column has dtype {array.dtype}, expected {dtype}")
        return array
