"""Keeps the per-minute rollups of migration 005 current: ``monitoring_refresh()`` every few seconds."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refreshed:
    """Up to which write time the rollups hold the rows after one refresh, and what it cost."""

    written_to: datetime
    duration_s: float


def refresh_once(connection: psycopg.Connection) -> Refreshed:
    """One refresh in its own transaction."""
    started = time.perf_counter()
    with connection.transaction():
        # refreshed_from only: it is -infinity before the first refresh, which has no Python datetime
        (high,) = connection.execute("SELECT refreshed_to FROM monitoring_refresh()").fetchone()
    return Refreshed(high, time.perf_counter() - started)


def refresh_every(database_url: str, every_s: float, stop: threading.Event | None = None) -> None:
    """Refresh until ``stop`` is set (or forever); a failed refresh is logged and retried next time."""
    stop = stop or threading.Event()
    with psycopg.connect(database_url, autocommit=True) as connection:
        while not stop.is_set():
            try:
                done = refresh_once(connection)
                log.info("monitoring refresh written_to=%s duration_ms=%.1f", done.written_to.isoformat(),
                         done.duration_s * 1000)
            except psycopg.errors.UndefinedFunction:
                log.error("monitoring_refresh() missing: run `fraudstream db init` (migration 005)")
            except psycopg.Error as error:
                log.error("monitoring refresh failed reason=%r", str(error))
            stop.wait(every_s)
