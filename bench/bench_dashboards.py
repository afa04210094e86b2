"""Latency of every "Fraud overview" panel query over the last 6 hours of a big table: the same SQL read
through the per-minute views (rollups + live tail) and through raw scans, side by side.

    .venv/bin/python bench/bench_dashboards.py [--rows 10000000] [--labels 50000] [--repeat 5] [--raw-repeat 1]

A scratch database on the project's PostgreSQL gets ``--rows`` scored rows spread over the last 6 hours
(written 1 s after their event time) and ``--labels`` labels; the rollups are refreshed once (its
duration is reported), then the last ``--tail-rows`` rows are written after the refresh, stamped by the
clock as the writer stamps them: the views' live tail, which every panel aggregates at query time. Its
size is the write rate times the refresher's interval: 10,000 = 2 s at 5,000 events/s. "raw" runs each
panel's exact SQL with the views shadowed by temporary views that aggregate the whole table at query
time (no rollup), ``--raw-repeat`` times, each stopped after ``--raw-timeout-s`` (reported as
"> timeout"). Median (min-max) of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import psycopg
from _database import scratch_database
from _report import BenchRun, add_repeat_argument, format_spread, spread
from psycopg import sql
from rich.console import Console

from fraudstream.config import get_settings
from fraudstream.monitoring import overview
from fraudstream.monitoring.sql import expand
from fraudstream.services import manager

VIEWS = {"scored_per_minute": "scored", "segments_per_minute": "segments", "alert_merchants_per_minute":
         "alert_merchants", "alert_reasons_per_minute": "alert_reasons", "latency_per_minute": "latency",
         "label_outcomes_per_minute": "label_outcomes"}
FILL = """
INSERT INTO transactions (transaction_id, event_time, account_id, amount, currency, merchant_id, merchant_category,
    payment_method, channel, country, latitude, longitude, device_id, score, decision, reasons, model_version,
    engine, ingested_at, scored_at, written_at)
SELECT 'b' || n, e, 'a' || n %% 200000, 5 + (n * 7919) %% 500, 'EUR', 'm' || (n * 31) %% 5000, 'retail',
    (ARRAY['credit_card', 'debit_card', 'bank_transfer', 'paypal', 'crypto'])[1 + n %% 5], 'online',
    (ARRAY['DE', 'FR', 'US', 'BR', 'GB', 'ES', 'IT', 'NL', 'PL', 'IN'])[1 + (n * 13) %% 10],
    40 + n %% 10, n %% 20, 'd', s, CASE WHEN s >= 0.9 THEN 'block' WHEN s >= 0.7 THEN 'review' ELSE 'approve' END,
    CASE WHEN s >= 0.7 THEN ARRAY['amount is ' || n %% 9 || '.5x this account''s average', 'made at night']
         ELSE '{}'::text[] END,
    'v0001', 'local', e + interval '20 ms', e + interval '30 ms',
    CASE WHEN %(live)s THEN clock_timestamp() ELSE e + interval '1 second' END
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n,
     LATERAL (SELECT %(start)s::timestamptz + (n - 1) * %(step)s::interval AS e,
                     ((n * 2654435761) %% 1000) / 1000.0 * ((n * 40503) %% 1000) / 1000.0 AS s) AS v
"""


def _insert_rows(connection: psycopg.Connection, first: int, last: int, rows: int, start: datetime,
                 console: Console, live: bool = False) -> None:
    """Rows first..last; ``live``: stamped by the clock as the writer does (after the rollups' watermark),
    else written 1 s after their event time (all before it)."""
    step = timedelta(hours=6) / rows
    for low in range(first, last + 1, 500_000):
        high = min(last, low + 499_999)
        connection.execute(FILL, {"first": low, "last": high, "start": start, "step": step, "live": live})
        console.print(f"  {high:,} / {rows:,} rows")


def fill(connection: psycopg.Connection, rows: int, labels: int, tail: int, start: datetime,
         console: Console) -> float:
    """All but ``tail`` rows (indexes built afterwards, which is faster than maintaining them), the labels,
    one refresh (its seconds are returned), then the ``tail`` rows through the indexes as a writer would."""
    indexes = connection.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'transactions'"
                                 " AND indexname <> 'transactions_pkey'").fetchall()
    connection.execute("ALTER TABLE transactions DROP CONSTRAINT transactions_pkey")
    for name, _ in indexes:
        connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    refreshed_at = rows - tail
    _insert_rows(connection, 1, refreshed_at, rows, start, console)
    console.print("  building indexes")
    connection.execute("ALTER TABLE transactions ADD PRIMARY KEY (transaction_id, event_time)")
    for _, definition in indexes:
        connection.execute(definition)
    connection.execute(f"INSERT INTO labels (transaction_id, is_fraud, labeled_at) SELECT 'b' || n, n % 7 = 0,"
                       f" now() FROM generate_series(1, {rows}, {max(1, rows // labels)}) AS n LIMIT {labels}")
    connection.execute("VACUUM ANALYZE transactions")
    began = time.perf_counter()
    connection.execute("SELECT monitoring_refresh(interval '0 seconds')")
    refresh_s = time.perf_counter() - began
    _insert_rows(connection, refreshed_at + 1, rows, rows, start, console, live=True)
    connection.execute("ANALYZE")
    in_views = connection.execute("SELECT sum(transactions) FROM scored_per_minute").fetchone()[0]
    if in_views != rows:
        raise SystemExit(f"the views hold {in_views:,} rows, the table {rows:,}")
    return refresh_s


def shadow_views(connection: psycopg.Connection) -> None:
    """Temporary views named like the real ones (found first on the search path) over the raw rows."""
    for view, stem in VIEWS.items():
        extra = ", monitoring_bucket_upper_ms(bucket) AS upper_ms" if stem == "latency" else ""
        columns = "minute, model_version, stage, bucket" + extra + ", transactions" if extra else "*"
        connection.execute(f"CREATE TEMP VIEW {view} AS SELECT {columns} FROM "
                           f"monitoring_{stem}_delta('-infinity', 'infinity')")


def time_panels(connection: psycopg.Connection, start: datetime, end: datetime, repeat: int,
                console: Console) -> dict[str, dict[str, float | int | None]]:
    """Milliseconds per panel, median (min-max) of the runs; no runs when one hit the statement_timeout."""
    timings: dict[str, dict[str, float | int | None]] = {}
    for query in overview.PANELS:
        text = expand(query.sql, start, end, "5m", {"model_version": "all"})
        runs = []
        for _ in range(repeat):
            began = time.perf_counter()
            try:
                connection.execute(text).fetchall()
            except psycopg.errors.QueryCanceled:
                runs = []
                break
            runs.append((time.perf_counter() - began) * 1000)
        timings[query.title] = spread(runs)
        console.print(f"  {query.title}: {format_spread(timings[query.title], 1) if runs else 'timeout'}")
    return timings


def _ms(value: dict[str, float | int | None], timeout_s: float) -> str:
    return format_spread(value, 1) if value["runs"] else f"> {timeout_s * 1000:,.0f}"


def measure(args: argparse.Namespace, url: str, console: Console) -> tuple[float, dict, dict]:
    """Fill the scratch database, time every panel through the views and over raw scans."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(hours=6)
    with psycopg.connect(url, autocommit=True) as connection:
        console.print(f"[bold]filling[/] {args.rows:,} rows over the last 6 h, {args.labels:,} labels")
        refresh_s = fill(connection, args.rows, args.labels, args.tail_rows, start, console)
        console.print("[bold]panels through the views[/]")
        views = time_panels(connection, start, end, args.repeat, console)
        shadow_views(connection)
        connection.execute(f"SET statement_timeout = {int(args.raw_timeout_s * 1000)}")
        console.print("[bold]panels over raw scans[/]")
        raw = time_panels(connection, start, end, args.raw_repeat, console)
    return refresh_s, views, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--labels", type=int, default=50_000)
    parser.add_argument("--tail-rows", type=int, default=10_000, help="Rows written after the last refresh.")
    add_repeat_argument(parser, default=5)
    parser.add_argument("--raw-repeat", type=int, default=1, help="Runs of each raw scan (they take seconds).")
    parser.add_argument("--raw-timeout-s", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
    args = parser.parse_args()
    console = Console()
    settings = get_settings()
    manager.up(settings, ["postgres"])
    with BenchRun("bench_dashboards", settings=vars(args)) as run:
        with scratch_database(settings, "bench_dashboards", keep=args.keep) as url:
            refresh_s, views, raw = measure(args, url, console)
        rows = []
        for title, view_ms in views.items():
            raw_ms = raw[title]
            speed = (f"{raw_ms['median'] / view_ms['median']:,.0f}x" if raw_ms["runs"] and view_ms["runs"]
                     else "-")
            rows.append([title, _ms(view_ms, 0), _ms(raw_ms, args.raw_timeout_s), speed])
        measured = [value["median"] for value in views.values() if value["runs"]]
        run.table(f"Fraud overview panels, last 6 h of {args.rows:,} rows + {args.labels:,} labels",
                  ["panel", "views (ms)", "raw scan (ms)", "speed-up (medians)"], rows,
                  note=f"views: median (min-max) of {args.repeat}; raw: of {args.raw_repeat}, stopped after "
                       f"{args.raw_timeout_s:g} s; the last {args.tail_rows:,} rows written after the rollups' "
                       f"refresh (the live tail); one refresh of {args.rows - args.tail_rows:,} rows into the "
                       f"rollups: {refresh_s:.1f} s; slowest panel through the views: {max(measured):.1f} ms")
        run.figures.update({"refresh_s": refresh_s, "views_ms": views, "raw_ms": raw})


if __name__ == "__main__":
    main()
