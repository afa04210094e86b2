"""Simulator throughput: backfilling to Parquet and unlimited-rate producing to Kafka from one process.

Run: .venv/bin/python bench/bench_simulator.py [--days 30] [--events 500000] [--repeat 3]
Targets (issue 3): >= 200,000 events/s backfilled, >= 50,000 events/s to Kafka.
The machine may be shared: "CPU s" (this process's CPU time, all threads) beside wall-clock seconds
shows how much of the wall time was spent waiting for a core. Kafka production is timed until the broker
confirmed delivery of every message (after the producer's flush), not until the messages were enqueued.
Results: one table, written by bench/_report.py to bench/results/.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid

from _report import BenchRun, add_repeat_argument, format_spread, spread
from confluent_kafka import TopicPartition

from fraudstream import kafka
from fraudstream.config import Settings, get_settings
from fraudstream.history import write_history
from fraudstream.simulate.backfill import simulate_history
from fraudstream.simulate.live import produce_live


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


def delivered_count(settings: Settings, topic: str) -> int:
    """Messages the broker holds in ``topic`` (sum of high watermarks): delivery checked by the broker's count."""
    consumer = kafka.consumer(settings, f"bench-simulator-{uuid.uuid4().hex[:8]}")
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=10)[1]
                   for number in partitions)
    finally:
        consumer.close()


def bench_kafka(events: int) -> dict[str, object]:
    """Unlimited rate through the live producer (generation in its helper thread, orjson, batching), timed
    from the call until every message is delivered (``produce_live`` returns after the producer's flush), and
    the count checked against the topic's offsets: enqueueing alone is not production."""
    settings = get_settings()
    kafka.wait_for_broker(settings)
    topic = f"bench-simulator-{uuid.uuid4().hex[:8]}"
    kafka.create_topics(settings, {topic: settings.transactions_partitions, f"{topic}-labels": 3})
    try:
        began, began_cpu = time.perf_counter(), time.process_time()
        summary = produce_live(settings, "all", rate=None, max_events=events, progress=False,
                               transactions_topic=topic, labels_topic=f"{topic}-labels")
        delivered_s, cpu_s = time.perf_counter() - began, time.process_time() - began_cpu
        stored = delivered_count(settings, topic)
    finally:
        kafka.admin(settings).delete_topics([topic, f"{topic}-labels"])
    if summary.delivery_failures or stored != summary.events_sent:
        raise RuntimeError(f"{summary.events_sent:,} events sent but {stored:,} in the topic and "
                           f"{summary.delivery_failures} undelivered: the figure would count lost messages")
    return {"benchmark": "kafka produce, unlimited rate (one process), until delivered", "events": stored,
            "seconds": delivered_s, "cpu_seconds": cpu_s, "enqueue_seconds": summary.sending_s,
            "target_events_per_s": 50_000, "labels": summary.labels_sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30, help="days of history to backfill")
    parser.add_argument("--events", type=int, default=500_000, help="events to produce to Kafka")
    parser.add_argument("--skip-kafka", action="store_true", help="only the backfill")
    add_repeat_argument(parser)
    arguments = parser.parse_args()

    with BenchRun("bench_simulator", settings=vars(arguments)) as run:
        runs: list[list[dict[str, object]]] = []
        for _ in range(arguments.repeat):
            rows = bench_backfill(arguments.days)
            if not arguments.skip_kafka:
                rows.append(bench_kafka(arguments.events))
            for row in rows:
                row["events_per_s"] = row["events"] / row["seconds"]
            runs.append(rows)
        table = []
        for position, first in enumerate(runs[0]):
            same = [rows[position] for rows in runs]
            rate = spread(row["events_per_s"] for row in same)
            target = first.get("target_events_per_s")
            verdict = "" if target is None else f"{target:,} {'ok' if rate['median'] >= target else 'MISSED'}"
            seconds, cpu = spread(r["seconds"] for r in same), spread(r["cpu_seconds"] for r in same)
            table.append([first["benchmark"], f"{first['events']:,}", format_spread(seconds, 2), format_spread(rate),
                          format_spread(cpu, 2), verdict])
        run.table("simulator throughput", ["benchmark", "events", "seconds", "events/s", "CPU s", "target (median)"],
                  table, note=f"median (min-max) of {arguments.repeat} runs; Kafka: from the call until the broker "
                              "confirmed every message (labels included), the count checked against the topic")
        for first, position in ((row, number) for number, row in enumerate(runs[0]) if "target_events_per_s" in row):
            median = spread(rows[position]["events_per_s"] for rows in runs)["median"]
            run.target(str(first["benchmark"]), median, first["target_events_per_s"], first["target_events_per_s"],
                       " ev/s")
        run.figures["runs"] = runs


if __name__ == "__main__":
    main()
