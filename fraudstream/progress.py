"""Waiting for work to finish, ended by lack of progress rather than by an assumed rate.

A busy machine processes more slowly, not never: a wait that gives up after a fixed time, or after a
time derived from an assumed events/s, fails there while the work is still progressing. These waits
give up only when the count has not grown for ``stall_s`` seconds, or when the worker died. The demo
and the tests use this one helper.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class NoProgress(RuntimeError):
    """The count stopped growing (or its worker died) before it reached the target."""

    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


def wait_for_count(read: Callable[[], int], target: int, *, stall_s: float, what: str,
                   alive: Callable[[], bool] | None = None, interval_s: float = 0.25) -> int:
    """Poll ``read()`` until it reaches ``target`` and return the count. Raises NoProgress when the count has
    not changed for ``stall_s`` seconds, or at once when ``alive()`` says the worker is gone; ``what`` names
    the count in the message (e.g. "events scored by the processor")."""
    count = read()
    changed_at = time.monotonic()
    while count < target:
        if alive is not None and not alive():
            raise NoProgress(f"{what}: the worker stopped at {count:,} of {target:,}", count)
        if time.monotonic() - changed_at > stall_s:
            raise NoProgress(f"{what}: no progress for {stall_s:.0f} s, stuck at {count:,} of {target:,}", count)
        time.sleep(interval_s)
        latest = read()
        if latest != count:
            count, changed_at = latest, time.monotonic()
    return count
