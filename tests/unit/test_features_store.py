"""KeyedStore arenas: per-key tables survive moves, compaction, eviction and slot reuse."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.features.store import MIN_BLOCK_ROWS, KeyedStore

pytestmark = pytest.mark.unit
SCALARS = np.dtype([("watermark_us", "<i8")])


def test_tables_match_a_dict_of_arrays_through_growth_and_compaction() -> None:
    rng = np.random.default_rng(2)
    store = KeyedStore(SCALARS, (0,), {"rows": 2})
    expected: dict[str, np.ndarray] = {}
    peak = 0
    for step in range(300):
        keys = np.unique(rng.choice([f"k{i}" for i in range(40)], size=rng.integers(1, 12)))
        slots = store.slots(keys.astype(object))
        lengths = rng.integers(0, 3 * MIN_BLOCK_ROWS if step % 50 else 200, size=keys.size)
        rows = rng.integers(-(10**12), 10**12, size=(int(lengths.sum()), 2))
        store.scatter("rows", slots, rows, np.repeat(np.arange(keys.size), lengths))
        bounds = np.r_[0, np.cumsum(lengths)]
        for position, key in enumerate(keys):
            expected[key] = rows[bounds[position] : bounds[position + 1]]
        if step % 37 == 0:  # evict a few keys; their slots get reused by new keys
            gone = list(expected)[:3]
            store.evict(np.array([store.index[key] for key in gone]))
            for key in gone:
                del expected[key]
        peak = max(peak, sum(len(rows) for rows in expected.values()))
    # Abandoned and evicted blocks are compacted away: memory stays within a factor of the peak.
    assert len(store.tables["rows"].data) <= 4 * (2 * peak + 40 * MIN_BLOCK_ROWS + 400)
    for key, rows in expected.items():
        np.testing.assert_array_equal(store.rows("rows", key), rows)
    gathered, group = store.gather("rows", store.slots(np.array(sorted(expected), dtype=object)))
    np.testing.assert_array_equal(gathered, np.concatenate([expected[key] for key in sorted(expected)]))
    assert np.all(np.diff(group) >= 0)


def test_a_key_round_trips_through_bytes() -> None:
    store = KeyedStore(SCALARS, (0,), {"rows": 2, "other": 1})
    slots = store.slots(np.array(["a", "b"], dtype=object))
    store.scatter("rows", slots, np.arange(10).reshape(5, 2), np.array([0, 0, 1, 1, 1]))
    store.scalars["watermark_us"][slots] = [7, 9]
    copy = KeyedStore(SCALARS, (0,), {"rows": 2, "other": 1})
    copy.load_key("b", store.dump_key("b"))
    np.testing.assert_array_equal(copy.rows("rows", "b"), np.arange(4, 10).reshape(3, 2))
    assert copy.scalars["watermark_us"][copy.index["b"]] == 9 and len(copy.rows("other", "b")) == 0
