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
"> timeout"). Median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from fraudstream.config import get_settings
from fraudstream.monitoring import overview
from fraudstream.monitoring.sql import expand
from fraudstream.services import manager
from fraudstream.store.schema import migrate

RESULTS = Path(__file__).parent / "results" / "bench_dashboards.json"
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
                console: Console) -> dict[str, float | None]:
    """Median milliseconds per panel; None when a run hit the session's statement_timeout."""
    medians: dict[str, float | None] = {}
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
        medians[query.title] = statistics.median(runs) if runs else None
        console.print(f"  {query.title}: {medians[query.title] or 'timeout'}")
    return medians


def _ms(value: float | None, timeout_s: float) -> str:
    return f"{value:,.1f}" if value is not None else f"> {timeout_s * 1000:,.0f}"


def markdown(results: dict) -> str:
    """The results as the Markdown table the README shows (``--report`` prints it from the JSON)."""
    timeout = results["raw_timeout_s"]
    lines = [f"Last 6 h of {results['rows']:,} rows + {results['labels']:,} labels; ms, views median of "
             f"{results['repeat']}, raw scans median of {results['raw_repeat']}; the last "
             f"{results.get('tail_rows', 0):,} rows written after the rollups' refresh (the live tail); that "
             f"refresh of the other rows took {results['refresh_s']:.1f} s.", "",
             "| panel | views (ms) | raw scan (ms) |", "| --- | ---: | ---: |"]
    for title, view_ms in results["views_ms"].items():
        lines.append(f"| {title} | {_ms(view_ms, 0)} | {_ms(results['raw_ms'][title], timeout)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--labels", type=int, default=50_000)
    parser.add_argument("--tail-rows", type=int, default=10_000, help="Rows written after the last refresh.")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--raw-repeat", type=int, default=1, help="Runs of each raw scan (they take seconds).")
    parser.add_argument("--raw-timeout-s", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
    parser.add_argument("--report", action="store_true", help="Only print the last results as Markdown.")
    args = parser.parse_args()
    console = Console()
    if args.report:
        print(markdown(json.loads(RESULTS.read_text())))
        return
    settings = get_settings()
    manager.up(settings, ["postgres"])
    name = f"bench_dashboards_{uuid.uuid4().hex[:6]}"
    admin = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = settings.database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
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
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    table = Table(title=f"Fraud overview panels, last 6 h of {args.rows:,} rows + {args.labels:,} labels "
                        f"(views: median of {args.repeat}; raw: median of {args.raw_repeat})")
    for column in ("panel", "views (ms)", "raw scan (ms)", "speed-up"):
        table.add_column(column, justify="left" if column == "panel" else "right")
    for title, view_ms in views.items():
        raw_ms = raw[title]
        speed = f"{raw_ms / view_ms:,.0f}x" if raw_ms is not None and view_ms else "-"
        table.add_row(title, _ms(view_ms, 0), _ms(raw_ms, args.raw_timeout_s), speed)
    console.print(table)
    measured = [value for value in views.values() if value is not None]
    console.print(f"one refresh of {args.rows - args.tail_rows:,} rows into the rollups: {refresh_s:.1f} s; "
                  f"slowest panel through the views: {max(measured):.1f} ms")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": args.rows, "labels": args.labels, "repeat": args.repeat,
                                   "raw_repeat": args.raw_repeat, "raw_timeout_s": args.raw_timeout_s,
                                   "tail_rows": args.tail_rows,
                                   "refresh_s": refresh_s, "views_ms": views, "raw_ms": raw}, indent=2) + "\n")


if __name__ == "__main__":
    main()
