"""Simulator throughput: backfilling to Parquet and unlimited-rate producing to Kafka from one process.

Run: .venv/bin/python bench/bench_simulator.py [--days 30] [--events 500000]
Targets (issue 3): >= 200,000 events/s backfilled, >= 50,000 events/s to Kafka.
The machine may be shared: "CPU s" (this process's CPU time, all threads) beside wall-clock seconds
shows how much of the wall time was spent waiting for a core. Results are printed as one table and
written to bench/results/bench_simulator-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fraudstream import kafka
from fraudstream.config import get_settings
from fraudstream.history import write_history
from fraudstream.simulate.backfill import simulate_history
from fraudstream.simulate.live import produce_live

RESULTS = Path(__file__).parent / "results"


def bench_backfill(days: int) -> list[dict[str, object]]:
    """Simulate then write; the figure that matters is events over the total."""
    began, began_cpu = time.perf_counter(), time.process_time()
    history = simulate_history(days)
    simulated, simulated_cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        write_history(history, folder)
    written, written_cpu = time.perf_counter(), time.process_time()
    events = history.transactions_table.num_rows
    return [
        {"benchmark": f"backfill {days} days: simulate", "events": events, "seconds": simulated - began,
         "cpu_seconds": simulated_cpu - began_cpu},
        {"benchmark": f"backfill {days} days: write parquet", "events": events, "seconds": written - simulated,
         "cpu_seconds": written_cpu - simulated_cpu},
        {"benchmark": f"backfill {days} days: total", "events": events, "seconds": written - began,
         "cpu_seconds": written_cpu - began_cpu, "target_events_per_s": 200_000},
    ]


def bench_kafka(events: int) -> list[dict[str, object]]:
    """Unlimited rate through the live producer (generation in its helper thread, orjson, batching)."""
    settings = get_settings()
    kafka.wait_for_broker(settings)
    began_cpu = time.process_time()
    topic = f"bench-simulator-{uuid.uuid4().hex[:8]}"
    kafka.create_topics(settings, {topic: settings.transactions_partitions, f"{topic}-labels": 3})
    try:
        summary = produce_live(settings, "all", rate=None, max_events=events, progress=False,
                               transactions_topic=topic, labels_topic=f"{topic}-labels")
    finally:
        kafka.admin(settings).delete_topics([topic, f"{topic}-labels"])
    return [{"benchmark": "kafka produce, unlimited rate (one process)", "events": summary.events_sent,
             "seconds": summary.sending_s, "cpu_seconds": time.process_time() - began_cpu,
             "target_events_per_s": 50_000,
             "labels": summary.labels_sent, "delivery_failures": summary.delivery_failures}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30, help="days of history to backfill")
    parser.add_argument("--events", type=int, default=500_000, help="events to produce to Kafka")
    parser.add_argument("--skip-kafka", action="store_true", help="only the backfill")
    arguments = parser.parse_args()

    rows = bench_backfill(arguments.days)
    if not arguments.skip_kafka:
        rows += bench_kafka(arguments.events)
    for row in rows:
        row["events_per_s"] = row["events"] / row["seconds"]

    table = Table(title="simulator throughput")
    for column in ("benchmark", "events", "seconds", "events/s", "CPU s", "target"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for row in rows:
        target = row.get("target_events_per_s")
        verdict = "" if target is None else f"{target:,} {'ok' if row['events_per_s'] >= target else 'MISSED'}"
        table.add_row(str(row["benchmark"]), f"{row['events']:,}", f"{row['seconds']:.2f}",
                      f"{row['events_per_s']:,.0f}", f"{row['cpu_seconds']:.2f}", verdict)
    Console().print(table)

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = RESULTS / f"bench_simulator-{stamp}.json"
    output.write_text(json.dumps({"when": stamp, "machine": platform.platform(), "rows": rows}, indent=2))
    Console().print(f"results: {output}")


if __name__ == "__main__":
    main()
