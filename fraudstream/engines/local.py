"""The local engine: one Python process per consumer-group member, micro-batches, lowest latency.

Feature state is kept per partition of the transactions topic (accounts are keyed to partitions; the
owned partitions share one MultiPartitionFeatureState, so a batch is one feature call), and is
checkpointed in PostgreSQL together with the offsets, so that "exactly once in effect" holds across
``kill -9``: rows are upserted idempotently, the offsets are written in the same database transaction
as the rows, and a restored partition replays from its snapshot up to the committed offset, which
re-derives the same state without writing anything (only the alerts of its stored rows are sent again).
Alerts and dead letters are at-least-once (keyed by transaction id / carrying their source offset).

Commit protocol of one micro-batch; ``LocalEngine.process_batch`` (steps 1-6 and the hand-over) and
``LocalEngine._commit_batch`` (steps 7-9) follow these steps one to one:

1. Poll up to ``batch_size`` records or ``batch_timeout_ms`` from the assigned partitions. Records of
   a partition revoked meanwhile are dropped: its new owner replays them.
2. Reload the model if another version was promoted: a batch is scored by one model only.
3. Read the labels that arrived, and take the state snapshots due (before this batch moves the states,
   so that the last committed batch is always replayed after a crash: see step 8).
4-6. The batch step (``fraudstream.batch.BatchStep``, the same as the Spark job's): apply each label to
   every owned partition state that has not seen it (each state remembers its position in every label
   partition); decode and validate (invalid records become dead letters with their reason); run each
   partition's valid records through its own feature state, in offset order (one call for all
   partitions); records below the partition's committed offset are a replay after a restore: they
   update the state, nothing else; score the new records in one vectorized call; build the rows and
   the alerts. Then encode the rows' COPY payload, wait until the previous batch has finished step 9,
   and hand this one over: capture the offsets it reaches, and enqueue its dead letters in the sink.
7. ``sink.confirm_delivery``: every dead letter acknowledged, so they are durable before the offsets
   that cover them (a broker outage is waited out: the producer retries).
8. ``sink.write``, one database transaction: upsert the rows, upsert the labels, advance the offsets
   (they only grow, else OffsetRegression), write the captured snapshots; commit (without waiting for the
   WAL flush: a transaction lost in a PostgreSQL crash takes its offsets with it and is replayed). Then
   send the alerts of the rows *as stored* and confirm their delivery: after an engine crash, an alert
   never names a row that is stored with another decision or score (a PostgreSQL crash that loses the
   commit of rows whose alerts went out still can). A crash before they are acknowledged
   loses nothing: the restore replays from a snapshot taken before this batch, and the alerts of the
   replayed records' stored rows are sent again. While PostgreSQL is away this step retries with
   back-off (``outages.py``); when the connection was lost, the batch is abandoned once a new one works,
   and the polling thread rewinds every owned partition to the database's checkpoints, as a reassignment
   would (nothing committed beyond written rows).
9. Record the metrics; then (on the polling thread, when it collects the batch) mark the offsets
   committed and tell Kafka (informational only: lag tools read them).

Steps 7-9 of batch N run on a committer thread while steps 1-6 of batch N+1 run on the polling
thread (PostgreSQL works on the other core meanwhile): at most one batch is in flight, so batches
still commit in order, one database transaction each. A rebalance, a restore and ``close`` first wait
for the batch in flight, so a revoked partition's rows are committed before its new owner reads its
offset, and the database connection is never used by two threads at once.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from fraudstream import kafka
from fraudstream.batch import BatchOutput, BatchStep, ModelChoice, Records
from fraudstream.batch.sink import SinkWrite, Snapshot, Written
from fraudstream.config import Settings
from fraudstream.engines.consumed import as_records
from fraudstream.engines.exceptions import BatchAbandoned, MetricsPortUnavailable, OffsetRegression
from fraudstream.engines.labels import LabelFeed
from fraudstream.engines.models import ModelHolder
from fraudstream.engines.outages import KAFKA, POSTGRES, Backoff, EngineDatabase, Outage
from fraudstream.engines.restore import restore_state
from fraudstream.engines.sink import PostgresKafkaSink, check_topics
from fraudstream.features import FeatureState, StateFormatError
from fraudstream.features.columnar import Columns
from fraudstream.features.partitioned import MultiPartitionFeatureState
from fraudstream.metrics import EngineMetrics
from fraudstream.model.drift import DEFAULT_THRESHOLD, DriftWindow, drifted
from fraudstream.store import writer

log = logging.getLogger(__name__)

ENGINE = "local"
#: How often the drift (PSI per feature and of the score) goes to Prometheus.
DRIFT_EXPORT_S = 15.0
#: How long closing waits for unacknowledged alerts and dead letters during a broker outage (they belong to
#: batches whose partitions are replayed).
STOP_FLUSH_S = 1.0


@dataclass(frozen=True)
class EngineOptions:
    """How one member runs; the defaults suit the demo on one machine."""

    group: str = "fraudstream-local"
    instance_id: str | None = None
    #: Only binds on a backlog (caught up, a batch is what arrived in batch_timeout_ms): when it was chosen,
    #: on a 200k-event backlog 10,000 drained 18-28k events/s (median ~22k) against 18-21k at 5,000 (a
    #: batch's and its transaction's fixed costs amortized); 20,000 was no faster and made a catch-up batch
    #: longer. With one feature call per batch, 10,000 drains 24-30k events/s.
    batch_size: int = 10_000
    batch_timeout_ms: int = 50
    snapshot_interval_s: float = 10.0
    model_poll_interval_s: float = 1.0
    lag_interval_s: float = 5.0
    session_timeout_ms: int = 10_000
    #: Partitions this group never processed start at their end instead of their beginning.
    new_partitions_from_end: bool = False
    metrics_port: int | None = None
    #: Stop after this many new events (scored + dead-lettered) or seconds; None runs until a signal.
    max_events: int | None = None
    duration_s: float | None = None
    #: Retries while PostgreSQL or Kafka is away, and how often the outage is logged meanwhile.
    backoff: Backoff = field(default_factory=Backoff)
    outage_log_interval_s: float = 10.0


@dataclass
class PartitionProgress:
    """Where one owned partition stands in its topic (its feature state is in the engine's
    MultiPartitionFeatureState)."""

    partition: int
    #: Next offset whose rows are not yet durable; records below it are a replay.
    committed: int
    #: Next offset to process (after the last record seen).
    position: int
    label_offsets: dict[int, int]
    snapshot_offset: int | None
    snapshot_at: float = field(default_factory=time.monotonic)
    #: Where the consumer started it without a snapshot (the beginning, or the end for new live partitions).
    start_offset: int = OFFSET_BEGINNING


@dataclass
class RunSummary:
    """What one run of the engine did, for the command's last line and for tests."""

    batches: int = 0
    scored: int = 0
    dead_lettered: int = 0
    alerted: int = 0
    replayed: int = 0
    labels: int = 0
    model_versions: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """One poll's records of the owned partitions."""

    records: Records
    ingested_at_us: int
    started: float

    @classmethod
    def from_messages(cls, topic: str, messages: list[Message], owned: Sequence[int], started: float) -> Batch:
        """The records of the ``owned`` partitions (a partition revoked meanwhile is its new owner's)."""
        partitions = np.fromiter(map(Message.partition, messages), np.int32, len(messages))
        keep = np.isin(partitions, owned)
        if not keep.all():
            messages = [message for message, kept in zip(messages, keep.tolist(), strict=True) if kept]
        return cls(as_records(topic, messages), ingested_at_us=time.time_ns() // 1000, started=started)


class OwnedStates:
    """The batch step's view of the owned partitions' feature states: a label reaches each state that has
    not seen it yet (its position in every label partition travels in its snapshot)."""

    def __init__(self, features: MultiPartitionFeatureState, progress: dict[int, PartitionProgress]) -> None:
        self.features = features
        self.progress = progress

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features.feature_names

    def apply_labels(self, labels: pd.DataFrame, partitions: np.ndarray, offsets: np.ndarray) -> None:
        for state in self.progress.values():
            seen = np.array([state.label_offsets.get(int(p), 0) for p in partitions], dtype=np.int64)
            unseen = offsets >= seen
            if unseen.any():
                self.features.apply_labels(state.partition, labels[unseen].reset_index(drop=True))

    def process_columns(self, batch: Columns, partitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.features.process_columns(batch, partitions)


@dataclass
class HandedOver:
    """What steps 7-9 of one batch write, captured at the hand-over (the states move on meanwhile)."""

    batch: Batch
    output: BatchOutput
    #: Rows (COPY payload encoded on the polling thread: the committer thread is left only the I/O, as it
    #: shares a core with PostgreSQL), labels, the offsets reached and the snapshots due.
    write: SinkWrite
    #: Alerts sent, of the rows as stored (set by step 8).
    alerted: int = 0


class LocalEngine:
    """One consumer-group member of the local engine; composed of a label feed, a model holder,
    Kafka clients, a database connection and the metrics."""

    def __init__(self, settings: Settings, options: EngineOptions) -> None:
        self.settings = settings
        self.options = options
        self.topic = settings.transactions_topic
        self.states: dict[int, PartitionProgress] = {}
        self.summary = RunSummary()
        self.metrics = EngineMetrics(ENGINE)
        self.stopping = False
        check_topics(settings)
        self.database_outage = Outage(POSTGRES, self.metrics, options.outage_log_interval_s)
        self.kafka_outage = Outage(KAFKA, self.metrics, options.outage_log_interval_s)
        self.database = EngineDatabase(settings.database_url, self.database_outage, options.backoff,
                                       lambda: self.stopping)
        self.models = ModelHolder(settings.models_dir, options.model_poll_interval_s)
        self.config = self.models.feature_config
        self.features = MultiPartitionFeatureState(self.config)
        self.owned = OwnedStates(self.features, self.states)
        self.step = BatchStep(ENGINE, settings.event_time_future_tolerance_s)
        self.labels = LabelFeed(settings, options.group)
        self.sink = PostgresKafkaSink(settings, group=options.group, kafka_outage=self.kafka_outage,
                                      stopping=lambda: self.stopping, error_cb=self._kafka_error)
        self.consumer = self._new_consumer()
        #: Set by a fatal consumer error (e.g. a static member fenced after a broker restart): the consumer
        #: is replaced at the next batch boundary.
        self._consumer_failed: str | None = None
        self._lag_at = 0.0
        self._polled_at = 0.0
        self._idle = True
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._in_flight: Future[HandedOver] | None = None
        #: Set when a batch in flight was abandoned: the owned partitions must go back to the database's checkpoints.
        self._rewind_pending = False
        self._drift_at = 0.0
        self._drifted: set[str] = set()
        self._model = self._register_model()

    def _new_consumer(self) -> Consumer:
        """The group member's consumer. Small per-partition fetches make a backlogged batch mix partitions,
        so all progress evenly. Caught up, a fetch waits for 64 KB or fetch.wait.max.ms (20 ms, less than a
        batch timeout) instead of returning each producer request's few records, which costs the broker far
        less CPU per event at no latency cost (bench/bench_pipeline.py reports the broker's CPU)."""
        overrides: dict[str, Any] = {"session.timeout.ms": self.options.session_timeout_ms,
                                     "max.partition.fetch.bytes": 256 * 1024, "fetch.min.bytes": 64 * 1024,
                                     "error_cb": self._consumer_error}
        if self.options.instance_id:
            overrides["group.instance.id"] = self.options.instance_id
        return kafka.consumer(self.settings, self.options.group, **overrides)

    def _subscribe(self) -> None:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)

    def _replace_consumer(self) -> None:
        """After a fatal consumer error: a new member takes the partitions back, restoring them from the
        database as a restarted process would."""
        log.warning("kafka consumer replaced reason=%r", self._consumer_failed)
        self._consumer_failed = None
        self._collect()
        for partition in list(self.states):
            self.states.pop(partition)
            self.features.remove(partition)
        try:
            self.consumer.close()
        except KafkaException as error:
            log.info("failed consumer closed with error=%r", str(error))
        self.consumer = self._new_consumer()
        self._subscribe()

    def _register_model(self) -> ModelChoice:
        """Note the model in the metrics and the summary, with the order the database stores its features in."""
        scorer = self.models.scorer
        self.metrics.set_model(scorer.model_version)
        previous: ModelChoice | None = getattr(self, "_model", None)
        if previous is not None and previous.scorer is scorer:  # a shadow switch: the same model, its drift kept
            drift = previous.drift
        else:
            self.summary.model_versions.append(scorer.model_version)
            drift = DriftWindow.for_manifest(scorer.artifact.manifest, scorer.feature_names)
        return ModelChoice(scorer, self.database.run(lambda connection: writer.feature_order(
            connection, scorer.model_version, scorer.feature_names)), self.models.shadow, drift)

    def _export_drift(self, now: float) -> None:
        """PSI per feature and of the score to Prometheus every DRIFT_EXPORT_S; a line when the set of drifted
        ones changes (above DEFAULT_THRESHOLD), and then the model is marked for retraining in the registry."""
        drift = self._model.drift
        if drift is None or now - self._drift_at < DRIFT_EXPORT_S:
            return
        self._drift_at = now
        values = drift.psi()
        self.metrics.set_drift(values)
        over = drifted(values, DEFAULT_THRESHOLD)
        if set(over) != self._drifted:
            self._drifted = set(over)
            if over:
                version = self._model.scorer.model_version
                shown = {name: round(value, 3) for name, value in sorted(over.items())}
                log.warning("drift above threshold model_version=%s threshold=%g psi=%s", version, DEFAULT_THRESHOLD,
                            shown)
                try:  # the scheduled retrain (fraudstream retrain --every) runs early
                    self.models.registry.request_retrain(version, f"drift above PSI {DEFAULT_THRESHOLD:g}: {shown}")
                except OSError as error:
                    log.warning("retraining not requested reason=%r", str(error))
            else:
                log.info("drift back below threshold model_version=%s", self._model.scorer.model_version)

    # --- partition ownership -------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Restore each partition's snapshot and seek to it (or to the beginning without one)."""
        self._collect()
        if {p.partition for p in partitions} >= set(self.states):  # every owned partition is restored below
            self._rewind_pending = self.database.reconnected = False
        for assigned in partitions:
            state, features = self._restore(assigned.partition)
            self.states[assigned.partition] = state
            self.features.add(assigned.partition, features)
            assigned.offset = state.start_offset = self._start_offset(state)
            log.info("partition assigned topic=%s partition=%d resume_offset=%s committed_offset=%d",
                     self.topic, assigned.partition, state.snapshot_offset, state.committed)
        consumer.assign(partitions)
        self.labels.rewind([state.label_offsets for state in self.states.values()])

    def _rewind(self) -> None:
        """Every owned partition back to its checkpoint in the database, after the database connection was
        lost: a commit it acknowledged may have been lost in a crash, and the batches in flight were not
        committed. Like a reassignment: restore the snapshot, replay from it (replays write nothing)."""
        if self.stopping:  # the process ends: the partitions' next owner starts from the checkpoints anyway
            return
        self._rewind_pending = self.database.reconnected = False
        for partition, previous in list(self.states.items()):
            state, features = self._restore(partition)
            state.start_offset = previous.start_offset
            self.states[partition] = state
            self.features.add(partition, features)
            offset = state.start_offset if state.snapshot_offset is None else state.snapshot_offset
            self.consumer.seek(TopicPartition(self.topic, partition, offset))
            log.info("partition rewound after a database outage topic=%s partition=%d resume_offset=%s "
                     "committed_offset=%d", self.topic, partition, state.snapshot_offset, state.committed)
        self.labels.rewind([state.label_offsets for state in self.states.values()])

    def _needs_rewind(self) -> bool:
        return self._rewind_pending or self.database.reconnected

    def _start_offset(self, state: PartitionProgress) -> int:
        """The snapshot's offset; without one, the beginning (to rebuild the state), except for a partition
        this group never touched when the options say to start at the end (the demo's live traffic)."""
        if state.snapshot_offset is not None:
            return state.snapshot_offset
        if state.committed == 0 and self.options.new_partitions_from_end:
            # The concrete end offset, resolved now: whatever is produced after the assignment is processed.
            return self.consumer.get_watermark_offsets(TopicPartition(self.topic, state.partition), timeout=10)[1]
        return OFFSET_BEGINNING

    def _restore(self, partition: int) -> tuple[PartitionProgress, FeatureState]:
        checkpoint = self.database.run(lambda connection: writer.load_checkpoint(
            connection, self.options.group, self.topic, partition))
        committed = checkpoint.committed_offset or 0
        if checkpoint.snapshot_offset is not None and checkpoint.snapshot_offset > committed:
            raise OffsetRegression(f"partition {partition}: snapshot at offset {checkpoint.snapshot_offset} is "
                                   f"beyond the committed offset {committed}; engine_offsets was edited by hand?")
        if checkpoint.state is not None:
            try:
                features = restore_state(checkpoint.state, self.config,
                                         f"run the processor with another --group than {self.options.group}")
            except StateFormatError as error:  # unreadable: rebuilt from the topic (what Kafka still retains)
                log.error("snapshot refused partition=%d reason=%r action=replay_from_beginning", partition, str(error))
            else:
                return PartitionProgress(partition, committed, checkpoint.snapshot_offset or 0,
                                         checkpoint.label_offsets, checkpoint.snapshot_offset), features
        return PartitionProgress(partition, committed, 0, {}, None), FeatureState(self.config)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Drop the states once the batch in flight is committed: everything they produced is then durable."""
        self._collect()
        for revoked in partitions:
            self.states.pop(revoked.partition, None)
            self.features.remove(revoked.partition)
            log.info("partition revoked topic=%s partition=%d", self.topic, revoked.partition)

    # --- the commit protocol ---------------------------------------------------------------------------

    def process_batch(self) -> int:
        """Steps 1-6 of the commit protocol (module docstring), then the hand-over of steps 7-9 to the
        committer thread; returns the new events handled."""
        started = time.perf_counter()
        # 1. Poll, keeping only records of partitions still owned.
        if self._consumer_failed is not None:
            self._replace_consumer()
        polled = self._poll(started)
        if self._needs_rewind():
            self._rewind()  # what was polled lies beyond the checkpoints: it comes again
            return 0
        messages = [message for message in polled if message.error() is None]
        if len(messages) < len(polled):
            self._log_errors(polled)
        batch = Batch.from_messages(self.topic, messages, list(self.states), started)
        # 2. Reload the model at this boundary if another version was promoted (or put in shadow).
        if self.models.refresh():
            self._collect()  # the committer thread's connection is free again
            self._model = self._register_model()
        # 3. The labels that arrived.
        labels = self.labels.poll()
        # 4-6. The batch step: labels to the states that have not seen them, decode, features (replays
        # included), score the new records; rows, alerts, dead letters.
        records = batch.records
        # The snapshots due are taken before the batch moves the states: so the last committed batch is
        # always replayed after a crash, and the alerts of its stored rows are sent again (the sink's step 3).
        snapshots = self._due_snapshots()
        output = self.step.run(records, labels, self.owned, self._model, ingested_at_us=batch.ingested_at_us,
                               committed=self._committed_offsets(records.partitions))
        self.labels.advance(self.states.values(), labels)
        self._export_drift(started)
        self.summary.replayed += output.replayed
        encoded = writer.encode_scored(output.rows) if len(output.rows) else b""
        # Hand over to the committer once the previous batch is done.
        self._collect()
        if self._needs_rewind():
            self._rewind()  # this batch was computed from states that are now replaced: it comes again
            return 0
        self._advance_positions(records)
        write = SinkWrite(encoded, len(output.rows), output.labels, self._advancing(), snapshots, output.alerts,
                          output.rows["transaction_id"].to_numpy(), output.replayed_ids)
        if not (write.is_empty and output.is_empty):
            self.sink.send((), output.letters)
            self.metrics.observe_dead_letters(letter[2] for letter in output.letters)
            self._in_flight = self._committer.submit(self._commit_batch, HandedOver(batch, output, write))
        return len(output.rows) + output.rejected

    def _poll(self, started: float) -> list[Message]:
        """Up to batch_size records, waiting at most until batch_timeout_ms after the previous poll began
        (not ended): under load the wait shrinks to nothing and batches grow with the backlog; caught up,
        batches are one timeout apart, which keeps latency low without spinning on per-batch fixed costs."""
        timeout_s = self.options.batch_timeout_ms / 1000
        wait_s = timeout_s if self._idle else max(0.0, self._polled_at + timeout_s - started)
        self._polled_at = started
        polled = self.consumer.consume(self.options.batch_size, wait_s)
        self._idle = not polled
        return polled

    def _log_errors(self, messages: list[Message]) -> None:
        for message in messages:
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error code=%s reason=%r", error.code(), error.str())
                self._consumer_error(error)

    def _committed_offsets(self, partitions: np.ndarray) -> np.ndarray:
        """Each record's partition's committed offset (one lookup per partition, not per record)."""
        committed = np.zeros(partitions.size, dtype=np.int64)
        for partition in np.unique(partitions).tolist():
            committed[partitions == partition] = self.states[partition].committed
        return committed

    def _advance_positions(self, records: Records) -> None:
        for partition in np.unique(records.partitions):
            state = self.states[int(partition)]
            state.position = max(state.position, int(records.offsets[records.partitions == partition].max()) + 1)

    def _advancing(self) -> dict[int, int]:
        return {p: s.position for p, s in self.states.items() if s.position > s.committed}

    def _due_snapshots(self) -> list[Snapshot]:
        """At most one snapshot per batch (the stalest): spreads their cost instead of stalling every interval."""
        due = sorted((s for s in self.states.values() if s.position >= s.committed and self._snapshot_due(s)),
                     key=lambda s: (s.snapshot_offset is not None, s.snapshot_at))[:1]
        return [Snapshot(s.partition, s.position, self.features.snapshot(s.partition), dict(s.label_offsets))
                for s in due]

    def _snapshot_due(self, state: PartitionProgress) -> bool:
        if state.position == (state.snapshot_offset or 0):
            return False
        return (state.snapshot_offset is None
                or time.monotonic() - state.snapshot_at >= self.options.snapshot_interval_s)

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() == KafkaError._FATAL:  # as a message's error, the flag is not set
            self._consumer_failed = error.str()
        self._kafka_error(error)

    def _kafka_error(self, error: KafkaError) -> None:
        """librdkafka's client-level errors: losing every broker is an outage (the clients reconnect by
        themselves); a single connection closing is routine."""
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.kafka_outage.failed(error.str())
        elif error.code() != KafkaError._TRANSPORT:
            log.warning("kafka client error code=%s reason=%r", error.name(), error.str())

    # --- steps 7-9, on the committer thread ----------------------------------------------------------

    def _commit_batch(self, handed: HandedOver) -> HandedOver:
        # 7. Dead letters durable in Kafka before the offsets that cover them (waiting out a broker outage: the
        #    producer keeps them and retries until message.timeout.ms).
        self.sink.confirm_delivery()
        # 8. Rows, labels, offsets and the captured snapshots in one database transaction; then the alerts of
        #    the rows as stored, delivery confirmed.
        if not handed.write.is_empty:
            alerts = self._write_through_outages(handed.write).alerts
            if alerts:
                self.sink.send(alerts, ())
                self.sink.confirm_delivery()
            handed.alerted = len(alerts)
        # 9. Metrics (the offsets are marked committed when the polling thread collects the batch).
        self._record(handed, committed_at_us=time.time_ns() // 1000)
        return handed

    def _write_through_outages(self, write: SinkWrite) -> Written:
        """Step 8, retried while PostgreSQL is away. A failure on a live connection (disk full, a server
        starting up) rolled back: the same batch is written again. A lost connection may have lost commits
        acknowledged before it (no WAL flush wait): once a new connection works, the batch is abandoned and
        the polling thread rewinds every partition to the database's checkpoints."""
        attempt = 0
        while True:
            try:
                written = self.sink.write(self.database.connection, write)
            except psycopg.OperationalError as error:
                if self.database.lost:
                    self.database_outage.failed(error)
                    self.database.reconnect()
                    raise BatchAbandoned("the database connection was lost during a commit; the partitions "
                                         "resume from the database's checkpoints") from None
                self.database.failed(error, attempt)
                attempt += 1
                continue
            self.database_outage.recovered()
            return written

    def _record(self, handed: HandedOver, committed_at_us: int) -> None:
        rows, dead_lettered = handed.output.rows, handed.output.rejected
        if rows.empty and not dead_lettered:
            return
        duration_s = time.perf_counter() - handed.batch.started
        self.metrics.observe_batch(duration_s=duration_s, committed_at_us=committed_at_us,
                                   event_time_us=rows["event_time_us"].to_numpy(),
                                   ingested_at_us=rows["ingested_at_us"].to_numpy(),
                                   decisions=rows["decision"].value_counts().to_dict(), dead_lettered=dead_lettered,
                                   produced_at_us=handed.output.produced_at_us)
        log.debug("batch committed records=%d scored=%d dead_lettered=%d alerts=%d labels=%d duration_ms=%.1f",
                  len(handed.batch.records), len(rows), dead_lettered, handed.alerted,
                  len(handed.output.labels), duration_s * 1000)

    # --- back on the polling thread ------------------------------------------------------------------

    def _collect(self) -> None:
        """Wait for the batch in flight (re-raising its failure) and mark what it made durable."""
        if self._in_flight is None:
            return
        in_flight, self._in_flight = self._in_flight, None
        try:
            handed = in_flight.result()
        except BatchAbandoned as abandoned:
            log.warning("batch abandoned reason=%r action=rewind_to_database_checkpoints", str(abandoned))
            self._rewind_pending = True
            return
        for partition, offset in handed.write.offsets.items():
            self.states[partition].committed = offset
        for snapshot in handed.write.snapshots:
            state = self.states[snapshot.partition]
            state.snapshot_offset, state.snapshot_at = snapshot.next_offset, time.monotonic()
        self._commit_kafka(handed.write.offsets)
        output, summary = handed.output, self.summary
        summary.batches += 1
        summary.scored += len(output.rows)
        summary.dead_lettered += output.rejected
        summary.alerted += handed.alerted
        summary.labels += len(output.labels)

    def _commit_kafka(self, advancing: Mapping[int, int]) -> None:
        offsets = [TopicPartition(self.topic, partition, offset) for partition, offset in advancing.items()]
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=True)

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < self.options.lag_interval_s:
            return
        self._lag_at = now
        if self.kafka_outage.down:
            self._probe_kafka()
        lag = {}
        for partition, state in list(self.states.items()):
            # cached: the high watermark comes with every fetch response, no broker round trip
            _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            if high >= 0:
                lag[partition] = max(0, high - state.position)
        self.metrics.set_lag(lag)
        self.metrics.set_label_lag(self.labels.lag())
        self.metrics.set_state_keys(len(self.features.accounts.store), len(self.features.merchants.store))

    def _probe_kafka(self) -> None:
        """During a broker outage, one metadata request: ends the outage once the broker answers, even when
        no traffic arrives to show it."""
        try:
            self.consumer.list_topics(self.topic, timeout=1)
        except KafkaException as error:
            self.kafka_outage.failed(error)
        else:
            self.kafka_outage.recovered()

    # --- running ---------------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Process until max_events, duration or SIGTERM/SIGINT; the current batch always completes."""
        options = self.options
        if options.metrics_port:
            try:
                self.metrics.serve(options.metrics_port)
            except OSError as error:
                raise MetricsPortUnavailable(f"cannot serve metrics on port {options.metrics_port} ({error}); "
                                             "pass another --metrics-port, or 0 to disable metrics") from None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        self._subscribe()
        log.info("engine started engine=%s group=%s instance=%s topic=%s model_version=%s",
                 ENGINE, options.group, options.instance_id, self.topic, self.models.version)
        deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
        handled = 0
        try:
            while not self.stopping:
                handled += self.process_batch()
                self._update_lag()
                if options.max_events is not None and handled >= options.max_events:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            self.close()
        summary = self.summary
        log.info("engine stopped batches=%d scored=%d dead_lettered=%d alerted=%d replayed=%d labels=%d",
                 summary.batches, summary.scored, summary.dead_lettered, summary.alerted, summary.replayed,
                 summary.labels)
        return summary

    def _stop(self, signum: int, _frame: object) -> None:
        log.info("stop requested signal=%s", signal.Signals(signum).name)
        self.stopping = True

    def close(self) -> None:
        """Finish the batch in flight (its failure propagates), then release every client. Stopping during a
        broker outage takes seconds, not the outage's length: the batch in flight is abandoned (it commits
        nothing; the partitions' next owner replays it) and unacknowledged messages are not waited for."""
        try:
            self._collect()
        finally:
            self._committer.shutdown()
            self.consumer.close()
            self.labels.close()
            self.sink.close(STOP_FLUSH_S if self.kafka_outage.down else 10.0)
            self.database.close()


def run_local_engine(settings: Settings, options: EngineOptions) -> RunSummary:
    """Run one member of the local engine until it is asked to stop."""
    return LocalEngine(settings, options).run()
