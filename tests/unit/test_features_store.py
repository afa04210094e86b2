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
        # Every step, not just at the end: a key overwritten by a neighbour's rows is rewritten whole
        # a few steps later, which would hide the damage from a check at the end.
        for key, rows in expected.items():
            np.testing.assert_array_equal(store.rows("rows", key), rows, err_msg=f"{key} at step {step}")
    # Abandoned and evicted blocks are compacted away: memory stays within a factor of the peak.
    assert len(store.tables["rows"].data) <= 4 * (2 * peak + 40 * MIN_BLOCK_ROWS + 400)
    for key, rows in expected.items():
        np.testing.assert_array_equal(store.rows("rows", key), rows)
    gathered, group = store.gather("rows", store.slots(np.array(sorted(expected), dtype=object)))
    np.testing.assert_array_equal(gathered, np.concatenate([expected[key] for key in sorted(expected)]))
    assert np.all(np.diff(group) >= 0)


@pytest.mark.parametrize("emptied", ["shrunk", "reset", "evicted and reused"])
def test_a_block_rewritten_in_place_survives_a_compaction_in_the_same_scatter(emptied: str) -> None:
    """A key whose table shrank (a quiet night drops its events from the window), was reset (TTL) or
    whose slot was recycled keeps its big block; when it regrows within that block in the very scatter
    whose moves compact the arena, its new block must be sized for the new rows, not the old ones."""
    store = KeyedStore(SCALARS, (0,), {"rows": 1})
    slots = store.slots(np.array(["a", "b"], dtype=object))
    store.scatter("rows", slots, np.arange(23)[:, None], np.repeat([0, 1], [20, 3]))  # a: 40-row block
    if emptied == "shrunk":
        store.scatter("rows", slots[:1], np.array([[19]]), np.zeros(1, np.int64))
    elif emptied == "reset":
        store.reset(slots[:1])
    else:
        store.evict(slots[:1])
        assert store.slots(np.array(["a2"], dtype=object))[0] == slots[0]
    key = "a" if emptied != "evicted and reused" else "a2"
    arena = store.tables["rows"]
    big = len(arena.data)  # more than the arena has room for: the scatter compacts
    regrown = np.arange(100, 110)[:, None]
    assert len(regrown) <= arena.capacity[slots[0]]  # fits the old block: not moved itself
    both = store.slots(np.array([key, "c"], dtype=object))
    store.scatter("rows", both, np.r_[regrown, np.arange(big)[:, None]], np.repeat([0, 1], [10, big]))
    assert len(arena.data) > big
    np.testing.assert_array_equal(store.rows("rows", key), regrown)
    np.testing.assert_array_equal(store.rows("rows", "b"), np.arange(20, 23)[:, None])
    np.testing.assert_array_equal(store.rows("rows", "c"), np.arange(big)[:, None])
    assert np.all(arena.length <= arena.capacity)

