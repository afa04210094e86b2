"""The Spark engine: a Structured Streaming job over the same core, scores and table as the local engine.

Plan of one micro-batch (the code below builds it in this order):

1. Kafka source (Spark's official connector, jars resolved ahead of time by deploy/maven/spark/pom.xml)
   reads the transactions and the labels topics from the offsets in the checkpoint.
2. Each record gets its grouping key: a transaction its Kafka partition's key; a label every partition's
   key (labels are global; feature state is per partition, as in the local engine). The keys are chosen
   so that each partition has its own shuffle partition (spark_state.state_keys).
3. foreachBatch: the driver picks the promoted model at this batch boundary and publishes it (with the
   batch's ingest time) as Spark local properties of the batch's tasks, then runs the batch's one job.
4. In that job, transformWithStateInPandas (fraudstream.engines.spark_state) does all the Python work of
   a partition in one task: the batch step both engines share (decode and validate, labels, the
   partition's FeatureState, its snapshot in the RocksDB state store, scoring, rows, alerts, dead letters)
   and the shared sink (fraudstream.engines.spark_sink); each task returns one row of counts to the driver.
5. Spark commits the batch in the checkpoint only after foreachBatch returned, so a crash replays
   the batch from the same offsets and state: the idempotent upsert makes the replay write nothing new.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter

from fraudstream import kafka
from fraudstream.config import Settings, get_settings
from fraudstream.engines.models import ModelHolder
from fraudstream.engines.sink import check_topics
from fraudstream.engines.spark_sink import BatchContext
from fraudstream.engines.spark_state import (
    COUNTS,
    KEY_COLUMN,
    OUTPUT_SCHEMA,
    TIMESTAMP_COLUMN,
    PartitionStepProcessor,
    state_keys,
)
from fraudstream.services import spark as spark_service

log = logging.getLogger(__name__)

STATE_STORE_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
LOCAL_CLUSTER_RESOURCES = {"spark.executor.memory": "512m", "spark.executor.cores": "1", "spark.cores.max": "2"}


@dataclass(frozen=True)
class JobOptions:
    """How the job runs; defaults suit the local standalone cluster."""

    #: Spark master URL; None keeps the one given by spark-submit (or spark-defaults.conf).
    master: str | None = None
    checkpoint: str = ""
    #: Most Kafka records per micro-batch (all topics together); bounds batch duration and memory.
    max_offsets_per_trigger: int = 50_000
    trigger_interval_s: float = 0.0
    #: Parallelism of the stateful step (tasks per batch), frozen into the checkpoint. 0 means
    #: default_shuffle_partitions: one task per executor core, at most one per transactions partition.
    shuffle_partitions: int = 0
    #: Executor resources; None keeps what spark-submit (or spark-defaults.conf) gives, or, on a master
    #: named here, LOCAL_CLUSTER_RESOURCES (the local standalone cluster's two one-core workers).
    executor_memory: str | None = None
    cores_max: int | None = None
    app_name: str = "fraudstream"
    #: Stop after this many new events (scored + dead-lettered), or after this many seconds (tests, benchmarks).
    max_events: int | None = None
    duration_s: float | None = None
    extra_conf: dict[str, str] = field(default_factory=dict)


@dataclass
class BatchReport:
    """One micro-batch as the driver saw it."""

    batch_id: int
    duration_s: float
    scored: int
    written: int
    dead_lettered: int
    alerted: int
    labels: int
    model_version: str
    #: Wall-clock time (time.time()) when foreachBatch returned.
    finished_at: float = 0.0


def default_shuffle_partitions(partitions: int, cores: int) -> int:
    """One stateful task per executor core (each task costs a fixed few hundred ms per batch, so more
    tasks than cores only add that cost), at most one per transactions partition (the most per-partition
    state can use)."""
    return max(1, min(partitions, cores))


def executor_cores(spark: SparkSession) -> int:
    """The cores the application may use: spark.cores.max when set, else the cluster's default parallelism."""
    configured = spark.sparkContext.getConf().get("spark.cores.max")
    return int(configured) if configured else spark.sparkContext.defaultParallelism


def checkpoint_dir(settings: Settings, options: JobOptions) -> str:
    return options.checkpoint or str(settings.state_dir / "spark" / "checkpoints" / options.app_name)


def spark_session(settings: Settings, options: JobOptions, shuffle_partitions: int | None = None) -> SparkSession:
    """A session with the connector jars and the RocksDB state store (and the shuffle parallelism, when
    given: it can also be set on the session before the query starts)."""
    environment = spark_service.spark_env()
    if options.master != spark_service.master_url(settings):  # a remote cluster: keep its networking
        environment = {name: value for name, value in environment.items() if name.startswith("PYSPARK")}
    os.environ.update(environment)
    builder = SparkSession.builder.appName(options.app_name)
    if options.master:
        builder = builder.master(options.master)
    resources = dict(LOCAL_CLUSTER_RESOURCES) if options.master else {}
    if options.executor_memory:
        resources["spark.executor.memory"] = options.executor_memory
    if options.cores_max:
        resources["spark.cores.max"] = str(options.cores_max)
    conf = {
        "spark.jars": ",".join(str(jar) for jar in spark_service.connector_jars(settings)),
        "spark.pyspark.python": sys.executable,
        **resources,
        **({"spark.sql.shuffle.partitions": str(shuffle_partitions)} if shuffle_partitions else {}),
        "spark.sql.streaming.stateStore.providerClass": STATE_STORE_PROVIDER,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        **options.extra_conf,
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def build_query(spark: SparkSession, settings: Settings, options: JobOptions, models: ModelHolder,
                reports: list[BatchReport], partitions: int, shuffle_partitions: int) -> DataStreamWriter:
    """The streaming query (not started): Kafka -> keys -> stateful features, scoring, writes -> counts.

    ``partitions`` is the partition count of the transactions topic: each label goes to that many states.
    """
    raw = (spark.readStream.format("kafka")
           .options(**kafka.spark_source_options(settings))
           .option("subscribe", f"{settings.transactions_topic},{settings.labels_topic}")
           .option("startingOffsets", "earliest")
           .option("maxOffsetsPerTrigger", options.max_offsets_per_trigger)
           .load())
    keys = state_keys(partitions, shuffle_partitions)
    all_keys = F.array(*(F.lit(key).cast("long") for key in keys))
    keyed = raw.select(
        "topic", "partition", "offset", "key", "value", F.unix_micros("timestamp").alias(TIMESTAMP_COLUMN),
        F.explode(F.when(F.col("topic") == settings.transactions_topic,
                         F.array(F.element_at(all_keys, F.col("partition") + 1)))
                  .otherwise(all_keys)).alias(KEY_COLUMN),
    )
    processed = keyed.groupBy(KEY_COLUMN).transformWithStateInPandas(
        statefulProcessor=PartitionStepProcessor(models.feature_config, settings, label_owner=keys[0]),
        outputStructType=OUTPUT_SCHEMA, outputMode="Append", timeMode="None",
    )

    def sink(batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        if models.refresh():
            log.info("spark job switched model version=%s shadow=%s batch=%d", models.version,
                     models.shadow_version, batch_id)
        BatchContext(models.version, time.time_ns() // 1000, models.shadow_version).publish(spark.sparkContext)
        counts = batch.collect()  # the batch's one job: one small row per key
        totals = [sum(row[name] for row in counts) for name in COUNTS]
        report = BatchReport(batch_id, time.perf_counter() - started, *totals, models.version, time.time())
        if report.scored or report.dead_lettered or report.labels:
            reports.append(report)
            log.info("batch committed id=%d scored=%d written=%d dead_lettered=%d alerts=%d labels=%d "
                     "duration_ms=%.0f model_version=%s", batch_id, report.scored, report.written,
                     report.dead_lettered, report.alerted, report.labels, report.duration_s * 1000,
                     report.model_version)

    writer = processed.writeStream.foreachBatch(sink).option("checkpointLocation", checkpoint_dir(settings, options))
    if options.trigger_interval_s > 0:
        writer = writer.trigger(processingTime=f"{options.trigger_interval_s} seconds")
    return writer.queryName(options.app_name)


def run_spark_job(settings: Settings, options: JobOptions) -> list[BatchReport]:
    """Run the job until max_events, duration, or the query stops; returns the batches that did work."""
    partitions = check_topics(settings)
    models = ModelHolder(settings.models_dir, poll_interval_s=0.0)
    spark = spark_session(settings, options)
    shuffle_partitions = options.shuffle_partitions or default_shuffle_partitions(partitions, executor_cores(spark))
    spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))  # an existing checkpoint's value wins
    reports: list[BatchReport] = []
    query = build_query(spark, settings, options, models, reports, partitions, shuffle_partitions).start()
    log.info("spark job started master=%s checkpoint=%s model_version=%s stateful_tasks=%d",
             spark.sparkContext.master, checkpoint_dir(settings, options), models.version, shuffle_partitions)
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    try:
        while query.isActive:
            handled = sum(report.scored + report.dead_lettered for report in reports)
            if options.max_events is not None and handled >= options.max_events:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            query.awaitTermination(0.5)
    finally:
        if query.isActive:
            query.stop()
        spark.stop()
    return reports


def main(argv: list[str]) -> None:
    """Under spark-submit (master, resources and jars are spark-submit's): the job with these options."""
    parser = argparse.ArgumentParser(prog="spark_job.py", description=main.__doc__)
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--app-name", default="fraudstream")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=JobOptions.max_offsets_per_trigger)
    parser.add_argument("--trigger-interval", type=float, default=0.0)
    parser.add_argument("--shuffle-partitions", type=int, default=0)
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None)
    args = parser.parse_args(argv)
    run_spark_job(get_settings(), JobOptions(
        checkpoint=args.checkpoint, app_name=args.app_name, max_offsets_per_trigger=args.max_offsets_per_trigger,
        trigger_interval_s=args.trigger_interval, shuffle_partitions=args.shuffle_partitions,
        max_events=args.max_events, duration_s=args.duration))


if __name__ == "__main__":  # `spark-submit [spark options] fraudstream/engines/spark_job.py [job options]`
    main(sys.argv[1:])
