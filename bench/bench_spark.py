"""Spark engine throughput and batch latency on the local standalone cluster, side by side in one run with
the local engine and with the seed's job design, over the same simulated events.

.venv/bin/python bench/bench_spark.py [--events 120000] [--seed-events 60000] [--max-offsets-per-trigger 20000 ...]

- spark job: ``fraudstream spark submit``'s job (per-partition state, executor-side vectorized scoring,
  idempotent upsert), driver in this process, on the cluster of ``fraudstream services up spark``.
- local engine: ``fraudstream process`` (one member) in this process.
- seed design: the same Kafka source on the same cluster, decoded with from_json, scored by a
  row-at-a-time Python UDF that builds a one-row pandas DataFrame and calls the same LightGBM model per
  row (as the seed's job does); its foreachBatch sink collects (transaction_id, score) and COPYs them into
  a PostgreSQL table. The UDF counts its calls in an accumulator and the bench checks one call per event:
  a sink that only counted rows would let Spark prune the score column, and the UDF would never run.
  It computes no stateful features and no reason codes: it does less work per event than the two
  engines, so the ratio is conservative.

Both Spark designs run with the same maxOffsetsPerTrigger (the first value of --max-offsets-per-trigger;
more values give more rows for the Spark job). Steady-state figures leave out each engine's first batch
(Spark's first batch includes 15-45 s of start-up): steady events/s = events after the first batch / wall
time from the end of the first batch to the end of the last (so Spark's planning and checkpoint commits
between batches count).
Batch duration: Spark jobs, the foreachBatch wall time (the whole micro-batch is computed inside it);
local engine, from poll to database commit, from the rows' own ingested_at/written_at. Results: a table
and bench/results/bench_spark-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from rich.console import Console
from rich.table import Table

from fraudstream import kafka
from fraudstream.config import Settings, get_settings
from fraudstream.demo import ensure_default_model
from fraudstream.engines.feed import publish_frame
from fraudstream.engines.local import EngineOptions, run_local_engine
from fraudstream.engines.spark_job import (
    LOCAL_CLUSTER_RESOURCES,
    JobOptions,
    default_shuffle_partitions,
    run_spark_job,
    spark_session,
)
from fraudstream.services import manager
from fraudstream.services.spark import master_url
from fraudstream.simulate.backfill import simulate_history

RESULTS = Path(__file__).parent / "results"
log = logging.getLogger("bench_spark")


def fresh_topics(base: Settings, tag: str) -> Settings:
    settings = base.model_copy(update={
        "transactions_topic": f"bench-tx-{tag}", "labels_topic": f"bench-labels-{tag}",
        "alerts_topic": f"bench-alerts-{tag}", "dlq_topic": f"bench-dlq-{tag}",
    })
    kafka.create_topics(settings)
    return settings


def publish(settings: Settings, events: pd.DataFrame, prefix: str) -> None:
    producer = kafka.producer(settings)
    frame = events.assign(transaction_id=prefix + events["transaction_id"])
    publish_frame(producer, settings.transactions_topic, frame, settings.transactions_partitions)
    assert producer.flush(60) == 0


def summary(name: str, events: int, durations_s: list[float], sizes: list[int], steady_s: float,
            **extra: object) -> dict:
    """Figures of one engine: steady events/s (first batch left out) and batch duration percentiles."""
    steady_events = sum(sizes[1:])
    return {
        "engine": name, "events": events, "batches": len(sizes), **extra,
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "first_batch_s": durations_s[0] if durations_s else None,
        "steady_events_per_s": steady_events / steady_s if steady_s > 0 else None,
        "batch_p50_s": float(np.percentile(durations_s[1:], 50)) if len(durations_s) > 1 else None,
        "batch_p99_s": float(np.percentile(durations_s[1:], 99)) if len(durations_s) > 1 else None,
        "mean_batch_events": float(np.mean(sizes[1:])) if len(sizes) > 1 else None,
    }


def bench_spark_job(settings: Settings, events: int, max_offsets: int, shuffle_partitions: int,
                    checkpoint: Path) -> dict:
    options = JobOptions(master=master_url(settings), checkpoint=str(checkpoint), app_name="bench-spark",
                         max_offsets_per_trigger=max_offsets, shuffle_partitions=shuffle_partitions, max_events=events)
    started = time.perf_counter()
    reports = run_spark_job(settings, options)
    log.info("spark job done in %.1f s", time.perf_counter() - started)
    durations = [r.duration_s for r in reports]
    stateful_tasks = shuffle_partitions or default_shuffle_partitions(
        settings.transactions_partitions, int(LOCAL_CLUSTER_RESOURCES["spark.cores.max"]))
    return summary(f"spark job (this repo), {max_offsets:,}/trigger, {stateful_tasks} stateful tasks",
                   sum(r.scored for r in reports), durations, [r.scored for r in reports],
                   reports[-1].finished_at - reports[0].finished_at if reports else 0.0,
                   max_offsets_per_trigger=max_offsets, shuffle_partitions=stateful_tasks)


def bench_local(settings: Settings, events: int, prefix: str) -> dict:
    run_local_engine(settings, EngineOptions(group=f"bench-{uuid.uuid4().hex[:8]}", metrics_port=None,
                                             max_events=events))
    with psycopg.connect(settings.database_url) as connection:
        batches = connection.execute(
            "SELECT extract(epoch FROM max(written_at) - ingested_at), count(*),"
            " extract(epoch FROM ingested_at), extract(epoch FROM max(written_at))"
            " FROM transactions WHERE transaction_id LIKE %s GROUP BY ingested_at ORDER BY ingested_at",
            (prefix + "%",)).fetchall()
    durations = [float(b[0]) for b in batches]
    sizes = [int(b[1]) for b in batches]
    steady_s = float(batches[-1][3]) - float(batches[1][2]) if len(batches) > 1 else 0.0
    return summary("local engine (one member)", sum(sizes), durations, sizes, steady_s)


SEED_SCORES_TABLE = "bench_seed_scores"


def bench_seed_design(settings: Settings, events: int, max_offsets: int, checkpoint: Path, prefix: str) -> dict:
    """The seed's design on the same cluster: from_json, a Python UDF per row building a DataFrame, and a
    sink that stores every (transaction_id, score) in PostgreSQL. The UDF's calls are counted."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    from fraudstream.model.registry import Registry

    models_dir, version = settings.models_dir, ensure_default_model(settings)
    schema = StructType([StructField("transaction_id", StringType()), StructField("account_id", StringType()),
                         StructField("amount", DoubleType()), StructField("event_time", StringType())])
    loaded = {}
    spark = spark_session(settings, JobOptions(master=master_url(settings), app_name="bench-seed"),
                          settings.transactions_partitions)
    udf_calls = spark.sparkContext.accumulator(0)

    def score_row(amount: float, event_time: str) -> float:
        """The seed's UDF: one event in, a one-row DataFrame built, the model called, one float out."""
        udf_calls.add(1)
        if version not in loaded:  # once per Python worker
            loaded[version] = Registry(models_dir).load(version)
        artifact = loaded[version]
        row = dict.fromkeys(artifact.manifest["feature_names"], np.nan)
        row["amount"], row["hour_of_day"] = amount, float(event_time[11:13])
        return float(artifact.booster.predict(pd.DataFrame([row]), num_threads=1)[0])

    score = F.udf(score_row, DoubleType())
    reports: list[tuple[float, int, float]] = []
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {SEED_SCORES_TABLE} "
                           "(transaction_id text PRIMARY KEY, score double precision NOT NULL)")

    def sink(batch: DataFrame, batch_id: int) -> None:
        """Every score materialized and stored: the UDF runs once per event (no column to prune)."""
        started = time.perf_counter()
        scored = batch.select("transaction_id", "score").toPandas()
        if scored.empty:
            return
        with (psycopg.connect(settings.database_url) as connection, connection.cursor() as cursor,
              cursor.copy(f"COPY {SEED_SCORES_TABLE} (transaction_id, score) FROM STDIN") as copy):
            for row in scored.itertuples(index=False):
                copy.write_row(row)
        reports.append((time.perf_counter() - started, len(scored), time.time()))

    decoded = (spark.readStream.format("kafka").options(**kafka.spark_source_options(settings))
               .option("subscribe", settings.transactions_topic).option("startingOffsets", "earliest")
               .option("maxOffsetsPerTrigger", max_offsets).load()
               .select(F.from_json(F.col("value").cast("string"), schema).alias("event")).select("event.*"))
    query = (decoded.withColumn("score", score("amount", "event_time"))
             .writeStream.foreachBatch(sink).option("checkpointLocation", str(checkpoint)).start())
    arrow_udfs = spark.conf.get("spark.sql.execution.pythonUDF.arrow.enabled")
    try:
        while query.isActive and sum(report[1] for report in reports) < events:
            query.awaitTermination(0.5)
    finally:
        query.stop()
        spark.stop()
    with psycopg.connect(settings.database_url) as connection:
        stored = connection.execute(f"SELECT count(*) FROM {SEED_SCORES_TABLE} WHERE transaction_id LIKE %s",
                                    (prefix + "%",)).fetchone()[0]
    durations = [report[0] for report in reports]
    sizes = [report[1] for report in reports]
    log.info("seed design: %d events, %d UDF calls, %d scores stored", sum(sizes), udf_calls.value, stored)
    if udf_calls.value < sum(sizes) or stored != sum(sizes):
        raise RuntimeError(f"seed design did not score every event: {udf_calls.value} UDF calls, {stored} stored "
                           f"scores for {sum(sizes)} events")
    return summary(f"seed design (row-at-a-time UDF), {max_offsets:,}/trigger", sum(sizes), durations, sizes,
                   reports[-1][2] - reports[0][2] if reports else 0.0, max_offsets_per_trigger=max_offsets,
                   udf_calls=udf_calls.value, scores_stored=stored, arrow_python_udfs=arrow_udfs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--seed-events", type=int, default=60_000, help="The seed design is slow: fewer events.")
    parser.add_argument("--max-offsets-per-trigger", type=int, nargs="+", default=[20_000, 50_000],
                        help="The Spark job runs once per value; the seed design uses the first.")
    parser.add_argument("--shuffle-partitions", type=int, default=0, help="Stateful tasks (0: the job's default).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base = get_settings()
    manager.up(base, ["postgres", "kafka", "spark"])
    ensure_default_model(base)
    history = simulate_history(days=max(1, args.events // 12_000 + 1), seed=23, accounts=8_000, merchants=800)
    events = history.transactions.head(args.events).reset_index(drop=True)
    tag = uuid.uuid4().hex[:8]
    work = base.state_dir / "bench" / f"spark-{tag}"
    results = []

    for max_offsets in args.max_offsets_per_trigger:
        spark_settings = fresh_topics(base, f"spark-{max_offsets}-{tag}")
        publish(spark_settings, events, f"bench-spark-{max_offsets}-{tag}-")
        results.append(bench_spark_job(spark_settings, len(events), max_offsets, args.shuffle_partitions,
                                       work / f"spark-{max_offsets}"))

    local_settings = fresh_topics(base, f"local-{tag}")
    publish(local_settings, events, f"bench-local-{tag}-")
    results.append(bench_local(local_settings, len(events), f"bench-local-{tag}-"))

    seed_settings = fresh_topics(base, f"seed-{tag}")
    seed_events = events.head(args.seed_events)
    publish(seed_settings, seed_events, f"bench-seed-{tag}-")
    results.append(bench_seed_design(seed_settings, len(seed_events), args.max_offsets_per_trigger[0], work / "seed",
                                     f"bench-seed-{tag}-"))

    # Same maxOffsetsPerTrigger on both sides of the ratio.
    ours, seed = results[0]["steady_events_per_s"], results[-1]["steady_events_per_s"]
    ratio = ours / seed if ours and seed else None
    table = Table(title=f"Spark engine on a local standalone cluster (2 workers x 1 core), {len(events):,} events")
    for column in ("engine", "events", "batches", "first batch s", "steady events/s", "batch p50 s", "batch p99 s",
                   "load 1m"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for row in results:
        table.add_row(row["engine"], f"{row['events']:,}", str(row["batches"]), _fmt(row["first_batch_s"], 1),
                      _fmt(row["steady_events_per_s"], 0), _fmt(row["batch_p50_s"], 2), _fmt(row["batch_p99_s"], 2),
                      _fmt(row["load_average_1m_after"], 1))
    table.caption = (f"spark job / seed design at {args.max_offsets_per_trigger[0]:,} per trigger, steady events/s: "
                     f"{_fmt(ratio, 1)}x; seed UDF calls {results[-1]['udf_calls']:,} for {results[-1]['events']:,} "
                     "events")
    Console(width=140).print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"bench_spark-{stamp}.json").write_text(json.dumps(
        {"events": len(events), "results": results, "spark_to_seed_ratio": ratio,
         "max_offsets_per_trigger": args.max_offsets_per_trigger, "cpu_count": os.cpu_count()}, indent=2))


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


if __name__ == "__main__":
    main()
