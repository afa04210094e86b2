"""Analyst console server time on a large table: the alert queue (keyset against OFFSET at the same depth),
the overview refresh (the 005 views against the same figures from raw rows), and 20 SSE clients against
one shared query loop (rounds and database transactions counted).

    .venv/bin/python bench/bench_console.py [--rows 10000000] [--repeats 5] [--clients 20] [--seconds 10]

The table lives in a database of its own on the project's server (``fraudstream_bench_console``), filled
once with ``--rows`` scored transactions over 30 days (2 % flagged, one label per ten transactions, written
times spread like a live stream's) and kept for the next run (``--refill`` rebuilds it). Each time figure is
the median of ``--repeats`` runs of the function a page calls, measured in this process (server time,
no HTTP). Targets from issue 13: overview refresh <= 200 ms, queue page <= 150 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from fraudstream.config import get_settings
from fraudstream.console import aggregates, cases
from fraudstream.console.auth import create_user
from fraudstream.console.server import BackgroundConsole
from fraudstream.store.schema import migrate

RESULTS = Path(__file__).parent / "results" / "bench_console.json"
DATABASE = "fraudstream_bench_console"
CHUNK = 500_000
PASSWORD = "bench password 1"
DEEP_PAGES = 200

_FILL = """
INSERT INTO transactions (transaction_id, event_time, account_id, amount, currency, merchant_id, merchant_category,
    payment_method, channel, country, latitude, longitude, device_id, score, decision, reasons, model_version,
    engine, ingested_at, scored_at, written_at)
SELECT 'bench-' || lpad(i::text, 9, '0'), e.t, 'acct-' || (i %% 200000), 5 + (i %% 997), 'EUR', 'merch-' || (i %% 5000),
       'grocery', 'credit_card', (ARRAY['online', 'card_present', 'atm', 'mobile_app'])[1 + i %% 4],
       (ARRAY['DE', 'FR', 'IT', 'ES', 'NL'])[1 + i %% 5], 48.1, 11.6, 'dev-' || (i %% 300000), s.score,
       CASE WHEN s.score >= 0.99 THEN 'block' WHEN s.score >= 0.98 THEN 'review' ELSE 'approve' END,
       CASE WHEN s.score >= 0.98 THEN ARRAY['amount is 4.2x this account''s average', 'new device'] ELSE '{}' END,
       'v0001', 'bench', w.t - interval '150 ms', w.t - interval '100 ms', w.t
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i,
     LATERAL (SELECT timestamptz '2026-01-01' + (i * %(event_step)s) * interval '1 microsecond' AS t) AS e,
     LATERAL (SELECT %(written_from)s + (i * %(event_step)s) * interval '1 microsecond' AS t) AS w,
     LATERAL (SELECT (hashint8(i) & 1048575) / 1048576.0 AS score) AS s
"""
_LABELS = """
INSERT INTO labels (transaction_id, account_id, merchant_id, is_fraud, labeled_at, received_at)
SELECT transaction_id, account_id, merchant_id, score >= 0.985, event_time + interval '2 days',
       written_at + interval '1 minute'
FROM transactions WHERE transaction_id LIKE 'bench-%' AND (hashtext(transaction_id) % 10) = 0
ON CONFLICT (transaction_id) DO NOTHING
"""
#: The overview's chart and label figures computed from raw rows, as the console did before migration 005.
_RAW_OVERVIEW = (
    """SELECT date_trunc('minute', event_time), count(*), count(*) FILTER (WHERE decision <> 'approve'),
              percentile_cont(0.99) WITHIN GROUP (ORDER BY written_at - ingested_at)
       FROM transactions WHERE event_time > (SELECT max(event_time) FROM transactions) - interval '1 hour'
       GROUP BY 1""",
    """SELECT t.model_version, t.decision <> 'approve', l.is_fraud, count(*) FROM labels l
       JOIN transactions t USING (transaction_id)
       WHERE t.event_time > (SELECT max(event_time) FROM transactions) - interval '1 day' GROUP BY 1, 2, 3""",
)


def median_ms(function: Callable[[], Any], repeats: int) -> float:
    function()  # warm the caches once, as a page does on its second view
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def prepare(url: str, rows: int, refill: bool, out: Console) -> None:
    settings = get_settings()
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if exists and refill:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
            exists = None
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    migrate(url)
    with psycopg.connect(url, autocommit=True) as connection:
        have = connection.execute("SELECT count(*) FROM transactions").fetchone()[0]
        if have >= rows:
            return
        event_step = 30 * 86_400 * 1_000_000 // rows
        written_from = datetime.now(UTC) - timedelta(days=30)
        with Progress(console=out) as progress:
            task = progress.add_task(f"filling {rows:,} rows", total=rows, completed=have)
            for first in range(have, rows, CHUNK):
                connection.execute(_FILL, {"first": first, "last": min(rows, first + CHUNK) - 1,
                                           "event_step": event_step, "written_from": written_from})
                progress.update(task, completed=min(rows, first + CHUNK))
        out.print("labels, monitoring rollups, VACUUM ANALYZE")
        connection.execute(_LABELS)
        connection.execute("SELECT monitoring_refresh()")
        connection.execute("VACUUM ANALYZE")  # summarizes the BRIN ranges of the bulk load, as autovacuum would


def queue_figures(url: str, repeats: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as connection:
        def page(filters: cases.QueueFilter, cursor: str | None = None) -> cases.QueuePage:
            return cases.queue_page(connection, filters, cursor)

        deep: dict[str, str | None] = {}
        for order in cases.ORDERS:
            cursor = None
            for _ in range(DEEP_PAGES):
                cursor = page(cases.QueueFilter(order=order), cursor).next_cursor
            deep[order] = cursor
        offset_sql, params = cases.queue_sql(cases.QueueFilter(), None, cases.PAGE_SIZE)
        offset_sql = offset_sql.replace("LIMIT %(limit)s", f"LIMIT %(limit)s OFFSET {DEEP_PAGES * cases.PAGE_SIZE}")
        merchant = cases.QueueFilter(order="score", merchant_id="merch-42")
        return {
            "queue newest, first page": median_ms(lambda: page(cases.QueueFilter()), repeats),
            "queue by score, first page": median_ms(lambda: page(cases.QueueFilter(order="score")), repeats),
            f"queue newest, page {DEEP_PAGES + 1} (keyset)": median_ms(
                lambda: page(cases.QueueFilter(), deep["newest"]), repeats),
            f"queue by score, page {DEEP_PAGES + 1} (keyset)": median_ms(
                lambda: page(cases.QueueFilter(order="score"), deep["score"]), repeats),
            f"queue newest, page {DEEP_PAGES + 1} (OFFSET, baseline)": median_ms(
                lambda: connection.execute(offset_sql, params).fetchall(), repeats),
            "queue by score, one merchant": median_ms(lambda: page(merchant), repeats),
        }


def overview_figures(url: str, repeats: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as connection:
        return {
            "overview refresh (005 views)": median_ms(lambda: aggregates.overview(connection), repeats),
            "overview charts + labels from raw rows (baseline)": median_ms(
                lambda: [connection.execute(query).fetchall() for query in _RAW_OVERVIEW], repeats),
        }


def _transactions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                                  " WHERE datname = current_database()").fetchone()[0]


def sse_figures(url: str, clients: int, seconds: float, out: Console) -> dict[str, float]:
    """``clients`` browsers on the overview stream for ``seconds``: events each got, loop rounds, DB transactions."""
    settings = get_settings().model_copy(update={"database_url": url, "console_port": 0,
                                                 "console_overview_interval_s": 2.0,
                                                 "state_dir": get_settings().state_dir / "bench-console"})
    with psycopg.connect(url, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM console_users WHERE username = 'bench'").fetchone():
            create_user(connection, "bench", PASSWORD, "analyst")
    server = BackgroundConsole(settings).start()
    port = server.server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    login = httpx.Client(base_url=base)
    token = login.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    login.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
    cookies = dict(login.cookies)
    received = [0] * clients
    stop = threading.Event()

    def listen(index: int) -> None:
        try:
            with httpx.Client(base_url=base, cookies=cookies, timeout=None) as client, \
                    client.stream("GET", "/api/overview/stream") as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        received[index] += 1
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            return  # the server stopped first

    hub = server.server.config.app.state.console.hub
    threads = [threading.Thread(target=listen, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # every client connected (its session looked up once)
    before_rounds, before_transactions = hub.rounds, _transactions(url)
    time.sleep(seconds)
    rounds = hub.rounds - before_rounds
    time.sleep(1.0)  # the server's statistics are flushed about once a second
    transactions = _transactions(url) - before_transactions - 1
    stop.set()
    server.stop()
    out.print(f"SSE: {clients} clients, each got {min(received)}-{max(received)} snapshots in {seconds:g} s")
    return {"SSE clients": clients, "seconds": seconds, "query loop rounds": rounds,
            "database transactions": transactions, "transactions per round": transactions / max(rounds, 1),
            "snapshots per client (min)": min(received)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--refill", action="store_true", help="Drop and refill the bench database.")
    args = parser.parse_args()
    out = Console()
    url = make_conninfo(get_settings().database_url, dbname=DATABASE)
    prepare(url, args.rows, args.refill, out)
    timings = {**queue_figures(url, args.repeats), **overview_figures(url, args.repeats)}
    sse = sse_figures(url, args.clients, args.seconds, out)

    table = Table(title=f"console server time, {args.rows:,} transactions, median of {args.repeats}")
    table.add_column("what")
    table.add_column("ms", justify="right")
    for name, value in timings.items():
        table.add_row(name, f"{value:,.1f}")
    out.print(table)
    loop = Table(title="overview stream: one shared query loop")
    loop.add_column("what")
    loop.add_column("value", justify="right")
    for name, value in sse.items():
        loop.add_row(name, f"{value:,.2f}" if isinstance(value, float) else f"{value:,}")
    out.print(loop)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": args.rows, "repeats": args.repeats, "milliseconds": timings,
                                   "stream": sse}, indent=2) + "\n")


if __name__ == "__main__":
    main()
