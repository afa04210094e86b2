"""Spark engine throughput and batch latency on the local standalone cluster, side by side in one run with
the local engine and with the original job as it was written, over the same simulated events.

.venv/bin/python bench/bench_spark.py [--events 120000] [--seed-events 20000] [--max-offsets-per-trigger 20000 ...]
    [--repeat 3]

- spark job: ``fraudstream spark submit``'s job (per-partition state, executor-side vectorized scoring,
  idempotent upsert), driver in this process, on the cluster of ``fraudstream services up spark``.
- local engine: ``fraudstream process`` (one member) in this process.
- original job (the baseline of the ratio): the same Kafka source on the same cluster, decoded with from_json,
  scored by a Python UDF that builds a one-row pandas DataFrame of four columns (amount, hour, account age,
  24-hour count) and calls ``predict`` of a scikit-learn ``RandomForestClassifier(n_estimators=100)``, fitted
  at bench start on simulated history (nothing unpickled); each batch appended to PostgreSQL by Spark's JDBC
  writer (the PostgreSQL JDBC driver from Maven Central, deploy/maven/jdbc/pom.xml). Its account age and
  24-hour count travel in its copy of the events, computed beforehand by the project's feature core: the
  baseline does no feature work, so the ratio is conservative.
- lighter baseline (kept as a second row): the same UDF shape calling the project's LightGBM model on
  amount and hour, scores collected and COPYed into PostgreSQL.
The baselines' UDFs count their calls in an accumulator and the bench checks one call and one stored row per
event (a sink that only counted rows would let Spark prune the score column, and the UDF would never run).

All Spark designs run with the same maxOffsetsPerTrigger (the first value of --max-offsets-per-trigger, or
--baseline-max-offsets-per-trigger for the baselines; more values give more rows for the Spark job).
Steady-state figures leave out each engine's first batch (Spark's first batch includes 15-45 s of start-up):
steady events/s = events after the first batch / wall time from the end of the first batch to the end of the
last (so Spark's planning and checkpoint commits between batches count). Every design runs --repeat times,
interleaved; the table shows median (min-max), each ratio pairs the runs of the same repeat.
Batch duration: Spark jobs, the foreachBatch wall time (the whole micro-batch is computed inside it);
local engine, from poll to database commit, from the rows' own ingested_at/written_at. Results: through
bench/_report.py into bench/results/.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pandas as pd
import psycopg
from _report import BenchRun, add_repeat_argument, format_spread, spread
from sklearn.ensemble import RandomForestClassifier

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
from fraudstream.events.contract import partition_for, transaction_to_dict
from fraudstream.model.dataset import LabeledHistory, replay
from fraudstream.services import manager
from fraudstream.services.maven import project_jars
from fraudstream.services.spark import connector_jars, master_url
from fraudstream.simulate.backfill import simulate_history

if TYPE_CHECKING:
    from pyspark import Accumulator
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType

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
                         extra_conf=bench_jars(settings),
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


LIGHTER_SCORES_TABLE = "bench_seed_scores"
ORIGINAL_TABLE = "bench_original_predictions"
#: The original job's model input, in its order: amount, hour, account age, 24-hour count.
ORIGINAL_COLUMNS = ("amount", "hour", "account_age_days", "transactions_24h")
#: The project's features the original job's columns correspond to (computed by the core before publishing).
ORIGINAL_FEATURES = {"account_age_days": "account_age_days", "transactions_24h": "account_transaction_count_24h"}


def original_forest(partitions: int, seed: int = 29) -> RandomForestClassifier:
    """The original job's model as written, ``RandomForestClassifier(n_estimators=100)`` on its four columns,
    fitted now on simulated history (another seed than the benched events): nothing is unpickled."""
    history = simulate_history(days=6, seed=seed, accounts=8_000, merchants=800)
    labeled = LabeledHistory(history.transactions, history.labels)
    frame = original_frame(history.transactions, replay(labeled, partitions).features)
    return RandomForestClassifier(n_estimators=100, random_state=seed).fit(frame, labeled.targets())


def original_frame(transactions: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """The four columns of the original job for each transaction (features aligned with the rows)."""
    hours = pd.to_datetime(transactions["event_time_us"].to_numpy(), unit="us").hour
    return pd.DataFrame({
        "amount": transactions["amount"].to_numpy(dtype=np.float64), "hour": hours.to_numpy(dtype=np.float64),
        **{column: features[name].fillna(0.0).to_numpy(dtype=np.float64)
           for column, name in ORIGINAL_FEATURES.items()},
    }, columns=list(ORIGINAL_COLUMNS))


def publish_with_features(settings: Settings, events: pd.DataFrame, features: pd.DataFrame, prefix: str) -> None:
    """The events as the engines get them, plus the original job's account age and 24-hour count already
    computed: that baseline does no feature work at all, so its figures are an upper bound."""
    producer = kafka.producer(settings)
    extra = original_frame(events, features)
    for row, age, count in zip(events.itertuples(index=False), extra["account_age_days"],
                               extra["transactions_24h"], strict=True):
        event = {**transaction_to_dict(row), "transaction_id": prefix + row.transaction_id,
                 "account_age_days": float(age), "transactions_24h": float(count)}
        kafka.produce(producer, settings.transactions_topic, orjson.dumps(event), row.account_id.encode(),
                      partition=partition_for(row.account_id, settings.transactions_partitions))
        producer.poll(0)
    assert producer.flush(60) == 0


def bench_jars(settings: Settings) -> dict[str, str]:
    """The Kafka connector and the PostgreSQL JDBC driver for every session of the bench: the driver JVM starts
    with the first session's jars and keeps that classpath, so the JDBC writer of a later session needs the
    driver to be there from the first."""
    jars = [*connector_jars(settings), *sorted(project_jars(settings, "jdbc").glob("*.jar"))]
    return {"spark.jars": ",".join(str(jar) for jar in jars)}


def jdbc_target(settings: Settings) -> tuple[str, dict[str, str]]:
    """Spark's JDBC URL and properties for the settings' database (password as libpq found it)."""
    with psycopg.connect(settings.database_url) as connection:
        info = connection.info
        url = f"jdbc:postgresql://{info.host}:{info.port}/{info.dbname}"
        return url, {"user": info.user, "password": info.password or "", "driver": "org.postgresql.Driver"}


@dataclass
class RowBaseline:
    """A row-at-a-time baseline: its decoded fields, its per-row UDF (built once the call counter exists) and
    its foreachBatch write; the bench checks one UDF call and one stored row per event."""

    name: str
    fields: list[tuple[str, DataType]]
    make_udf: Callable[[Accumulator], Callable[..., float]]
    udf_inputs: tuple[str, ...]
    write: Callable[[DataFrame], None]
    stored: Callable[[str], int]


def bench_row_baseline(settings: Settings, baseline: RowBaseline, events: int, max_offsets: int, checkpoint: Path,
                       prefix: str) -> dict:
    """One row baseline on the cluster: Kafka source, from_json, the UDF per row, its write per batch."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StructField, StructType

    schema = StructType([StructField(name, kind) for name, kind in baseline.fields])
    spark = spark_session(settings, JobOptions(master=master_url(settings), app_name=f"bench-{baseline.name}",
                                               extra_conf=bench_jars(settings)), settings.transactions_partitions)
    udf_calls = spark.sparkContext.accumulator(0)
    score = F.udf(baseline.make_udf(udf_calls), DoubleType())
    reports: list[tuple[float, int, float]] = []

    def sink(batch: DataFrame, batch_id: int) -> None:
        started, calls_before = time.perf_counter(), udf_calls.value
        baseline.write(batch)
        scored = udf_calls.value - calls_before  # one call per row written: no second pass to count them
        if scored:
            reports.append((time.perf_counter() - started, scored, time.time()))

    decoded = (spark.readStream.format("kafka").options(**kafka.spark_source_options(settings))
               .option("subscribe", settings.transactions_topic).option("startingOffsets", "earliest")
               .option("maxOffsetsPerTrigger", max_offsets).load()
               .select(F.from_json(F.col("value").cast("string"), schema).alias("event")).select("event.*"))
    query = (decoded.withColumn("score", score(*baseline.udf_inputs))
             .writeStream.foreachBatch(sink).option("checkpointLocation", str(checkpoint)).start())
    arrow_udfs = spark.conf.get("spark.sql.execution.pythonUDF.arrow.enabled")
    try:
        while query.isActive and sum(report[1] for report in reports) < events:
            query.awaitTermination(0.5)
        if query.exception() is not None:
            raise RuntimeError(f"{baseline.name}: {query.exception()}")
    finally:
        query.stop()
        spark.stop()
    stored = baseline.stored(prefix)
    durations = [report[0] for report in reports]
    sizes = [report[1] for report in reports]
    log.info("%s: %d events, %d UDF calls, %d rows stored", baseline.name, sum(sizes), udf_calls.value, stored)
    if udf_calls.value < events or stored != events:
        raise RuntimeError(f"{baseline.name} did not score every event: {udf_calls.value} UDF calls, {stored} stored "
                           f"rows for {events} events")
    return summary(f"{baseline.name}, {max_offsets:,}/trigger", sum(sizes), durations, sizes,
                   reports[-1][2] - reports[0][2] if reports else 0.0, max_offsets_per_trigger=max_offsets,
                   udf_calls=udf_calls.value, rows_stored=stored, arrow_python_udfs=arrow_udfs)


def count_rows(settings: Settings, table: str) -> Callable[[str], int]:
    def stored(prefix: str) -> int:
        with psycopg.connect(settings.database_url) as connection:
            return connection.execute(f"SELECT count(*) FROM {table} WHERE transaction_id LIKE %s",
                                      (prefix + "%",)).fetchone()[0]
    return stored


def original_job(settings: Settings, forest: RandomForestClassifier) -> RowBaseline:
    """The original job as written: per event, a one-row pandas DataFrame of its four columns into the forest's
    ``predict``; each batch appended to PostgreSQL through Spark's JDBC writer (the PostgreSQL driver from
    deploy/maven/jdbc). The fitted forest reaches the executors inside the UDF, as Spark ships any UDF."""
    from pyspark.sql.types import DoubleType, StringType

    url, properties = jdbc_target(settings)
    columns = list(ORIGINAL_COLUMNS)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {ORIGINAL_TABLE} (transaction_id text, account_id text, "
                           "amount double precision, event_time text, account_age_days double precision, "
                           "transactions_24h double precision, score double precision)")

    def make_udf(udf_calls: Accumulator) -> Callable[..., float]:
        def predict_row(amount: float, event_time: str, account_age_days: float, transactions_24h: float) -> float:
            udf_calls.add(1)
            row = pd.DataFrame([[amount, float(event_time[11:13]), account_age_days, transactions_24h]],
                               columns=columns)
            return float(forest.predict(row)[0])
        return predict_row

    def write(batch: DataFrame) -> None:
        batch.write.jdbc(url, ORIGINAL_TABLE, mode="append", properties=properties)

    return RowBaseline(
        "original job (sklearn forest per row, JDBC append)",
        [("transaction_id", StringType()), ("account_id", StringType()), ("amount", DoubleType()),
         ("event_time", StringType()), ("account_age_days", DoubleType()), ("transactions_24h", DoubleType())],
        make_udf, ("amount", "event_time", "account_age_days", "transactions_24h"), write,
        count_rows(settings, ORIGINAL_TABLE))


def lighter_baseline(settings: Settings) -> RowBaseline:
    """The lighter stand-in kept beside it: the project's LightGBM model per row on a one-row DataFrame (amount
    and hour, the other features missing), scores collected and COPYed into PostgreSQL."""
    from pyspark.sql.types import DoubleType, StringType

    from fraudstream.model.registry import Registry

    models_dir, version = settings.models_dir, ensure_default_model(settings)
    loaded: dict[str, object] = {}
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {LIGHTER_SCORES_TABLE} "
                           "(transaction_id text PRIMARY KEY, score double precision NOT NULL)")

    def make_udf(udf_calls: Accumulator) -> Callable[..., float]:
        def score_row(amount: float, event_time: str) -> float:
            udf_calls.add(1)
            if version not in loaded:  # once per Python worker
                loaded[version] = Registry(models_dir).load(version)
            artifact = loaded[version]
            row = dict.fromkeys(artifact.manifest["feature_names"], np.nan)
            row["amount"], row["hour_of_day"] = amount, float(event_time[11:13])
            return float(artifact.booster.predict(pd.DataFrame([row]), num_threads=1)[0])
        return score_row

    def write(batch: DataFrame) -> None:
        scored = batch.select("transaction_id", "score").toPandas()
        with (psycopg.connect(settings.database_url) as connection, connection.cursor() as cursor,
              cursor.copy(f"COPY {LIGHTER_SCORES_TABLE} (transaction_id, score) FROM STDIN") as copy):
            for row in scored.itertuples(index=False):
                copy.write_row(row)

    return RowBaseline(
        "lighter baseline (LightGBM per row, COPY)",
        [("transaction_id", StringType()), ("account_id", StringType()), ("amount", DoubleType()),
         ("event_time", StringType())],
        make_udf, ("amount", "event_time"), write, count_rows(settings, LIGHTER_SCORES_TABLE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--seed-events", type=int, default=20_000,
                        help="Events for the two row-at-a-time baselines (they are slow: fewer events).")
    parser.add_argument("--max-offsets-per-trigger", type=int, nargs="+", default=[20_000, 50_000],
                        help="The Spark job runs once per value; the baselines use the first.")
    parser.add_argument("--baseline-max-offsets-per-trigger", type=int, default=None,
                        help="Override for the baselines (default: the first --max-offsets-per-trigger).")
    parser.add_argument("--shuffle-partitions", type=int, default=0, help="Stateful tasks (0: the job's default).")
    parser.add_argument("--skip-lighter", action="store_true", help="Leave the lighter baseline out.")
    add_repeat_argument(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base = get_settings()
    manager.up(base, ["postgres", "kafka", "spark"])
    ensure_default_model(base)
    baseline_offsets = args.baseline_max_offsets_per_trigger or args.max_offsets_per_trigger[0]
    with BenchRun("bench_spark", settings=vars(args)) as run:
        history = simulate_history(days=max(1, args.events // 12_000 + 1), seed=23, accounts=8_000, merchants=800)
        events = history.transactions.head(args.events).reset_index(drop=True)
        baseline_events = events.head(args.seed_events)
        features = replay(LabeledHistory(history.transactions, history.labels),
                          base.transactions_partitions).features.head(len(baseline_events)).reset_index(drop=True)
        began = time.perf_counter()
        forest = original_forest(base.transactions_partitions)
        run.figures["original_forest_fit_s"] = time.perf_counter() - began
        baselines = [original_job(base, forest), *([] if args.skip_lighter else [lighter_baseline(base)])]
        runs: dict[str, list[dict]] = {}
        for attempt in range(args.repeat):  # designs interleaved within each repeat: load hits all alike
            tag = uuid.uuid4().hex[:8]
            work = base.state_dir / "bench" / f"spark-{tag}"
            for max_offsets in args.max_offsets_per_trigger:
                spark_settings = fresh_topics(base, f"spark-{max_offsets}-{tag}")
                publish(spark_settings, events, f"bench-spark-{max_offsets}-{tag}-")
                result = bench_spark_job(spark_settings, len(events), max_offsets, args.shuffle_partitions,
                                         work / f"spark-{max_offsets}")
                runs.setdefault(result["engine"], []).append(result)
            local_settings = fresh_topics(base, f"local-{tag}")
            publish(local_settings, events, f"bench-local-{tag}-")
            result = bench_local(local_settings, len(events), f"bench-local-{tag}-")
            runs.setdefault(result["engine"], []).append(result)
            for number, baseline in enumerate(baselines):
                baseline_settings = fresh_topics(base, f"baseline{number}-{tag}")
                prefix = f"bench-baseline{number}-{tag}-"
                publish_with_features(baseline_settings, baseline_events, features, prefix)
                result = bench_row_baseline(baseline_settings, baseline, len(baseline_events), baseline_offsets,
                                            work / f"baseline{number}", prefix)
                runs.setdefault(result["engine"], []).append(result)
            log.info("repeat %d of %d done", attempt + 1, args.repeat)
        report(run, runs, args, len(events), baselines)


def report(run: BenchRun, runs: dict[str, list[dict]], args: argparse.Namespace, events: int,
           baselines: list[RowBaseline]) -> None:
    """The table (median (min-max) over the repeats) and each ratio from the runs of the same repeat."""
    rows = []
    for engine, results in runs.items():
        rows.append([engine, f"{results[0]['events']:,}", str(results[0]["batches"]),
                     *(format_spread(spread(r[key] for r in results), digits) for key, digits in
                       (("first_batch_s", 1), ("steady_events_per_s", 0), ("batch_p50_s", 2), ("batch_p99_s", 2))),
                     format_spread(spread(r["load_average_1m_after"] for r in results), 1)])
    run.table(f"Spark engine on a local standalone cluster (2 workers x 1 core), {events:,} events",
              ["engine", "events", "batches (run 1)", "first batch s", "steady events/s", "batch p50 s",
               "batch p99 s", "load 1m after"], rows,
              note=f"median (min-max) of {args.repeat} runs; designs interleaved within each run")
    ours = next(iter(runs.values()))
    if args.max_offsets_per_trigger[0] == 20_000:
        run.target("Spark job batch at 20,000 per trigger, p50", spread(r["batch_p50_s"] for r in ours)["median"],
                   1.5, 1.0, " s", "lower")
    for baseline in baselines:
        theirs = next(results for engine, results in runs.items() if engine.startswith(baseline.name))
        ratios = [mine["steady_events_per_s"] / other["steady_events_per_s"] for mine, other in zip(ours, theirs,
                  strict=True) if mine["steady_events_per_s"] and other["steady_events_per_s"]]
        run.figures.setdefault("ratios", {})[baseline.name] = spread(ratios)
        if baseline is baselines[0]:
            run.target("Spark job vs the original job as written, same cluster, same events",
                       spread(ratios)["median"], 20, 30, "x")
        run.note(f"Spark job ({args.max_offsets_per_trigger[0]:,}/trigger) / {baseline.name}, steady events/s, "
                 f"each run's pair: {format_spread(spread(ratios), 1)}x")
    run.figures["runs"] = runs


if __name__ == "__main__":
    main()
