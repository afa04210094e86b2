"""Feature replay throughput: simulated history through FeatureState, in bulk chunks and micro-batches.

.venv/bin/python bench/bench_features.py [--days 7]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fraudstream.config import get_settings
from fraudstream.features import FeatureState
from fraudstream.model.dataset import LabeledHistory, replay
from fraudstream.simulate.backfill import simulate_history

RESULTS = Path(__file__).parent / "results" / "bench_features.json"


def micro_batches(history: LabeledHistory, size: int, events: int) -> float:
    """Events/s when the local engine feeds batches of ``size`` (labels up front: same features)."""
    state = FeatureState()
    state.apply_labels(history.labels)
    frames = [history.transactions.iloc[i : i + size] for i in range(0, events, size)]
    began = time.perf_counter()
    for frame in frames:
        state.process(frame)
    return events / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    history = simulate_history(args.days)
    labeled = LabeledHistory(history.transactions, history.labels)
    result = replay(labeled, get_settings().transactions_partitions)
    rows = {
        "bulk replay (200,000-event chunks, labels as they arrive), wall": result.events_per_second,
        "bulk replay, per CPU-second of this process": result.cpu_events_per_second,
    }
    for size in (1, 100, 5_000):
        rows[f"micro-batches of {size:,}"] = micro_batches(labeled, size, min(len(labeled.transactions), 200 * size))
    table = Table(title=f"feature replay: {len(labeled.transactions):,} events, {args.days} simulated days")
    table.add_column("mode")
    table.add_column("events/s", justify="right")
    for mode, rate in rows.items():
        table.add_row(mode, f"{rate:,.0f}")
    stats = result.stats
    table.caption = f"{stats.accounts:,} accounts, {stats.bytes_per_account:,.0f} state bytes per account"
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "events": len(labeled.transactions),
                "events_per_second": rows,
                "bytes_per_account": stats.bytes_per_account,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
