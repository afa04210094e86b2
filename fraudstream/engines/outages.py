"""Outages of the services an engine needs (PostgreSQL, Kafka) are ridden out, never fatal.

An engine that loses a dependency waits for it with capped exponential back-off, logs the outage when it
starts, once per interval while it lasts and when it ends (never once per retry), and exports it as
metrics (``fraudstream_dependency_up``, ``fraudstream_dependency_outages_total``). Nothing is committed
meanwhile, so no offset ever gets ahead of the rows it covers.

The database connection is replaced after it is lost, and the engine is told (``reconnected``): a
transaction the server acknowledged may still be lost in a crash (the engine commits without waiting
for the WAL flush), so after a reconnection only the database's own checkpoints say where each partition
stands.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from fraudstream.engines.exceptions import BatchAbandoned
from fraudstream.metrics import EngineMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")

POSTGRES = "postgres"
KAFKA = "kafka"


@dataclass(frozen=True)
class Backoff:
    """Waits between retries: doubling from ``initial_s`` up to ``maximum_s``."""

    initial_s: float = 0.2
    maximum_s: float = 5.0

    def delay_s(self, attempt: int) -> float:
        return min(self.maximum_s, self.initial_s * 2 ** min(attempt, 30))


class Outage:
    """Whether one dependency is down; logs and counts each outage once, whichever thread sees it."""

    def __init__(self, dependency: str, metrics: EngineMetrics, log_interval_s: float = 10.0) -> None:
        self.dependency = dependency
        self.metrics = metrics
        self.log_interval_s = log_interval_s
        self.down = False
        self._since = 0.0
        self._logged_at = 0.0
        self._lock = threading.Lock()
        metrics.dependency_available(dependency)

    def failed(self, reason: object) -> None:
        """A call to the dependency failed: starts an outage, or logs that it goes on (once per interval)."""
        now = time.monotonic()
        with self._lock:
            if not self.down:
                self.down, self._since, self._logged_at = True, now, now
                self.metrics.dependency_lost(self.dependency)
                log.warning("dependency unavailable dependency=%s action=retrying_with_backoff reason=%r",
                            self.dependency, str(reason))
            elif now - self._logged_at >= self.log_interval_s:
                self._logged_at = now
                log.warning("dependency still unavailable dependency=%s for_s=%.0f reason=%r",
                            self.dependency, now - self._since, str(reason))

    def recovered(self) -> None:
        """A call to the dependency succeeded: ends the outage, if there was one."""
        if not self.down:
            return
        with self._lock:
            if not self.down:
                return
            self.down = False
            outage_s = time.monotonic() - self._since
            self.metrics.dependency_available(self.dependency, outage_s)
            log.warning("dependency available again dependency=%s outage_s=%.1f", self.dependency, outage_s)


class EngineDatabase:
    """The engine's PostgreSQL connection, replaced after an outage.

    The first connection fails fast (a wrong URL or a database not started is a set-up error to report);
    a connection lost later is waited for. ``reconnected`` is set whenever a new connection replaced a
    lost one, for the engine to re-read its checkpoints.
    """

    def __init__(self, url: str, outage: Outage, backoff: Backoff, stopping: Callable[[], bool]) -> None:
        self.url = url
        self.outage = outage
        self.backoff = backoff
        self.stopping = stopping
        self.connection = psycopg.connect(url, autocommit=True)
        self.reconnected = False

    @property
    def lost(self) -> bool:
        return self.connection.closed or self.connection.broken

    def run(self, operation: Callable[[psycopg.Connection], T]) -> T:
        """``operation`` on a live connection, retried until it succeeds. Only for operations that may run
        twice (reads, idempotent writes); a failed one must not have committed anything."""
        attempt = 0
        while True:
            try:
                if self.lost:
                    self.reconnect()
                result = operation(self.connection)
            except psycopg.OperationalError as error:
                self.failed(error, attempt)
                attempt += 1
                continue
            self.outage.recovered()
            return result

    def failed(self, error: psycopg.OperationalError, attempt: int) -> None:
        """Note a failure and wait before the next try; BatchAbandoned once the engine is stopping."""
        self.outage.failed(error)
        if self.stopping():
            raise BatchAbandoned(f"stopping during a PostgreSQL outage ({error}); nothing uncommitted is lost: "
                                 "the batch is replayed by the partition's next owner")
        time.sleep(self.backoff.delay_s(attempt))

    def reconnect(self) -> None:
        """Wait until a new connection works, then use it (``reconnected`` tells the engine)."""
        attempt = 0
        while True:
            try:
                connection = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            except psycopg.OperationalError as error:
                self.failed(error, attempt)
                attempt += 1
                continue
            if not self.connection.closed:
                self.connection.close()
            self.connection = connection
            self.reconnected = True
            self.outage.recovered()
            return

    def close(self) -> None:
        self.connection.close()
