"""Feature throughput: bulk replay (as training runs it) and micro-batches on a warm state (as the
local engine runs it), in events per CPU-second (comparable on a shared machine) and per wall second.

    .venv/bin/python bench/bench_features.py [--days 7] [--partitions 6]

Micro-batches run on the state of the first days-1 days (the default population with history) and
feed the last day: alone (one state), and split over per-partition states like the local engine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from fraudstream.config import get_settings
from fraudstream.features import FeatureState, replay_partitioned
from fraudstream.features.replay import partitions_of
from fraudstream.model.dataset import LabeledHistory, replay
from fraudstream.simulate.backfill import simulate_history
from fraudstream.timeunits import MICROS_PER_DAY

RESULTS = Path(__file__).parent / "results" / "bench_features.json"


def timed(run: callable, events: int) -> dict[str, float]:  # type: ignore[valid-type]
    began, began_cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    return {"events": events, "events_per_second": events / wall, "events_per_cpu_second": events / cpu}


def micro_batches(states: list[FeatureState], tail: pd.DataFrame, size: int, partitions: int) -> dict[str, float]:
    """Batches of ``size`` events split by partition, each part to its partition's state."""
    partition = partitions_of(tail["account_id"].to_numpy(dtype=object), partitions)
    parts = [
        tail.iloc[start : start + size][partition[start : start + size] == number]
        for start in range(0, len(tail), size)
        for number in range(partitions)
    ]
    parts = [(part, states[number % partitions]) for number, part in enumerate(parts) if len(part)]
    figures = timed(lambda: [state.process(part) for part, state in parts], len(tail))
    figures["events_per_call"] = len(tail) / len(parts)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=get_settings().transactions_partitions)
    args = parser.parse_args()
    history = simulate_history(args.days)
    labeled = LabeledHistory(history.transactions, history.labels)
    bulk = replay(labeled, args.partitions)
    rows: dict[str, dict[str, float]] = {
        f"bulk replay, {args.partitions} partition states": {
            "events": len(labeled.transactions),
            "events_per_second": bulk.events_per_second,
            "events_per_cpu_second": bulk.cpu_events_per_second,
        }
    }
    times = labeled.transactions["event_time_us"].to_numpy(dtype=np.int64)
    cut = int(np.searchsorted(times, times.max() - MICROS_PER_DAY))
    warm, tail = labeled.transactions.iloc[:cut], labeled.transactions.iloc[cut:]
    for partitions in (1, args.partitions):
        states = [FeatureState() for _ in range(partitions)]
        replay_partitioned(warm, labeled.labels, None, partitions, states=states)
        snapshots = [state.snapshot() for state in states]
        for size in (1, 100, 1_000, 5_000):
            events = tail.iloc[: min(len(tail), 200 * size)]
            fresh = [FeatureState.restore(blob) for blob in snapshots]
            rows[f"micro-batches of {size:,}, {partitions} state(s)"] = micro_batches(fresh, events, size, partitions)
    load = os.getloadavg()[0]
    table = Table(title=f"features: {len(labeled.transactions):,} events, {args.days} simulated days, load {load:.1f}")
    for column in ("mode", "events/CPU-s", "events/s (wall)", "events per call"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for mode, figures in rows.items():
        per_call = figures.get("events_per_call")
        table.add_row(mode, f"{figures['events_per_cpu_second']:,.0f}", f"{figures['events_per_second']:,.0f}",
                      f"{per_call:,.0f}" if per_call else "")
    stats = bulk.stats
    table.caption = f"{stats.accounts:,} accounts, {stats.bytes_per_account:,.0f} state bytes per account"
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"load_average": load, "modes": rows,
                                   "bytes_per_account": stats.bytes_per_account}, indent=2) + "\n")


if __name__ == "__main__":
    main()
