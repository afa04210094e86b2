"""Scoring throughput (rows/s, CPU and wall) at batch sizes 1, 100 and 10,000, and reasons/s.

    .venv/bin/python bench/bench_scoring.py [--models-dir DIR] [--seconds 3] [--repeat 3]

It needs the promoted model of a real training run (``fraudstream train ... --promote``, or the default model
``make demo`` trains) and refuses to run without one.

Features are the last of three simulated days replayed through the core with one state per Kafka
partition, as served (accounts have history by then), so the share of rows that need reasons
(review/block) is realistic. CPU time (time.process_time) is the figure to compare on a shared
machine; wall time is shown beside it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _report import BenchRun, add_repeat_argument, format_spread, spread

from fraudstream.batch.scoring import Scorer
from fraudstream.config import get_settings
from fraudstream.model.dataset import LabeledHistory, replay
from fraudstream.model.registry import Registry
from fraudstream.simulate.backfill import simulate_history
from fraudstream.timeunits import MICROS_PER_DAY

BATCH_SIZES = (1, 100, 10_000)


def measure(work: Callable[[int], int], seconds: float) -> dict[str, float]:
    """Call ``work(call_number)`` (returns rows done) for about ``seconds`` of wall time."""
    rows = calls = 0
    began, began_cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - began < seconds or calls == 0:
        rows += work(calls)
        calls += 1
    wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    return {"rows": rows, "calls": calls, "rows_per_second": rows / wall, "rows_per_cpu_second": rows / cpu,
            "ms_per_call": 1000 * wall / calls, "cpu_ms_per_call": 1000 * cpu / calls}


def trained_model_dir(models_dir: Path) -> Path:
    """``models_dir`` if its promoted model was trained on data (a training window in its manifest); else exit
    naming the commands that train one: a model fitted to noise scores and flags unlike the served one."""
    registry = Registry(models_dir)
    version = registry.production_version()
    if version is None or "training_window" not in registry.manifest(version):
        what = "no promoted model" if version is None else f"the promoted model {version} was not trained on data"
        raise SystemExit(f"bench_scoring: {what} in {models_dir}. Train one first:\n"
                         "  .venv/bin/fraudstream simulate --days 30 --out data/history\n"
                         "  .venv/bin/fraudstream train --input data/history --promote\n"
                         "(or run `make demo` once, which trains the default model), or pass --models-dir.")
    return models_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=get_settings().models_dir)
    parser.add_argument("--seconds", type=float, default=3.0, help="Time spent per measurement.")
    add_repeat_argument(parser)
    args = parser.parse_args()
    models_dir = trained_model_dir(args.models_dir)
    with BenchRun("bench_scoring", settings={**vars(args), "models_dir": str(models_dir)}) as run:
        began_cpu = time.process_time()
        scorer = Scorer.from_registry(models_dir)
        load_cpu_ms = 1000 * (time.process_time() - began_cpu)
        history = simulate_history(3)
        labeled = LabeledHistory(history.transactions, history.labels)
        features = replay(labeled, get_settings().transactions_partitions, scorer.feature_config).features
        last_day = history.transactions["event_time_us"] >= history.end_us - MICROS_PER_DAY
        features = features[last_day.to_numpy()]

        results: dict[str, dict[str, object]] = {}
        rows: list[list[str]] = []
        for size in BATCH_SIZES:
            batches = [features.iloc[i : i + size] for i in range(0, len(features) - size + 1, size)]
            flagged = [0]

            def score(call: int, batches: list = batches, flagged: list[int] = flagged) -> int:
                result = scorer.score(batches[call % len(batches)])
                flagged[0] += int((result.decision != "approve").sum())
                return len(result.decision)

            runs = [measure(score, args.seconds) for _ in range(args.repeat)]
            results[f"score batch {size}"] = figures = summarize(runs)
            figures["flagged_share"] = flagged[0] / sum(r["rows"] for r in runs)
            rows.append([f"score, batch of {size:,}", *cells(figures), f"{figures['flagged_share']:.2%}"])

        # Reasons alone, on rows the model flags (repeated up to 1,000 rows: a busy batch's flagged rows).
        matrix = features.loc[:, list(scorer.feature_names)].to_numpy(dtype=np.float64)
        flagged_rows = matrix[scorer.score(features).decision != "approve"]
        flagged_rows = np.resize(flagged_rows if len(flagged_rows) else matrix, (1_000, matrix.shape[1]))
        runs = [measure(lambda call: len(scorer.explain(flagged_rows)), args.seconds) for _ in range(args.repeat)]
        results["reasons"] = figures = summarize(runs)
        rows.append(["reasons, 1,000 flagged rows", *cells(figures), "100%"])
        run.table(f"scoring with {scorer.model_version} ({models_dir})",
                  ["what", "rows/s (CPU)", "rows/s (wall)", "CPU ms per call", "flagged rows"], rows,
                  note=f"median (min-max) of {args.repeat} runs of {args.seconds:g} s; model load incl. reason "
                       f"table: {load_cpu_ms:.0f} CPU ms")
        run.figures.update({"model_version": scorer.model_version, "model_load_cpu_ms": load_cpu_ms,
                            "results": results})


def summarize(runs: list[dict[str, float]]) -> dict[str, object]:
    return {key: spread(r[key] for r in runs) for key in ("rows_per_cpu_second", "rows_per_second", "cpu_ms_per_call")}


def cells(figures: dict[str, object]) -> list[str]:
    return [format_spread(figures["rows_per_cpu_second"]), format_spread(figures["rows_per_second"]),
            format_spread(figures["cpu_ms_per_call"], 3)]


if __name__ == "__main__":
    main()
