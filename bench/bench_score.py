"""`fraudstream score` throughput on a ~1 M-row history file, and `train --from-db` wall time over 30 days.

    flock /tmp/fraudstream-bench.lock .venv/bin/python bench/bench_score.py [--score-days 57] [--db-days 30]
        [--skip-db] [--repeat 3]

Score: a simulated history (default population, ~17.7k events per simulated day, so 57 days ~1 M rows)
is written in the history file format and run through what `fraudstream score` runs: read, replay
through the feature core (the model's feature config and partition count), score with the engines'
scorer (compiled trees, reasons for flagged rows), write Parquet. Figures are per CPU-second of this
process (the machine is shared), median (min-max) of --repeat runs over the same file; the baseline row
scores the same matrix with LightGBM's own tree walk.
Target (issue 15): >= 100k events per CPU-second for the whole command.

Train from the database: ``--db-days`` of simulated history (chargebacks within 7 days) are written
through the store writer into a scratch database on the local PostgreSQL (`fraudstream services up`),
then `train --from-db` (label maturity 7 days) runs on them; the model it publishes is the one scored.
With --skip-db the model is trained in process on the same history instead (not timed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from _database import scratch_database
from _report import BenchRun, add_repeat_argument, format_spread, spread

from fraudstream.backtest import score_history, write_scores
from fraudstream.batch import rows as batch_rows
from fraudstream.batch.scoring import Scorer, ScoreResult
from fraudstream.config import Settings, get_settings
from fraudstream.features import FeatureRows
from fraudstream.features.columnar import float_matrix
from fraudstream.history import write_history
from fraudstream.model.dataset import LabeledHistory, load_history
from fraudstream.model.maturity import LabelMaturity
from fraudstream.model.registry import Registry
from fraudstream.model.split import SplitConfig
from fraudstream.model.train import TrainConfig
from fraudstream.model.train import build as build_from_history
from fraudstream.simulate.backfill import LabelDelays, simulate_history
from fraudstream.store import writer
from fraudstream.training import DatabaseSource, build

TARGET_EVENTS_PER_CPU_SECOND = 100_000
TARGET_TRAIN_SECONDS = 300
#: Chargebacks within a week: 30 stored days leave 23 matured ones for the split.
DELAYS = LabelDelays(fraud_s=(1 * 86_400.0, 7 * 86_400.0))
MATURITY = LabelMaturity(fraud_label_days=7, legitimate_label_days=45)
WRITE_CHUNK_ROWS = 100_000


def store(url: str, history: LabeledHistory) -> float:
    """Write the history as an engine would (scored rows through the store writer) plus its labels up to the
    last event; returns seconds."""
    began = time.perf_counter()
    transactions = history.transactions
    as_of = int(transactions["event_time_us"].max())
    with psycopg.connect(url, autocommit=True) as connection:
        for start in range(0, len(transactions), WRITE_CHUNK_ROWS):
            frame = transactions.iloc[start:start + WRITE_CHUNK_ROWS].reset_index(drop=True)
            count = len(frame)
            frame["kafka_partition"] = np.int32(0)
            frame["kafka_offset"] = np.arange(start, start + count, dtype=np.int64)
            frame["ingested_at_us"] = frame["event_time_us"]
            features = FeatureRows(frame[["amount"]].to_numpy(), ("amount",), np.zeros(count, dtype=bool))
            scores = ScoreResult(np.zeros(count), np.full(count, "approve", dtype=object), [()] * count)
            rows = batch_rows.scored_rows(frame, features, scores, model_version="bench", engine="bench",
                                        scored_at_us=as_of, feature_columns=["amount"])
            with connection.transaction():
                writer.upsert_scored(connection, rows)
        labels = history.labels[history.labels["labeled_at_us"] <= as_of]
        with connection.transaction():
            writer.upsert_labels(connection, labels)
    return time.perf_counter() - began


def train_from_database(settings: Settings, models_dir: Path, days: int) -> tuple[str, dict[str, object]]:
    simulated = simulate_history(days, seed=11, label_delays=DELAYS)
    history = LabeledHistory(simulated.transactions, simulated.labels)
    with scratch_database(settings, "bench_score") as url:
        write_seconds = store(url, history)
        config = TrainConfig(split=SplitConfig(), partitions=settings.transactions_partitions)
        began, began_cpu = time.perf_counter(), time.process_time()
        version, result = build(models_dir, config=config, settings=settings.model_copy(update={"database_url": url}),
                                database=DatabaseSource(MATURITY))
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    stages = result.manifest["training"]["seconds"]
    figures = {"events": len(history.transactions), "labels": int(result.manifest["history"]["rows_with_known_label"]),
               "write_seconds": write_seconds, "train_from_db_seconds": seconds, "cpu_seconds": cpu_seconds,
               "read_database_seconds": seconds - stages["total"], "stages": stages,
               "average_precision": result.metrics["model"]["average_precision"]}
    return version, figures


def train_in_process(settings: Settings, models_dir: Path, days: int) -> str:
    simulated = simulate_history(days, seed=11)
    config = TrainConfig(partitions=settings.transactions_partitions)
    version, _ = build_from_history(models_dir, LabeledHistory(simulated.transactions, simulated.labels),
                                    config=config)
    return version


def bench_score(history_dir: Path, scorer: Scorer, out: Path) -> dict[str, dict[str, float]]:
    """Stages of `fraudstream score` with CPU and wall seconds each, plus LightGBM's tree walk as baseline."""
    figures: dict[str, dict[str, float]] = {}

    def timed(name: str, began: float, began_cpu: float, rows: int) -> None:
        figures[name] = {"rows": rows, "seconds": time.perf_counter() - began,
                         "cpu_seconds": time.process_time() - began_cpu}

    began, began_cpu = time.perf_counter(), time.process_time()
    history = load_history(history_dir)
    rows = len(history.transactions)
    timed("read history", began, began_cpu, rows)
    scored = score_history(history, scorer)
    figures["replay"] = {"rows": rows, "seconds": scored.replay.seconds, "cpu_seconds": scored.replay.cpu_seconds}
    figures["score (compiled trees + reasons)"] = {"rows": rows, "seconds": scored.score_seconds,
                                                   "cpu_seconds": scored.score_cpu_seconds}
    began, began_cpu = time.perf_counter(), time.process_time()
    write_scores(scored.scores, out, scorer.model_version)
    timed("write parquet", began, began_cpu, rows)
    total = {"rows": rows, "seconds": sum(f["seconds"] for f in figures.values()),
             "cpu_seconds": sum(f["cpu_seconds"] for f in figures.values())}
    matrix = float_matrix(scored.replay.features, pd.Index(scorer.feature_names))
    began, began_cpu = time.perf_counter(), time.process_time()
    scorer.artifact.booster.predict(matrix, num_threads=1)
    timed("baseline: LightGBM tree walk (probabilities only)", began, began_cpu, rows)
    figures["score command, total"] = total
    flagged = float((scored.scores["decision"] != "approve").mean())
    figures["score command, total"]["flagged_share"] = flagged
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--score-days", type=int, default=57, help="Days in the scored file (~17.7k events a day).")
    parser.add_argument("--db-days", type=int, default=30, help="Days stored in the database for train --from-db.")
    parser.add_argument("--skip-db", action="store_true", help="Train in process instead of from the database.")
    add_repeat_argument(parser)
    args = parser.parse_args()
    settings = get_settings()
    with BenchRun("bench_score", settings=vars(args)) as run, \
            tempfile.TemporaryDirectory(prefix="bench-score-") as folder:
        root = Path(folder)
        models_dir = root / "models"
        train_figures: dict[str, object] | None = None
        if args.skip_db:
            version = train_in_process(settings, models_dir, args.db_days)
        else:
            version, train_figures = train_from_database(settings, models_dir, args.db_days)
        simulated = simulate_history(args.score_days, seed=23)
        write_history(simulated, root / "history")
        scorer = Scorer(Registry(models_dir).load(version))
        runs = [bench_score(root / "history", scorer, root / "scores.parquet") for _ in range(args.repeat)]
        score_table(run, runs, version, scorer)
        if train_figures is not None:
            train_table(run, train_figures, args.db_days)
        run.figures.update({"model_version": version, "score_runs": runs, "train_from_db": train_figures})


def score_table(run: BenchRun, runs: list[dict[str, dict[str, float]]], version: str, scorer: Scorer) -> None:
    def rate(figures: dict[str, float], key: str) -> float | None:
        return figures["rows"] / figures[key] if figures[key] else None

    rows = []
    for name in runs[0]:
        same = [figures[name] for figures in runs]
        rows.append([name, format_spread(spread(f["cpu_seconds"] for f in same), 2),
                     format_spread(spread(f["seconds"] for f in same), 2),
                     format_spread(spread(rate(f, "cpu_seconds") for f in same)),
                     format_spread(spread(rate(f, "seconds") for f in same))])
    totals = [figures["score command, total"] for figures in runs]
    per_cpu = spread(rate(total, "cpu_seconds") for total in totals)
    run.target("fraudstream score, events per CPU-second", per_cpu["median"], TARGET_EVENTS_PER_CPU_SECOND,
               TARGET_EVENTS_PER_CPU_SECOND)
    run.table(f"fraudstream score, {runs[0]['read history']['rows']:,} events",
              ["stage", "CPU s", "wall s", "events per CPU-second", "events/s (wall)"], rows,
              note=f"median (min-max) of {len(runs)} runs; target >= {TARGET_EVENTS_PER_CPU_SECOND:,} events per "
                   f"CPU-second: {format_spread(per_cpu)}; flagged share {totals[0]['flagged_share']:.2%}; model "
                   f"{version} ({scorer.artifact.booster.num_trees()} trees, {scorer.replay_partitions} partition "
                   "states)")


def train_table(run: BenchRun, train_figures: dict[str, object], days: int) -> None:
    stages = train_figures["stages"]
    assert isinstance(stages, dict)
    rows = [["events stored / rows with a known label", f"{train_figures['events']:,} / {train_figures['labels']:,}"],
            ["writing them (store writer, not part of train)", f"{train_figures['write_seconds']:.1f} s"],
            ["train --from-db wall time", f"{train_figures['train_from_db_seconds']:.1f} s "
             f"(target <= {TARGET_TRAIN_SECONDS} s); CPU {train_figures['cpu_seconds']:.1f} s"],
            ["  read database + label maturity", f"{train_figures['read_database_seconds']:.1f} s"],
            *([f"  {name}", f"{seconds:.1f} s"] for name, seconds in stages.items()),
            ["average precision (test)", f"{train_figures['average_precision']:.4f}"]]
    run.table(f"train --from-db over {days} stored days (one run)", ["what", "value"], rows)
    run.target(f"train --from-db over {days} days, wall", float(train_figures["train_from_db_seconds"]),
               TARGET_TRAIN_SECONDS, TARGET_TRAIN_SECONDS, " s", "lower")


if __name__ == "__main__":
    main()
