"""Scoring throughput (rows/s, CPU and wall) at batch sizes 1, 100 and 10,000, and reasons/s.

    .venv/bin/python bench/bench_scoring.py [--models-dir DIR] [--seconds 3]

Features are the last of three simulated days replayed through the core with one state per Kafka
partition, as served (accounts have history by then), so the share of rows that need reasons
(review/block) is realistic. CPU time (time.process_time) is the figure to compare on a shared
machine; wall time is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fraudstream.batch.scoring import Scorer
from fraudstream.config import get_settings
from fraudstream.model.dataset import LabeledHistory, replay
from fraudstream.model.registry import Registry
from fraudstream.simulate.backfill import simulate_history
from fraudstream.testing.example_model import publish_example_model
from fraudstream.timeunits import MICROS_PER_DAY

RESULTS = Path(__file__).parent / "results" / "bench_scoring.json"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=get_settings().models_dir)
    parser.add_argument("--seconds", type=float, default=3.0, help="Time spent per measurement.")
    args = parser.parse_args()
    if Registry(args.models_dir).production_version() is None:
        args.models_dir = Path("bench/results/example-models")
        publish_example_model(args.models_dir)
    began_cpu = time.process_time()
    scorer = Scorer.from_registry(args.models_dir)
    load_cpu_ms = 1000 * (time.process_time() - began_cpu)
    history = simulate_history(3)
    labeled = LabeledHistory(history.transactions, history.labels)
    features = replay(labeled, get_settings().transactions_partitions, scorer.feature_config).features
    last_day = history.transactions["event_time_us"] >= history.end_us - MICROS_PER_DAY
    features = features[last_day.to_numpy()]

    load = os.getloadavg()[0]
    table = Table(title=f"scoring with {scorer.model_version} ({args.models_dir}), load average {load:.1f}")
    for column in ("what", "rows/s (CPU)", "rows/s (wall)", "CPU ms per call", "flagged rows"):
        table.add_column(column, justify="right")
    results: dict[str, dict[str, float]] = {}
    for size in BATCH_SIZES:
        batches = [features.iloc[i : i + size] for i in range(0, len(features) - size + 1, size)]
        flagged = [0]

        def score(call: int, batches: list = batches, flagged: list[int] = flagged) -> int:
            result = scorer.score(batches[call % len(batches)])
            flagged[0] += int((result.decision != "approve").sum())
            return len(result.decision)

        figures = measure(score, args.seconds)
        figures["flagged_share"] = flagged[0] / figures["rows"]
        results[f"score batch {size}"] = figures
        table.add_row(f"score, batch of {size:,}", f"{figures['rows_per_cpu_second']:,.0f}",
                      f"{figures['rows_per_second']:,.0f}", f"{figures['cpu_ms_per_call']:.3f}",
                      f"{figures['flagged_share']:.2%}")

    # Reasons alone, on rows the model flags (repeated up to 1,000 rows: a busy batch's flagged rows).
    matrix = features.loc[:, list(scorer.feature_names)].to_numpy(dtype=np.float64)
    flagged_rows = matrix[scorer.score(features).decision != "approve"]
    flagged_rows = np.resize(flagged_rows if len(flagged_rows) else matrix, (1_000, matrix.shape[1]))
    figures = measure(lambda call: len(scorer.explain(flagged_rows)), args.seconds)
    results["reasons"] = figures
    table.add_row("reasons, 1,000 flagged rows", f"{figures['rows_per_cpu_second']:,.0f}",
                  f"{figures['rows_per_second']:,.0f}", f"{figures['cpu_ms_per_call']:.3f}", "100%")
    table.caption = f"model load incl. reason table: {load_cpu_ms:.0f} CPU ms"
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"model_version": scorer.model_version, "load_average": os.getloadavg()[0],
                                   "model_load_cpu_ms": load_cpu_ms, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
