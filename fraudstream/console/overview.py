"""The live overview's one query loop per server process, shared by every browser watching it.

The loop runs only while someone subscribes; each round reads the aggregates once and hands the same
snapshot to every subscriber (a slow browser skips to the newest snapshot instead of queueing old ones).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from psycopg_pool import ConnectionPool

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.console import aggregates
from fraudstream.model.registry import Registry

log = logging.getLogger(__name__)


class OverviewReader:
    """One overview snapshot: the aggregates, the dead-letter count and the production model."""

    def __init__(self, settings: Settings, pool: ConnectionPool) -> None:
        self.settings = settings
        self.pool = pool
        self.registry = Registry(settings.models_dir)
        self._consumer: Consumer | None = None

    def dead_letters(self) -> int | None:
        """Messages ever written to the dead-letter topic (sum of its partitions' end offsets)."""
        topic = self.settings.dlq_topic
        try:
            if self._consumer is None:
                self._consumer = kafka.consumer(self.settings, "fraudstream-console-watermarks")
            partitions = self._consumer.list_topics(topic, timeout=2).topics[topic].partitions
            return sum(self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=2)[1]
                       for p in partitions)
        except (KafkaException, KeyError) as error:
            log.warning("overview: dead letters unavailable topic=%s error=%r", topic, str(error))
            return None

    def __call__(self) -> dict[str, Any]:
        with self.pool.connection() as connection:
            snapshot = aggregates.overview(connection)
        snapshot["dead_letters"] = self.dead_letters()
        snapshot["production_model"] = self.registry.production_version()
        return snapshot

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


class OverviewHub:
    """Runs ``read`` every ``interval_s`` while anyone listens and fans the result out."""

    def __init__(self, read: Callable[[], dict[str, Any]], interval_s: float) -> None:
        self.read = read
        self.interval_s = interval_s
        #: Rounds of the loop so far (each one query round, whatever the number of browsers).
        self.rounds = 0
        self.latest: bytes | None = None
        self._subscribers: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def _loop(self) -> None:
        while self._subscribers:
            try:
                snapshot = await asyncio.to_thread(self.read)
            except Exception as error:  # a database hiccup must not end the loop for everyone
                log.warning("overview refresh failed error=%r", str(error))
                snapshot = {"error": f"refresh failed: {error}"}
            self.rounds += 1
            self.latest = orjson.dumps(snapshot)
            for queue in self._subscribers:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(self.latest)
            await asyncio.sleep(self.interval_s)
        self._task = None

    async def subscribe(self) -> AsyncIterator[bytes]:
        """Snapshots as JSON bytes, the latest one first, until the caller stops iterating."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        if self.latest is not None:
            queue.put_nowait(self.latest)
        self._subscribers.add(queue)
        if self._task is None:
            self._task = asyncio.create_task(self._loop())
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)
