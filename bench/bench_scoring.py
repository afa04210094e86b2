"""Scoring throughput (rows/s) at batch sizes 1, 100 and 10,000 with the production model.

    .venv/bin/python bench/bench_scoring.py [--models-dir DIR]

Features are the last of three simulated days replayed through the core (accounts have history by
then), so the share of rows that need reasons (review/block) is realistic.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fraudstream.config import get_settings
from fraudstream.model.dataset import LabeledHistory, replay
from fraudstream.model.examples import publish_example_model
from fraudstream.model.registry import Registry
from fraudstream.scoring import Scorer
from fraudstream.simulate.backfill import simulate_history

RESULTS = Path(__file__).parent / "results" / "bench_scoring.json"
BATCH_SIZES = (1, 100, 10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=get_settings().models_dir)
    parser.add_argument("--seconds", type=float, default=3.0, help="Time spent per batch size.")
    args = parser.parse_args()
    if Registry(args.models_dir).production_version() is None:
        args.models_dir = Path("bench/results/example-models")
        publish_example_model(args.models_dir)
    scorer = Scorer.from_registry(args.models_dir)
    history = simulate_history(3)
    features = replay(LabeledHistory(history.transactions, history.labels)).features
    last_day = history.transactions["event_time_us"] >= history.end_us - 86_400 * 1_000_000
    features = features[last_day.to_numpy()]
    table = Table(title=f"scoring with {scorer.model_version} ({args.models_dir})")
    for column in ("batch size", "rows/s", "ms per batch", "flagged rows"):
        table.add_column(column, justify="right")
    results = {}
    for size in BATCH_SIZES:
        batches = [features.iloc[i : i + size] for i in range(0, len(features) - size + 1, size)]
        rows = flagged = calls = 0
        began = time.perf_counter()
        while time.perf_counter() - began < args.seconds:
            batch = batches[calls % len(batches)]
            result = scorer.score(batch)
            rows += len(batch)
            flagged += int((result.decision != "approve").sum())
            calls += 1
        elapsed = time.perf_counter() - began
        results[size] = {"rows_per_second": rows / elapsed, "ms_per_batch": 1000 * elapsed / calls}
        table.add_row(f"{size:,}", f"{rows / elapsed:,.0f}", f"{1000 * elapsed / calls:.3f}", f"{flagged / rows:.2%}")
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"model_version": scorer.model_version, "batch_sizes": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
