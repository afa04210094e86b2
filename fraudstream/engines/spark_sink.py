"""The Spark engine's writes, run on the executors by the stateful step for one Kafka partition's batch.

With the local engine's own pieces (``fraudstream.pipeline`` builds the rows, alerts and dead letters;
``fraudstream.store.writer`` upserts them), ``write`` does:

1. Score the valid transactions in one vectorized LightGBM call, with the model version the driver
   chose at this batch boundary (``BatchContext``; loaded once per executor Python process and version).
2. Produce the alerts and the dead letters and wait for every delivery.
3. In one database transaction, upsert the scored rows and the labels (ON CONFLICT DO NOTHING).
4. Return the counts.

A batch replayed after a crash writes nothing twice (idempotent upserts); alerts and dead letters are
at-least-once, keyed by transaction id / carrying their source offset, as in the local engine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg
from confluent_kafka import KafkaError, Message, Producer
from pyspark import SparkContext, TaskContext

from fraudstream import kafka, pipeline
from fraudstream.config import Settings
from fraudstream.engines.exceptions import SinkDeliveryFailed
from fraudstream.features import FeatureRows
from fraudstream.scoring import Scorer
from fraudstream.store import writer

ENGINE = "spark"
#: The broker accepts 2 MB messages (dead letters keep the original bytes).
PRODUCER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
#: Spark local properties through which the driver hands each batch's choices to its tasks.
MODEL_VERSION_PROPERTY = "fraudstream.model_version"
INGESTED_AT_PROPERTY = "fraudstream.ingested_at_us"

# Per executor Python process (Spark reuses them across tasks): the open clients and loaded models.
_scorers: dict[tuple[str, str], Scorer] = {}
#: (database url, model version) -> the order the database stores that version's features in.
_feature_orders: dict[tuple[str, str], tuple[str, ...]] = {}
_connections: dict[str, psycopg.Connection] = {}
_producers: dict[str, Producer] = {}


@dataclass(frozen=True)
class BatchContext:
    """What the driver decided for one micro-batch, the same for every task of it."""

    model_version: str
    ingested_at_us: int

    def publish(self, context: SparkContext) -> None:
        """Driver side, before the batch's action: every task of the batch's jobs sees these values."""
        context.setLocalProperty(MODEL_VERSION_PROPERTY, self.model_version)
        context.setLocalProperty(INGESTED_AT_PROPERTY, str(self.ingested_at_us))

    @classmethod
    def current(cls) -> BatchContext:
        """Executor side: the values the driver published for the running task's batch."""
        task = TaskContext.get()
        version = task.getLocalProperty(MODEL_VERSION_PROPERTY) if task else None
        ingested = task.getLocalProperty(INGESTED_AT_PROPERTY) if task else None
        if not version or not ingested:
            raise RuntimeError("the Spark task carries no model version: the stateful step runs only inside the "
                               "foreachBatch of fraudstream.engines.spark_job, which publishes it per batch")
        return cls(version, int(ingested))


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


def _feature_order(connection: psycopg.Connection, url: str, scorer: Scorer) -> tuple[str, ...]:
    """Registers the model version's feature names once per process (writer.feature_order)."""
    key = (url, scorer.model_version)
    if key not in _feature_orders:
        _feature_orders[key] = writer.feature_order(connection, scorer.model_version, scorer.feature_names)
    return _feature_orders[key]


def _producer(settings: Settings) -> Producer:
    if settings.kafka_bootstrap not in _producers:
        _producers[settings.kafka_bootstrap] = kafka.producer(
            settings, **{"message.max.bytes": PRODUCER_MAX_MESSAGE_BYTES})
    return _producers[settings.kafka_bootstrap]


def write(settings: Settings, batch: BatchContext, transactions: pd.DataFrame, features: FeatureRows,
          labels: pd.DataFrame, letters: list[pipeline.DeadLetter]) -> dict[str, int]:
    """Score, alert, dead-letter and upsert one partition's batch; the counts.

    ``transactions`` holds TRANSACTION_COLUMNS, kafka_partition and kafka_offset; ``features`` is the
    core's output aligned with it.
    """
    connection = _connection(settings.database_url)
    rows = _scored_rows(settings, connection, batch, transactions, features)
    alerts = pipeline.alert_messages(rows)
    _produce(settings, alerts, letters)
    written = 0
    if not rows.empty or not labels.empty:
        with connection.transaction():
            written = writer.upsert_scored(connection, rows)
            writer.upsert_labels(connection, labels)
    return {"scored": len(rows), "written": written, "dead_lettered": len(letters), "alerted": len(alerts),
            "labels": len(labels)}


def _scored_rows(settings: Settings, connection: psycopg.Connection, batch: BatchContext,
                 transactions: pd.DataFrame, features: FeatureRows) -> pd.DataFrame:
    if transactions.empty:
        return pipeline.no_rows()
    scorer = _scorer(settings.models_dir, batch.model_version)
    order = _feature_order(connection, settings.database_url, scorer)
    transactions["ingested_at_us"] = batch.ingested_at_us
    return pipeline.scored_rows(transactions, features, scorer.score_rows(features), model_version=batch.model_version,
                                engine=ENGINE, scored_at_us=time.time_ns() // 1000, feature_columns=order)


def _produce(settings: Settings, alerts: list[tuple[bytes, bytes]], letters: list[pipeline.DeadLetter]) -> None:
    """Alerts and dead letters acknowledged by the broker before the rows that cover them commit."""
    if not alerts and not letters:
        return
    producer = _producer(settings)
    errors: list[str] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(f"{message.topic()}: {error.str()}")

    for key, value in alerts:
        producer.produce(settings.alerts_topic, key=key, value=value, on_delivery=delivered)
    kafka.publish_dead_letters(producer, settings.dlq_topic, letters, on_delivery=delivered)
    remaining = producer.flush(30)
    if remaining or errors:
        raise SinkDeliveryFailed(f"{remaining} messages unacknowledged, {len(errors)} failed ({errors[:3]}); "
                                 f"check the broker at {settings.kafka_bootstrap}; Spark retries the task")
