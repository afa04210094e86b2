"""The sink both engines write through: dead letters to Kafka with every delivery confirmed, then rows,
labels, offsets and state snapshots to PostgreSQL in one transaction, then the alerts of the rows as
stored, delivery confirmed (``fraudstream.batch.sink`` states the contract and the order). Also the check
that the topics an engine reads and writes exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from fraudstream import kafka
from fraudstream.batch.rows import DeadLetter, alert_messages
from fraudstream.batch.sink import SinkWrite, Written
from fraudstream.config import Settings
from fraudstream.engines.exceptions import BatchAbandoned, OffsetRegression, SinkDeliveryFailed, TopicMissing
from fraudstream.engines.outages import Outage
from fraudstream.features import FEATURE_CODE_VERSION
from fraudstream.store import writer

#: Kafka's produce limit for our messages: the broker accepts 2 MB (dead letters keep original bytes).
PRODUCER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
#: How often a delivery wait during a broker outage checks whether the engine is stopping.
STOP_CHECK_S = 0.5


def check_topics(settings: Settings) -> int:
    """Partitions of the transactions topic; TopicMissing when one of the engines' topics does not exist."""
    needed = [settings.transactions_topic, settings.labels_topic, settings.alerts_topic, settings.dlq_topic]
    found = kafka.describe_topics(settings, needed)
    missing = [name for name in needed if name not in found]
    if missing:
        raise TopicMissing(f"topics {', '.join(missing)} do not exist on {settings.kafka_bootstrap}; "
                           "create them with `fraudstream topics create`")
    return found[settings.transactions_topic]


class PostgresKafkaSink:
    """The PostgreSQL/Kafka sink. ``group``/``topic`` name whose offsets and snapshots ``write`` stores;
    ``kafka_outage`` (when given) makes ``confirm_delivery`` wait out a broker outage instead of failing."""

    def __init__(self, settings: Settings, *, group: str = "", kafka_outage: Outage | None = None,
                 stopping: Callable[[], bool] = lambda: False,
                 error_cb: Callable[[KafkaError], None] | None = None, flush_s: float = 5.0) -> None:
        self.settings = settings
        self.group = group
        self.topic = settings.transactions_topic
        self.kafka_outage = kafka_outage
        self.stopping = stopping
        self.flush_s = flush_s
        # Each batch's messages are flushed at once: lingering would only delay the commit.
        overrides: dict[str, Any] = {"message.max.bytes": PRODUCER_MAX_MESSAGE_BYTES, "linger.ms": 0}
        if error_cb is not None:
            overrides["error_cb"] = error_cb
        self.producer: Producer = kafka.producer(settings, **overrides)
        self._errors: list[str] = []

    def send(self, alerts: Sequence[tuple[bytes, bytes]], letters: Sequence[DeadLetter]) -> None:
        """Enqueue alerts (keyed by transaction id) and dead letters, each with a delivery report."""
        for key, value in alerts:
            kafka.produce(self.producer, self.settings.alerts_topic, value, key, on_delivery=self._delivered)
        kafka.publish_dead_letters(self.producer, self.settings.dlq_topic, list(letters), on_delivery=self._delivered)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error.str()}")

    def confirm_delivery(self) -> None:
        """Flush; SinkDeliveryFailed when a message was refused or is still unacknowledged. With a
        ``kafka_outage``, unacknowledged messages are waited for (the producer retries them), an outage
        declared after ``flush_s``, until the engine stops: then BatchAbandoned (within STOP_CHECK_S), the
        batch being replayed by its partitions' next owner. Without, the first flush decides."""
        if self.kafka_outage is None:
            remaining = self.producer.flush(self.flush_s)
        else:
            remaining = self._flush_until_stopped(self.kafka_outage)
        errors, self._errors = self._errors, []
        if remaining or errors:
            raise SinkDeliveryFailed(f"{remaining} messages unacknowledged, {len(errors)} failed ({errors[:3]}); "
                                     f"check the broker at {self.settings.kafka_bootstrap}; the batch is replayed")

    def _flush_until_stopped(self, outage: Outage) -> int:
        """Flush in STOP_CHECK_S slices until everything is acknowledged or refused; messages left."""
        started, waited = time.monotonic(), False
        remaining = self.producer.flush(STOP_CHECK_S)
        while remaining and not self._errors:
            if self.stopping():
                self._errors = []
                raise BatchAbandoned(f"stopping during a Kafka outage with {remaining} alerts and dead letters "
                                     "unacknowledged; the batch is replayed by its partitions' next owner")
            if time.monotonic() - started >= self.flush_s:
                waited = True
                outage.failed(f"{remaining} alerts and dead letters not acknowledged")
            remaining = self.producer.flush(STOP_CHECK_S)
        if waited and not remaining:
            outage.recovered()
        return remaining

    def write(self, connection: psycopg.Connection, batch: SinkWrite) -> Written:
        """Rows, labels, offsets and snapshots in one transaction (OffsetRegression, rolled back, when another
        member already wrote further); then the alerts of the rows as stored: read back only when some row
        already existed, and for the replayed records."""
        with connection.transaction():
            if batch.offsets:
                # No wait for the WAL flush: the offsets live in this same transaction, so a PostgreSQL crash
                # that loses it loses its offsets too, and the batch is replayed from Kafka. (Its alerts may
                # then have been sent already: only a database crash, not an engine's, can leave an alert
                # whose row is scored again. Waiting for the flush cost a third of the backlog throughput and
                # tripled p99 latency in bench_pipeline.) Rows whose offsets live elsewhere (Spark's
                # checkpoint) wait for it.
                connection.execute("SET LOCAL synchronous_commit = off")
            written = writer.write_scored(connection, batch.encoded_rows, batch.row_count)
            writer.upsert_labels(connection, batch.labels)
            stale = writer.advance_offsets(connection, self.group, self.topic, batch.offsets)
            if stale:
                raise OffsetRegression(f"partitions {stale} of {self.topic} already have a higher committed offset "
                                       f"in group {self.group}: another member wrote them; rolled back")
            for snapshot in batch.snapshots:
                if not writer.save_snapshot(connection, self.group, self.topic, snapshot.partition,
                                            next_offset=snapshot.next_offset, state=snapshot.state,
                                            feature_code_version=FEATURE_CODE_VERSION,
                                            label_offsets=snapshot.label_offsets):
                    raise OffsetRegression(f"partition {snapshot.partition}: a snapshot beyond offset "
                                           f"{snapshot.next_offset} exists; another member owns this partition; "
                                           "rolled back")
        alerts = list(batch.alerts)
        if written < batch.row_count:
            alerts = alert_messages(writer.flagged_rows(connection, batch.row_ids))
        if batch.replayed_ids:
            alerts += alert_messages(writer.flagged_rows(connection, batch.replayed_ids))
        return Written(written, alerts)

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.flush(timeout_s)
