"""Keyed state: one scalar record per key (columnar, indexed by slot) plus small per-key tables.

Accounts and merchants both use it. Tables are per key so a batch touches only the keys it contains
(cost grows with the batch, not with the population), and one key's state serializes on its own to
bytes for the Spark engine's per-group state. Everything is fixed-dtype NumPy: no pickle anywhere.
"""

from __future__ import annotations

import numpy as np

from fraudstream.features.exceptions import StateFormatError

_KEY_MAGIC = b"FSK1"
#: "Never": far enough from int64 limits that subtracting a window cannot overflow.
NO_TIME = -(2**62)
FAR_FUTURE = 2**62


class KeyedStore:
    """Scalars live in one structured array by slot; ``tables[name][slot]`` is an int64 matrix.

    Tables are plain ``(rows, columns)`` int64 so concatenating thousands of them is one memcpy
    (structured dtypes pay a per-array promotion check that dominated the batch cost).
    """

    def __init__(self, scalar_dtype: np.dtype, default: tuple, table_columns: dict[str, int]) -> None:
        self.scalar_dtype = np.dtype(scalar_dtype)
        self.default = np.array([default], dtype=self.scalar_dtype)[0]
        self.table_columns = dict(table_columns)
        self.index: dict[str, int] = {}
        self.keys: list[str | None] = []
        self.free: list[int] = []
        self.scalars = np.zeros(0, dtype=self.scalar_dtype)
        self.tables: dict[str, list[np.ndarray]] = {name: [] for name in self.table_columns}
        self._empty = {name: np.zeros((0, columns), dtype=np.int64) for name, columns in table_columns.items()}

    def __len__(self) -> int:
        return len(self.index)

    def slots(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, creating fresh state for keys not seen yet."""
        index = self.index
        slots = np.fromiter((index.get(key, -1) for key in keys), dtype=np.int64, count=len(keys))
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
            for name, table in self.tables.items():
                table.append(self._empty[name])
        self.index[key] = slot
        return slot

    def reset(self, slots: np.ndarray) -> None:
        """Forget everything about these keys (first event after a TTL, or new keys)."""
        self.scalars[slots] = self.default
        for name, table in self.tables.items():
            empty = self._empty[name]
            for slot in slots.tolist():
                table[slot] = empty

    def expire(self, slots: np.ndarray, first_time_us: np.ndarray, ttl_us: int) -> None:
        """Reset keys whose next event (``first_time_us``) comes more than the TTL after their last."""
        watermark = self.scalars["watermark_us"][slots]
        stale = (watermark > NO_TIME) & (first_time_us - watermark > ttl_us)
        if stale.any():
            self.reset(slots[stale])

    def evict_idle(self, clock_us: int, ttl_us: int) -> int:
        """Evict keys idle for longer than the TTL at this event-time clock; returns how many.

        Keys without any event yet (a merchant known only from labels, e.g. in a partition that has
        not seen it) are kept: their labels must wait for the key's first event, whenever the sweep
        runs, or features would depend on how the stream was cut into batches.
        """
        slots = self.live_slots()
        watermark = self.scalars["watermark_us"][slots]
        idle = slots[(watermark > NO_TIME) & (watermark < clock_us - ttl_us)]
        self.evict(idle)
        return int(idle.size)

    def evict(self, slots: np.ndarray) -> None:
        """Drop keys and recycle their slots."""
        for slot in slots.tolist():
            key = self.keys[slot]
            if key is None:
                continue
            del self.index[key]
            self.keys[slot] = None
            for name, table in self.tables.items():
                table[slot] = self._empty[name]
            self.free.append(slot)

    def live_slots(self) -> np.ndarray:
        return np.fromiter(self.index.values(), dtype=np.int64, count=len(self.index))

    def gather(self, name: str, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of table ``name`` for the slots, concatenated, and each row's position in ``slots``."""
        table = self.tables[name]
        parts = [*map(table.__getitem__, slots.tolist())]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        rows = np.concatenate(parts) if parts else self._empty[name]
        return rows, np.repeat(np.arange(slots.size), lengths)

    def scatter(self, name: str, slots: np.ndarray, rows: np.ndarray, group: np.ndarray) -> None:
        """Replace the table of every slot with its rows (``rows`` sorted by ``group``)."""
        bounds = np.searchsorted(group, np.arange(slots.size + 1)).tolist()
        table = self.tables[name]
        for slot, start, stop in zip(slots.tolist(), bounds[:-1], bounds[1:], strict=True):
            table[slot] = rows[start:stop].copy()  # a copy: a view would pin the whole batch array

    def nbytes(self) -> int:
        """Bytes held by live keys (scalar records plus table payloads; Python overhead excluded)."""
        payload = sum(table[slot].nbytes for table in self.tables.values() for slot in self.index.values())
        return len(self.index) * self.scalar_dtype.itemsize + payload

    # -- whole-store snapshot ------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Columnar arrays for np.savez: keys, scalar records, and each table with per-key lengths."""
        slots = np.sort(self.live_slots())
        arrays = {
            f"{prefix}.keys": np.array([self.keys[slot] for slot in slots], dtype=np.str_),
            f"{prefix}.scalars": self.scalars[slots],
        }
        for name in self.tables:
            rows, group = self.gather(name, slots)
            arrays[f"{prefix}.{name}"] = rows
            arrays[f"{prefix}.{name}.lengths"] = np.bincount(group, minlength=slots.size)
        return arrays

    def load_arrays(self, prefix: str, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of to_arrays on an empty store."""
        keys = arrays[f"{prefix}.keys"]
        slots = self.slots(keys.astype(object))
        self.scalars[slots] = self._check(arrays[f"{prefix}.scalars"], self.scalar_dtype)
        for name, columns in self.table_columns.items():
            rows = self._check(arrays[f"{prefix}.{name}"], np.dtype(np.int64))
            if rows.ndim != 2 or rows.shape[1] != columns:
                raise StateFormatError(f"snapshot table {prefix}.{name} has shape {rows.shape}")
            lengths = arrays[f"{prefix}.{name}.lengths"]
            self.scatter(name, slots, rows, np.repeat(np.arange(slots.size), lengths))

    # -- one key as bytes (Spark per-group state) ----------------------------------------------
    def dump_key(self, key: str) -> bytes:
        """One key's state: magic, scalar record, then each table as int64 length + raw rows."""
        slot = self.index[key]
        parts = [_KEY_MAGIC, self.scalars[slot : slot + 1].tobytes()]
        for name in self.table_columns:
            rows = self.tables[name][slot]
            parts += [np.int64(len(rows)).tobytes(), rows.tobytes()]
        return b"".join(parts)

    def load_key(self, key: str, blob: bytes) -> None:
        """Install one key's state from dump_key bytes (replacing what the store had)."""
        if blob[:4] != _KEY_MAGIC:
            raise StateFormatError("per-key state blob has an unknown format")
        offset = 4
        record = np.frombuffer(blob, dtype=self.scalar_dtype, count=1, offset=offset)
        offset += self.scalar_dtype.itemsize
        slot = int(self.slots(np.array([key], dtype=object))[0])
        self.scalars[slot] = record[0]
        for name, columns in self.table_columns.items():
            count = int(np.frombuffer(blob, dtype=np.int64, count=1, offset=offset)[0])
            offset += 8
            values = np.frombuffer(blob, dtype=np.int64, count=count * columns, offset=offset)
            self.tables[name][slot] = values.reshape(count, columns).copy()
            offset += count * columns * 8
        if offset != len(blob):
            raise StateFormatError("per-key state blob has trailing bytes")

    @staticmethod
    def _check(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
        if array.dtype != dtype:
            raise StateFormatError(f"snapshot column has dtype {array.dtype}, expected {dtype}")
        return array
