"""Waits end on lack of progress, not on an assumed rate: slow but steady work is waited for."""

from __future__ import annotations

import itertools
import time

import pytest

from fraudstream.progress import NoProgress, wait_for_count

pytestmark = pytest.mark.unit


def test_slow_steady_progress_is_waited_for_past_any_rate_based_deadline() -> None:
    counter = itertools.count()
    started = time.monotonic()
    # one unit per poll (every 10 ms): 1.5 s in all, three times the stall limit
    assert wait_for_count(lambda: next(counter), 150, stall_s=0.5, what="slow", interval_s=0.01) == 150
    assert time.monotonic() - started > 1.0


def test_a_stalled_count_ends_the_wait_with_the_count_reached() -> None:
    values = iter([1, 2, 3])
    started = time.monotonic()
    with pytest.raises(NoProgress, match=r"events scored: no progress for 0 s, stuck at 3 of 10") as raised:
        wait_for_count(lambda: next(values, 3), 10, stall_s=0.3, what="events scored", interval_s=0.01)
    assert raised.value.count == 3
    assert time.monotonic() - started < 2.0


def test_a_dead_worker_ends_the_wait_at_once() -> None:
    with pytest.raises(NoProgress, match="the worker stopped at 0 of 5"):
        wait_for_count(lambda: 0, 5, stall_s=60, what="rows", alive=lambda: False)
