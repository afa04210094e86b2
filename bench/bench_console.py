"""Analyst console server time on a large table: the alert queue (keyset against OFFSET at the same depth),
the overview refresh (the 005 views against the same figures from raw rows), and 20 SSE clients against
one shared query loop (rounds and database transactions counted).

    .venv/bin/python bench/bench_console.py [--rows 10000000] [--repeat 5] [--clients 20] [--seconds 10]

The table lives in a database of its own on the project's server (``fraudstream_bench_console``), filled
once with ``--rows`` scored transactions over 30 days (2 % flagged, one label per ten transactions, written
times spread like a live stream's) and kept for the next run (``--refill`` rebuilds it). Each time figure is
the median (min-max) of ``--repeat`` runs of the function a page calls, measured in this process (server time,
no HTTP). Targets from issue 13: overview refresh <= 200 ms, queue page <= 150 ms.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _report import BenchRun, add_repeat_argument, format_spread, spread
from psycopg import sql
from psycopg.conninfo import make_conninfo
from rich.console import Console
from rich.progress import Progress

from fraudstream.config import POSTGRES_APP_ROLE, get_settings
from fraudstream.console import aggregates, cases
from fraudstream.console.app import configure_session
from fraudstream.console.auth import create_user
from fraudstream.console.server import BackgroundConsole
from fraudstream.services import postgres
from fraudstream.store.schema import migrate
from fraudstream.timeunits import MICROS_PER_DAY

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


@dataclass(frozen=True)
class Timing:
    """Spreads (median, min, max) of one call: wall time, and CPU time of the database backend plus this
    process (the work itself, which a loaded shared machine does not inflate the way it inflates wall time)."""

    wall_ms: dict[str, float | int | None]
    cpu_ms: dict[str, float | int | None]


def _backend_cpu_ns(pid: int) -> int:
    """CPU time of a local PostgreSQL backend (ns, from /proc/<pid>/schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def median_ms(connection: psycopg.Connection, function: Callable[[], Any], repeats: int) -> Timing:
    function()  # warm the caches once, as a page does on its second view
    pid = connection.info.backend_pid
    walls, cpus = [], []
    for _ in range(repeats):
        backend, own, began = _backend_cpu_ns(pid), time.process_time_ns(), time.perf_counter()
        function()
        walls.append((time.perf_counter() - began) * 1000)
        cpus.append((_backend_cpu_ns(pid) - backend + time.process_time_ns() - own) / 1e6)
    return Timing(spread(walls), spread(cpus))


def prepare(url: str, rows: int, refill: bool, out: Console) -> None:
    settings = get_settings()
    with psycopg.connect(postgres.admin_url(settings), autocommit=True) as admin:  # the app role may not create one
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if exists and refill:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
            exists = None
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE),
                                                                        sql.Identifier(POSTGRES_APP_ROLE)))
    migrate(url)
    with psycopg.connect(url, autocommit=True) as connection:
        have = connection.execute("SELECT count(*) FROM transactions").fetchone()[0]
        if have >= rows:
            return
        event_step = 30 * MICROS_PER_DAY // rows
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


def queue_figures(url: str, repeats: int) -> dict[str, Timing]:
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
            "queue newest, first page": median_ms(connection, lambda: page(cases.QueueFilter()), repeats),
            "queue by score, first page": median_ms(
                connection, lambda: page(cases.QueueFilter(order="score")), repeats),
            f"queue newest, page {DEEP_PAGES + 1} (keyset)": median_ms(
                connection, lambda: page(cases.QueueFilter(), deep["newest"]), repeats),
            f"queue by score, page {DEEP_PAGES + 1} (keyset)": median_ms(
                connection, lambda: page(cases.QueueFilter(order="score"), deep["score"]), repeats),
            f"queue newest, page {DEEP_PAGES + 1} (OFFSET, baseline)": median_ms(
                connection, lambda: connection.execute(offset_sql, params).fetchall(), repeats),
            "queue by score, one merchant": median_ms(connection, lambda: page(merchant), repeats),
        }


def overview_figures(url: str, repeats: int) -> dict[str, Timing]:
    with psycopg.connect(url, autocommit=True) as connection:
        jit = median_ms(connection, lambda: aggregates.overview(connection), repeats)
        configure_session(connection)  # what the console's connections run first
        return {
            "overview refresh (005 views, server's default JIT)": jit,
            "overview refresh (005 views, console session: no JIT)": median_ms(
                connection, lambda: aggregates.overview(connection), repeats),
            "overview charts + labels from raw rows (baseline)": median_ms(
                connection, lambda: [connection.execute(query).fetchall() for query in _RAW_OVERVIEW], repeats),
        }


def _transactions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                                  " WHERE datname = current_database()").fetchone()[0]


class StatementCounter:
    """Counts the SQL statements this process sends (every psycopg execute goes through Cursor.execute)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        original = psycopg.Cursor.execute

        def counted(cursor: psycopg.Cursor, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.count += 1
            return original(cursor, *args, **kwargs)

        psycopg.Cursor.execute = counted  # type: ignore[method-assign]


def _stream_phase(base: str, cookies: dict[str, str], hub: Any, url: str, clients: int, seconds: float,
                  statements: StatementCounter) -> dict[str, float]:
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

    threads = [threading.Thread(target=listen, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while min(received) == 0 and time.monotonic() < deadline:  # every client connected (session looked up once)
        time.sleep(0.1)
    time.sleep(1.0)  # the server's statistics are flushed about once a second
    before_rounds, before_transactions, first = hub.rounds, _transactions(url), min(received)
    before_statements = statements.count
    time.sleep(seconds)
    rounds, sent = hub.rounds - before_rounds, statements.count - before_statements
    time.sleep(1.0)  # the server's statistics are flushed about once a second
    transactions = _transactions(url) - before_transactions - 1
    stop.set()
    for thread in threads:
        thread.join(10)  # each returns at its next snapshot
    return {"query loop rounds": rounds, "SQL statements sent by the console": sent,
            "statements per round": sent / max(rounds, 1),
            "database transactions (all sessions)": transactions,
            "transactions per round": transactions / max(rounds, 1),
            "snapshots per client (min)": min(received) - first}


def sse_figures(url: str, clients: int, seconds: float) -> dict[str, dict[str, float]]:
    """One client, then ``clients``, on the overview stream for ``seconds`` each: rounds of the shared loop,
    database transactions, snapshots each client got. One loop: the same rounds and queries for both."""
    settings = get_settings().model_copy(update={"database_url": url, "console_port": 0,
                                                 "console_overview_interval_s": 2.0,
                                                 "state_dir": get_settings().state_dir / "bench-console"})
    with psycopg.connect(url, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM console_users WHERE username = 'bench'").fetchone():
            create_user(connection, "bench", PASSWORD, "analyst")
    statements = StatementCounter()
    server = BackgroundConsole(settings).start()
    try:
        base = f"http://127.0.0.1:{server.server.servers[0].sockets[0].getsockname()[1]}"
        login = httpx.Client(base_url=base)
        token = login.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        login.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
        hub = server.server.config.app.state.console.hub
        return {f"{count} client{'s' if count > 1 else ''}": _stream_phase(base, dict(login.cookies), hub, url,
                                                                          count, seconds, statements)
                for count in (1, clients)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    add_repeat_argument(parser, default=5)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--refill", action="store_true", help="Drop and refill the bench database.")
    args = parser.parse_args()
    out = Console()
    url = make_conninfo(get_settings().database_url, dbname=DATABASE)
    prepare(url, args.rows, args.refill, out)
    with BenchRun("bench_console", settings=vars(args)) as run:
        timings = {**queue_figures(url, args.repeat), **overview_figures(url, args.repeat)}
        sse = sse_figures(url, args.clients, args.seconds)

        rows = [[name, format_spread(value.wall_ms, 1), format_spread(value.cpu_ms, 1)]
                for name, value in timings.items()]
        run.table(f"console server time, {args.rows:,} transactions", ["what", "wall ms", "CPU ms (database + client)"],
                  rows, note=f"median (min-max) of {args.repeat} calls each")
        phases = list(sse)
        loop = [[name, *(f"{figures[name]:,.2f}" if isinstance(figures[name], float) else f"{figures[name]:,}"
                         for figures in sse.values())] for name in next(iter(sse.values()))]
        run.table(f"overview stream, {args.seconds:g} s per phase: one shared query loop", ["what", *phases], loop)
        run.figures.update({"rows": args.rows, "repeats": args.repeat,
                            "milliseconds": {name: asdict(value) for name, value in timings.items()}, "stream": sse})


if __name__ == "__main__":
    main()
