"""The Spark engine's batch step and sink on the executors, for one Kafka partition's batch.

``process`` runs the batch step both engines share (``fraudstream.batch.BatchStep``) with the model
version the driver chose at this batch boundary (``BatchContext``), then writes through the sink both
engines share (``fraudstream.engines.sink.PostgresKafkaSink``): dead letters acknowledged by the broker,
rows and labels in one database transaction, then the alerts of the rows as stored, acknowledged. The
offsets and the feature state live in Spark's checkpoint, committed only after every task returned, so
the sink writes neither (a task that fails after the rows committed is retried: its alerts then come
from the stored rows).

A batch replayed after a crash writes nothing twice (idempotent upserts); alerts and dead letters are
at-least-once, keyed by transaction id / carrying their source offset, as in the local engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from pyspark import SparkContext, TaskContext

from fraudstream.batch import BatchStep, FeatureStates, ModelChoice, Records
from fraudstream.batch.scoring import Scorer
from fraudstream.batch.sink import SinkWrite, Written
from fraudstream.config import Settings
from fraudstream.engines.sink import PostgresKafkaSink
from fraudstream.store import writer

ENGINE = "spark"
#: Spark local properties through which the driver hands each batch's choices to its tasks.
MODEL_VERSION_PROPERTY = "fraudstream.model_version"
INGESTED_AT_PROPERTY = "fraudstream.ingested_at_us"
#: The challenger scored in shadow ("" without one).
SHADOW_VERSION_PROPERTY = "fraudstream.shadow_model_version"

# Per executor Python process (Spark reuses them across tasks): the open clients and loaded models.
_scorers: dict[tuple[str, str], Scorer] = {}
#: (database url, model version) -> the order the database stores that version's features in.
_feature_orders: dict[tuple[str, str], tuple[str, ...]] = {}
_connections: dict[str, psycopg.Connection] = {}
_sinks: dict[str, PostgresKafkaSink] = {}
_steps: dict[float, BatchStep] = {}


@dataclass(frozen=True)
class BatchContext:
    """What the driver decided for one micro-batch, the same for every task of it."""

    model_version: str
    ingested_at_us: int
    shadow_version: str | None = None

    def publish(self, context: SparkContext) -> None:
        """Driver side, before the batch's action: every task of the batch's jobs sees these values."""
        context.setLocalProperty(MODEL_VERSION_PROPERTY, self.model_version)
        context.setLocalProperty(INGESTED_AT_PROPERTY, str(self.ingested_at_us))
        context.setLocalProperty(SHADOW_VERSION_PROPERTY, self.shadow_version or "")

    @classmethod
    def current(cls) -> BatchContext:
        """Executor side: the values the driver published for the running task's batch."""
        task = TaskContext.get()
        version = task.getLocalProperty(MODEL_VERSION_PROPERTY) if task else None
        ingested = task.getLocalProperty(INGESTED_AT_PROPERTY) if task else None
        if not version or not ingested:
            raise RuntimeError("the Spark task carries no model version: the stateful step runs only inside the "
                               "foreachBatch of fraudstream.engines.spark_job, which publishes it per batch")
        shadow = task.getLocalProperty(SHADOW_VERSION_PROPERTY) if task else None
        return cls(version, int(ingested), shadow or None)


def _scorer(models_dir: Path, version: str, keep: tuple[str | None, ...] = ()) -> Scorer:
    """A loaded model; the cache keeps only this batch's models (production and shadow)."""
    key = (str(models_dir), version)
    if key not in _scorers:
        for old in [old for old in _scorers if old[1] not in (version, *keep)]:
            del _scorers[old]
        _scorers[key] = Scorer.from_registry(models_dir, version)
    return _scorers[key]


def _connection(url: str) -> psycopg.Connection:
    connection = _connections.get(url)
    if connection is None or connection.closed:
        connection = _connections[url] = psycopg.connect(url, autocommit=True)
    return connection


def _model(settings: Settings, connection: psycopg.Connection, batch: BatchContext) -> ModelChoice:
    """The batch's scorer, with its feature names registered once per process (writer.feature_order), and the
    shadow model's."""
    version = batch.model_version
    scorer = _scorer(settings.models_dir, version, (batch.shadow_version,))
    shadow = None if batch.shadow_version is None else _scorer(settings.models_dir, batch.shadow_version, (version,))
    key = (settings.database_url, version)
    if key not in _feature_orders:
        _feature_orders[key] = writer.feature_order(connection, version, scorer.feature_names)
    return ModelChoice(scorer, _feature_orders[key], shadow)


def _sink(settings: Settings) -> PostgresKafkaSink:
    """One sink per broker; a failed delivery fails the task, and Spark retries it."""
    if settings.kafka_bootstrap not in _sinks:
        _sinks[settings.kafka_bootstrap] = PostgresKafkaSink(settings, flush_s=30.0)
    return _sinks[settings.kafka_bootstrap]


def _step(settings: Settings) -> BatchStep:
    tolerance = settings.event_time_future_tolerance_s
    if tolerance not in _steps:
        _steps[tolerance] = BatchStep(ENGINE, tolerance)
    return _steps[tolerance]


def process(settings: Settings, batch: BatchContext, transactions: Records, labels: Records,
            states: FeatureStates, *, owns_labels: bool) -> dict[str, int]:
    """The batch step and the sink for one partition's records; the counts."""
    connection = _connection(settings.database_url)
    output = _step(settings).run(transactions, labels, states, _model(settings, connection, batch),
                                 ingested_at_us=batch.ingested_at_us, owns_labels=owns_labels)
    sink = _sink(settings)
    if output.letters:
        sink.send((), output.letters)
        sink.confirm_delivery()
    rows = output.rows
    write = SinkWrite(writer.encode_scored(rows) if len(rows) else b"", len(rows), output.labels,
                      alerts=output.alerts, row_ids=rows["transaction_id"].to_numpy())
    written = sink.write(connection, write) if not write.is_empty else Written(0, [])
    if written.alerts:
        sink.send(written.alerts, ())
        sink.confirm_delivery()
    return {"scored": len(rows), "written": written.rows, "dead_lettered": len(output.letters),
            "alerted": len(written.alerts), "labels": len(output.labels)}
