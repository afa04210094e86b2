"""A vectorized int64 -> int64 map for lookups by the batch: sorted arrays searched with np.searchsorted.

New keys arrive as a sorted run that is merged with the smallest levels while they are not much larger
(the logarithmic method), so levels shrink geometrically: a batch of b keys costs O(b log n) to look up
and O(log n) amortized per key written, never a re-sort of what is stored, and no Python loop per key.
Each entry also carries an owner (a store slot) and that owner's generation: entries of an older
generation count as absent, and a merge drops them together with those the caller's ``live`` test refuses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: An entry with this value is absent (smaller than any time a caller compares with).
ABSENT = np.iinfo(np.int64).min
#: A run is merged into the smallest level while that level holds at most this many times its entries.
MERGE_RATIO = 2

#: live(owner, generation, value) -> which entries to keep at a merge (a boolean array).
Live = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _empty() -> dict[str, np.ndarray]:
    return {name: np.zeros(0, dtype=np.int64) for name in ("key", "value", "owner", "generation")}


class KeyIndex:
    """Entries (key, value, owner, generation) in sorted levels, each key in one level only."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.levels: list[dict[str, np.ndarray]] = []  # sorted by key each, largest first

    def __len__(self) -> int:
        return sum(level["key"].size for level in self.levels)

    def _find(self, keys: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per level: (found mask, position) of each key."""
        found = []
        for level in self.levels:
            stored = level["key"]
            position = np.searchsorted(stored, keys)
            hit = position < stored.size
            hit[hit] = stored[position[hit]] == keys[hit]
            found.append((hit, position))
        return found

    def get(self, keys: np.ndarray, generation: np.ndarray) -> np.ndarray:
        """Value of each key, ABSENT if missing or stored under another generation than ``generation``."""
        values = np.full(keys.size, ABSENT, dtype=np.int64)
        for level, (hit, position) in zip(self.levels, self._find(keys), strict=True):
            at = position[hit]
            current = level["generation"][at] == generation[hit]
            values[np.flatnonzero(hit)[current]] = level["value"][at[current]]
        return values

    def put(self, keys: np.ndarray, values: np.ndarray, owner: np.ndarray, generation: np.ndarray) -> None:
        """Set entries (``keys`` distinct): existing ones are overwritten in place, the rest inserted."""
        fresh = np.ones(keys.size, dtype=bool)
        for level, (hit, position) in zip(self.levels, self._find(keys), strict=True):
            at = position[hit]
            level["value"][at], level["owner"][at], level["generation"][at] = values[hit], owner[hit], generation[hit]
            fresh &= ~hit
        if not fresh.any():
            return
        order = np.argsort(keys[fresh], kind="stable")
        run = {name: column[fresh][order] for name, column in
               (("key", keys), ("value", values), ("owner", owner), ("generation", generation))}
        while self.levels and self.levels[-1]["key"].size <= MERGE_RATIO * run["key"].size:
            run = self._merge(self.levels.pop(), run)
        self.levels.append(run)

    def _merge(self, *levels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One sorted level of these, without the entries that are no longer live."""
        merged = {name: np.concatenate([level[name] for level in levels]) for name in levels[0]}
        keep = (merged["value"] != ABSENT) & self.live(merged["owner"], merged["generation"], merged["value"])
        kept = np.flatnonzero(keep)
        order = kept[np.argsort(merged["key"][kept], kind="stable")]
        return {name: column[order] for name, column in merged.items()}

    def nbytes(self) -> int:
        return sum(column.nbytes for level in self.levels for column in level.values())
