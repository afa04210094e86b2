"""Soak: the local engine under a steady stream with labels for a long time (default 30 min at 5,000
events/s), one line per minute, and whether it stays healthy.

`fraudstream produce all` (normal customers and hacker scenarios on a simulated clock derived from the rate,
so every account transacts as often as in the simulated history; every transaction's label follows, fraud
after 1-21 simulated days, legitimate after 30-45) feeds one `fraudstream process` member on private
topics. Each minute the bench scrapes the member's metrics and reads the rows it wrote:

- RSS of the processor (``process_resident_memory_bytes``);
- keys in its feature state (``fraudstream_state_keys``: accounts and merchants, evicted after their TTL);
- consumer lag (sum over partitions) and label lag;
- events scored and labels stored that minute;
- p99 read -> database write of the minute's rows (``ingested_at`` -> ``written_at``, exact) and the p99
  bucket of producer send -> commit (``fraudstream_produce_to_commit_seconds``: an upper bound, the
  histogram's resolution).

The verdicts, as the reliability issue states them: RSS growth over the last 20 minutes (at most 5 %); the
lag never growing (its last-10-minute maximum no higher than 2 s of traffic, or than its earlier maximum);
state keys bounded (the last-10-minute maximum within 5 % of the earlier maximum once the population is
known). Results: through bench/_report.py into bench/results/.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--rate 5000] [--accounts 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from _report import BenchRun
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fraudstream import kafka
from fraudstream.config import Settings, get_settings
from fraudstream.demo import ensure_default_model, processor_env
from fraudstream.probes import NotReady, Samples, scrape, wait_until_assigned

LOGS = Path(__file__).with_name("results") / "logs"
FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
console = Console(width=150)


@dataclass
class Minute:
    minute: int
    load_1m: float
    rss_mb: float
    account_keys: int
    merchant_keys: int
    consumer_lag: int
    label_lag: int
    scored: int
    labels_stored: int
    read_to_write_p99_ms: float | None
    send_to_commit_p99_bucket_s: float | None


def total(samples: Samples, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


def p99_bucket(before: Samples, after: Samples, name: str) -> float | None:
    """The smallest bucket bound holding 99 % of the observations made between two scrapes."""
    def buckets(samples: Samples) -> dict[float, float]:
        return {float(dict(labels)["le"]): value for (sample, labels), value in samples.items()
                if sample == f"{name}_bucket"}

    start, end = buckets(before), buckets(after)
    counts = {bound: end[bound] - start.get(bound, 0.0) for bound in sorted(end)}
    observed = counts.get(float("inf"), 0.0)
    if observed <= 0:
        return None
    return next(bound for bound, count in counts.items() if count >= 0.99 * observed)


def read_to_write_p99_ms(connection: psycopg.Connection, since: datetime, until: datetime) -> float | None:
    """p99 of the rows written in the window (the soak's own: its stack writes nothing else meanwhile)."""
    row = connection.execute(
        "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ingested_at))"
        " FROM transactions WHERE written_at >= %s AND written_at < %s", (since, until)).fetchone()
    return None if row[0] is None else round(row[0] * 1000, 1)


def labels_stored(connection: psycopg.Connection, since: datetime, until: datetime) -> int:
    return connection.execute("SELECT count(*) FROM labels WHERE received_at >= %s AND received_at < %s",
                              (since, until)).fetchone()[0]


def soak_settings(base: Settings) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = base.model_copy(update={
        "transactions_topic": f"soak-tx-{tag}", "labels_topic": f"soak-labels-{tag}",
        "alerts_topic": f"soak-alerts-{tag}", "dlq_topic": f"soak-dlq-{tag}"})
    kafka.create_topics(settings)
    return settings


def verdicts(minutes: list[Minute], rate: float) -> dict[str, bool]:
    """The last 20 and 10 minutes of a 30-minute soak (two thirds and one third of a shorter one)."""
    tail, recent = min(20, len(minutes) * 2 // 3), min(10, len(minutes) // 3)
    window, earlier = minutes[-tail:], minutes[:-recent]
    rss_growth = window[-1].rss_mb / window[0].rss_mb - 1
    lag_ok = max(m.consumer_lag for m in minutes[-recent:]) <= max(2 * rate, max(m.consumer_lag for m in earlier))
    keys = [m.account_keys + m.merchant_keys for m in minutes]
    keys_ok = max(keys[-recent:]) <= 1.05 * max(keys[:-recent])
    return {f"RSS growth over the last {tail} min {rss_growth:+.1%} (at most +5 %)": rss_growth <= 0.05,
            f"consumer lag not growing in the last {recent} min": lag_ok,
            f"state keys bounded in the last {recent} min (within 5 % of the earlier maximum)": keys_ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("FRAUDSTREAM_SOAK_METRICS_PORT", 9477)))
    args = parser.parse_args()
    if args.minutes < 3:
        parser.error("--minutes must be at least 3: the verdicts compare the run's last third with the rest")
    with BenchRun("bench_soak", settings=vars(args)) as run:
        passed = soak(args, run)
    if not passed:
        raise SystemExit(1)


def soak(args: argparse.Namespace, run: BenchRun) -> bool:
    """One processor under the producer for the minutes asked; the per-minute table and the verdicts."""
    settings = soak_settings(get_settings())
    ensure_default_model(settings)
    logs = LOGS
    logs.mkdir(parents=True, exist_ok=True)
    group = f"soak-{uuid.uuid4().hex[:8]}"
    environment = processor_env(settings)
    member = subprocess.Popen([FRAUDSTREAM, "process", "--group", group, "--metrics-port", str(args.metrics_port)],
                              env=environment, stdout=(logs / f"{group}-process.log").open("ab"),
                              stderr=subprocess.STDOUT)
    producer = None
    minutes: list[Minute] = []
    try:
        try:
            wait_until_assigned(settings, group, metrics_ports=[args.metrics_port],
                                alive=lambda: member.poll() is None)
        except NotReady as error:
            raise SystemExit(f"the processor never took its partitions: {error} (log under {logs})") from None
        producer = subprocess.Popen(
            [FRAUDSTREAM, "produce", "all", "--rate", str(args.rate), "--duration", str(args.minutes * 60),
             "--accounts", str(args.accounts)],
            env=environment, stdout=(logs / f"{group}-produce.log").open("ab"), stderr=subprocess.STDOUT)
        with psycopg.connect(settings.database_url, autocommit=True) as connection, Progress(
                TextColumn("[bold]soak"), BarColumn(), TextColumn("minute {task.completed:.0f}/{task.total:.0f}"),
                TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("soak", total=args.minutes)
            previous, since = scrape(args.metrics_port), datetime.now(UTC)
            for minute in range(1, args.minutes + 1):
                time.sleep(max(0.0, 60 - (datetime.now(UTC) - since).total_seconds()))
                if member.poll() is not None:
                    raise SystemExit(f"the processor exited with {member.returncode} in minute {minute}")
                now, until = scrape(args.metrics_port), datetime.now(UTC)
                minutes.append(Minute(
                    minute=minute, load_1m=round(os.getloadavg()[0], 1),
                    rss_mb=round(total(now, "process_resident_memory_bytes") / 2**20, 1),
                    account_keys=int(now.get(("fraudstream_state_keys", (("kind", "account"),)), 0)),
                    merchant_keys=int(now.get(("fraudstream_state_keys", (("kind", "merchant"),)), 0)),
                    consumer_lag=int(total(now, "fraudstream_consumer_lag")),
                    label_lag=int(total(now, "fraudstream_label_lag")),
                    scored=int(now.get(("fraudstream_events_total", (("outcome", "scored"),)), 0)
                               - previous.get(("fraudstream_events_total", (("outcome", "scored"),)), 0)),
                    labels_stored=labels_stored(connection, since, until),
                    read_to_write_p99_ms=read_to_write_p99_ms(connection, since, until),
                    send_to_commit_p99_bucket_s=p99_bucket(previous, now, "fraudstream_produce_to_commit_seconds")))
                previous, since = now, until
                progress.update(task, completed=minute)
                row = minutes[-1]
                progress.console.print(
                    f"minute {minute}: RSS {row.rss_mb:,.0f} MB, keys {row.account_keys:,}+{row.merchant_keys:,},"
                    f" lag {row.consumer_lag:,}, scored {row.scored:,}, labels {row.labels_stored:,},"
                    f" read->write p99 {row.read_to_write_p99_ms} ms, load {row.load_1m}")
    finally:
        for process in (producer, member):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(60)

    results = verdicts(minutes, args.rate)
    run.table(f"soak: {args.rate:,.0f} events/s, {args.accounts:,} accounts, labels on",
              [name.replace("_", " ") for name in Minute.__dataclass_fields__],
              [[str(value) for value in asdict(row).values()] for row in minutes],
              note="; ".join(f"{'PASS' if ok else 'FAIL'} {text}" for text, ok in results.items()))
    run.figures.update({"minutes": [asdict(m) for m in minutes], "verdicts": results})
    return all(results.values())


if __name__ == "__main__":
    main()
