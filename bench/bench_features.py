"""Feature throughput: bulk replay (as training runs it) and micro-batches on a warm state (as the
local engine runs it), in events per CPU-second (comparable on a shared machine) and per wall second.

    .venv/bin/python bench/bench_features.py [--days 7] [--partitions 6] [--repeat 3]

Micro-batches run on the state of the first days-1 days (the default population with history) and
feed the last day: alone (one state), and split over per-partition states like the local engine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from _report import BenchRun, add_repeat_argument, format_spread, spread

from fraudstream.config import get_settings
from fraudstream.features import FeatureState, replay_partitioned
from fraudstream.features.replay import partitions_of
from fraudstream.model.dataset import LabeledHistory, replay
from fraudstream.simulate.backfill import simulate_history
from fraudstream.timeunits import MICROS_PER_DAY


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


def measure_once(args: argparse.Namespace, labeled: LabeledHistory) -> tuple[dict[str, dict[str, float]], object]:
    """Every mode once: the bulk replay and micro-batches on warm states (restored from snapshots)."""
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
    return rows, bulk.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=get_settings().transactions_partitions)
    add_repeat_argument(parser)
    args = parser.parse_args()
    history = simulate_history(args.days)
    labeled = LabeledHistory(history.transactions, history.labels)
    with BenchRun("bench_features", settings=vars(args)) as run:
        measured = [measure_once(args, labeled) for _ in range(args.repeat)]
        stats = measured[0][1]
        modes = {mode: {key: spread(rows[mode][key] for rows, _ in measured)
                        for key in ("events_per_cpu_second", "events_per_second")} for mode in measured[0][0]}
        table = [[mode, format_spread(figures["events_per_cpu_second"]), format_spread(figures["events_per_second"]),
                  f"{measured[0][0][mode]['events_per_call']:,.0f}" if "events_per_call" in measured[0][0][mode]
                  else "-"] for mode, figures in modes.items()]
        run.table(f"features: {len(labeled.transactions):,} events, {args.days} simulated days",
                  ["mode", "events/CPU-s", "events/s (wall)", "events per call"], table,
                  note=f"median (min-max) of {args.repeat} runs; {stats.accounts:,} accounts, "
                       f"{stats.bytes_per_account:,.0f} state bytes per account")
        run.figures.update({"modes": modes, "bytes_per_account": stats.bytes_per_account})


if __name__ == "__main__":
    main()
