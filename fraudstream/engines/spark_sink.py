"""The Spark engine's sink, run on the executors: score, write, alert, dead-letter one slice of a batch.

Each task of a micro-batch takes its slice of the stateful step's output and, with the local engine's
own pieces (``fraudstream.pipeline`` builds the rows, alerts and dead letters; ``fraudstream.store.writer``
upserts them), does:

1. Score the slice's valid transactions in one vectorized LightGBM call, with the model version the
   driver chose at this batch boundary (loaded once per executor process and version).
2. Produce the alerts and the dead letters and wait for every delivery.
3. In one database transaction, upsert the scored rows and the labels (ON CONFLICT DO NOTHING).
4. Return one row of counts to the driver.

A batch replayed after a crash writes nothing twice (idempotent upserts); alerts and dead letters are
at-least-once, keyed by transaction id / carrying their source offset, as in the local engine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg
from confluent_kafka import KafkaError, Message, Producer

from fraudstream import kafka, pipeline
from fraudstream.config import Settings
from fraudstream.engines.exceptions import SinkDeliveryFailed
from fraudstream.engines.spark_state import LABEL, REJECTED, TRANSACTION, features_of
from fraudstream.events import TRANSACTION_COLUMNS, Rejected, decode_labels
from fraudstream.scoring import Scorer
from fraudstream.store import writer

ENGINE = "spark"
#: The broker accepts 2 MB messages (dead letters keep the original bytes).
PRODUCER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024

#: Counts a task returns to the driver.
STATS_SCHEMA = "scored long, written long, dead_lettered long, alerted long, labels long"

# Per executor Python process (Spark reuses them across tasks): the open clients and loaded models.
_scorers: dict[tuple[str, str], Scorer] = {}
_connections: dict[str, psycopg.Connection] = {}
_producers: dict[str, Producer] = {}


def _scorer(models_dir: Path, version: str) -> Scorer:
    key = (str(models_dir), version)
    if key not in _scorers:
        _scorers.clear()
        _scorers[key] = Scorer.from_registry(models_dir, version)
    return _scorers[key]


def _connection(url: str) -> psycopg.Connection:
    connection = _connections.get(url)
    if connection is None or connection.closed:
        connection = _connections[url] = psycopg.connect(url, autocommit=True)
    return connection


def _producer(settings: Settings) -> Producer:
    if settings.kafka_bootstrap not in _producers:
        _producers[settings.kafka_bootstrap] = kafka.producer(
            settings, **{"message.max.bytes": PRODUCER_MAX_MESSAGE_BYTES})
    return _producers[settings.kafka_bootstrap]


@dataclass(frozen=True)
class SinkTask:
    """The mapInPandas function of one batch (pickled by Spark with these few plain fields)."""

    settings: Settings
    model_version: str
    ingested_at_us: int

    def __call__(self, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        parts = list(frames)
        if not parts:  # a slice with no records
            return
        frame = pd.concat(parts, ignore_index=True)
        kind = frame["kind"]
        rows = self._scored_rows(frame[kind == TRANSACTION])
        labels = decode_labels(frame.loc[kind == LABEL, "value"].tolist())[0]
        letters = self._dead_letters(frame[kind == REJECTED])
        alerts = pipeline.alert_messages(rows)
        self._produce(alerts, letters)
        connection = _connection(self.settings.database_url)
        with connection.transaction():
            written = writer.upsert_scored(connection, rows)
            writer.upsert_labels(connection, labels)
        yield pd.DataFrame({"scored": [len(rows)], "written": [written], "dead_lettered": [len(letters)],
                            "alerted": [len(alerts)], "labels": [len(labels)]})

    def _scored_rows(self, valid: pd.DataFrame) -> pd.DataFrame:
        if valid.empty:
            return pipeline.no_rows()
        scorer = _scorer(self.settings.models_dir, self.model_version)
        transactions = valid[[*TRANSACTION_COLUMNS, "kafka_partition", "kafka_offset"]].astype(
            {**TRANSACTION_COLUMNS, "kafka_partition": "int32", "kafka_offset": "int64"}).reset_index(drop=True)
        transactions["ingested_at_us"] = self.ingested_at_us
        features = features_of(valid)
        return pipeline.scored_rows(transactions, features, scorer.score(features), model_version=self.model_version,
                                    engine=ENGINE, scored_at_us=time.time_ns() // 1000,
                                    feature_columns=scorer.feature_names)

    def _dead_letters(self, rejected: pd.DataFrame) -> list[pipeline.DeadLetter]:
        letters: list[pipeline.DeadLetter] = []
        for topic, group in rejected.groupby("topic", sort=False):
            items = [Rejected(position, reason) for position, reason in enumerate(group["reason"])]
            letters += pipeline.dead_letters(group["key"].tolist(), group["value"].tolist(), items, topic=str(topic),
                                             partitions=group["kafka_partition"].tolist(),
                                             offsets=group["kafka_offset"].tolist(), engine=ENGINE)
        return letters

    def _produce(self, alerts: list[tuple[bytes, bytes]], letters: list[pipeline.DeadLetter]) -> None:
        """Alerts and dead letters acknowledged by the broker before the rows that cover them commit."""
        if not alerts and not letters:
            return
        producer = _producer(self.settings)
        errors: list[str] = []

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                errors.append(f"{message.topic()}: {error.str()}")

        for key, value in alerts:
            producer.produce(self.settings.alerts_topic, key=key, value=value, on_delivery=delivered)
        kafka.publish_dead_letters(producer, self.settings.dlq_topic, letters)
        remaining = producer.flush(30)
        if remaining or errors:
            raise SinkDeliveryFailed(f"{remaining} messages unacknowledged, {len(errors)} failed ({errors[:3]}); "
                                     f"check the broker at {self.settings.kafka_bootstrap}; Spark retries the task")
