"""The TimescaleDB flavour of the schema, run for real: every migration with its ``.timescale.sql`` part,
the continuous aggregates behind the monitoring views and their refresh policies, and every panel of
"Fraud overview", against TimescaleDB in PGlite (PostgreSQL compiled to WASM, in memory; see
tools/pglite-timescale/) served over the wire protocol. No TimescaleDB server is installable here.

PGlite is one backend (connections are served one after another) and runs no background workers, so the
policies' jobs are run here with ``CALL run_job(id)``: what a TimescaleDB server's scheduler does.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from monitoring_rows import START, assert_views_match, insert, label, mismatches

from fraudstream.console import aggregates
from fraudstream.monitoring import overview
from fraudstream.monitoring.sql import expand
from fraudstream.store.schema import migrate, migrations

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HARNESS = Path(__file__).resolve().parents[2] / "tools" / "pglite-timescale"
STARTUP_S = 180  # the WASM build unpacks PostgreSQL and TimescaleDB in memory: seconds, more on a busy machine

#: The continuous aggregates of migration 009, each with its refresh policy.
CONTINUOUS_AGGREGATES = {
    "monitoring_scored_cagg", "monitoring_payment_methods_cagg", "monitoring_countries_cagg",
    "monitoring_alert_merchants_cagg", "monitoring_alert_reasons_cagg", "monitoring_latency_ingest_to_score_cagg",
    "monitoring_latency_score_to_write_cagg", "monitoring_latency_ingest_to_write_cagg",
    "monitoring_latency_event_to_write_cagg"}
VIEWS = ("scored_per_minute", "segments_per_minute", "alert_merchants_per_minute", "alert_reasons_per_minute",
         "latency_per_minute", "label_outcomes_per_minute")


@pytest.fixture
def timescale_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty TimescaleDB (PGlite) server for one test; it stops when its standard input closes."""
    node = shutil.which("node")
    if node is None or not (HARNESS / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        pytest.fail(f"TimescaleDB-in-PGlite is not installed: run `make setup` (node + npm ci in {HARNESS})")
    log = tmp_path / "pglite-timescale.log"
    with log.open("w") as errors:
        process = subprocess.Popen([node, str(HARNESS / "server.mjs")], cwd=HARNESS, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=errors, text=True)
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(STARTUP_S)
    try:
        if not ready or not ready[0]:
            process.kill()
            process.wait()
            pytest.fail(f"pglite-timescale server did not start: {log.read_text()[-2000:]}")
        address = json.loads(ready[0])
        # any password: PGlite's socket server accepts every client (bound to 127.0.0.1 only)
        yield (f"postgresql://postgres:pglite@{address['host']}:{address['port']}/postgres"
               "?sslmode=disable&connect_timeout=60")
    finally:
        process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run_policies(connection: psycopg.Connection) -> list[str]:
    """Run every TimescaleDB job of the schema once (the continuous aggregates' refresh policies and the
    label-outcome refresh), as the server's scheduler would; returns the jobs' names."""
    jobs = connection.execute(
        "SELECT job_id, coalesce(hypertable_name, proc_name) FROM timescaledb_information.jobs"
        " WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'monitoring_refresh_job') ORDER BY 1").fetchall()
    for job_id, _ in jobs:
        connection.execute("CALL run_job(%s)", (job_id,))
    return [name for _, name in jobs]


def _columns(connection: psycopg.Connection, view: str) -> list[tuple[str, str]]:
    return connection.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (view,)).fetchall()


def test_timescale_schema_and_views_equal_direct_counts_through_policy_runs(timescale_url: str,
                                                                           scratch_url: str) -> None:
    report = migrate(timescale_url)
    assert report.flavour == "timescaledb"
    assert report.applied == [f"{m.version:03d}_{m.name}" for m in migrations()]
    assert migrate(timescale_url).applied == []  # idempotent
    migrate(scratch_url)
    with psycopg.connect(timescale_url, autocommit=True) as connection, \
            psycopg.connect(scratch_url, autocommit=True) as plain:
        assert connection.execute("SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall() \
            == [("transactions",)]
        caggs = dict(connection.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates").fetchall())
        assert caggs == dict.fromkeys(CONTINUOUS_AGGREGATES, False)  # real-time aggregation everywhere
        # the panels read the same names with the same columns on both flavours
        for view in VIEWS:
            assert _columns(connection, view) == _columns(plain, view), view

        insert(connection, 1, 3000, "2026-12-01 10:00+00")
        label(connection, 1, 500, "2026-12-01 10:00:30+00")
        assert_views_match(connection)  # nothing materialized yet: every view is computed from the raw rows
        jobs = _run_policies(connection)
        assert set(jobs) == CONTINUOUS_AGGREGATES | {"monitoring_refresh_job"}
        materialized = connection.execute(
            "SELECT count(*) FROM _timescaledb_catalog.continuous_agg WHERE _timescaledb_functions.to_timestamp("
            "_timescaledb_functions.cagg_watermark(mat_hypertable_id)) > %s::timestamptz", (START,)).fetchone()[0]
        assert materialized == len(CONTINUOUS_AGGREGATES)
        assert connection.execute("SELECT count(*) FROM label_outcomes_rollup").fetchone()[0] > 0
        assert_views_match(connection)

        # Late events in materialized minutes count from the next policy run on; rows after the
        # watermark (here: a later day) count at once through real-time aggregation; labels as in 005.
        insert(connection, 1, 600, None, prefix="late")
        label(connection, 501, 1500, None)
        label(connection, 1, 400, None, prefix="late")
        insert(connection, 1, 300, None, prefix="live", start="2099-01-01 00:00+00")
        assert {"scored", "merchants", "reasons", "latency"} <= set(mismatches(connection))
        assert connection.execute("SELECT sum(transactions) FROM scored_per_minute WHERE minute >= '2099-01-01'"
                                  ).fetchone()[0] == 300
        _run_policies(connection)
        assert_views_match(connection)
        _run_policies(connection)  # nothing new: changes nothing
        assert_views_match(connection)


def _same(got: list[tuple], expected: list[tuple]) -> bool:
    """Row lists equal, floats within rounding (sums over materialized buckets add in another order)."""
    def close(a: object, b: object) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        return a == b
    return len(got) == len(expected) and all(
        len(g) == len(e) and all(close(a, b) for a, b in zip(g, e, strict=True))
        for g, e in zip(got, expected, strict=True))


def test_every_overview_panel_returns_the_same_rows_on_both_flavours(timescale_url: str, scratch_url: str) -> None:
    """The same rows and labels on TimescaleDB and plain PostgreSQL, first part materialized (rolled up) and
    part live on each, then all materialized: every panel's query, expanded as Grafana expands it, and the
    console's aggregates return the same rows on both."""
    migrate(timescale_url)
    migrate(scratch_url)
    with psycopg.connect(timescale_url, autocommit=True) as timescale, \
            psycopg.connect(scratch_url, autocommit=True) as plain:
        refreshes = ((timescale, _run_policies),
                     (plain, lambda c: c.execute("SELECT monitoring_refresh(interval '0 seconds')")))
        for connection, refresh in refreshes:
            insert(connection, 1, 2000, "2026-12-01 10:00+00")
            label(connection, 1, 700, "2026-12-01 10:00:30+00")
            refresh(connection)
            # minutes after the materialized ones (12:34 to 12:44), and labels for rows of both parts
            insert(connection, 2001, 2600, None, start="2026-03-01 12:31+00")
            label(connection, 701, 1200, None)
            label(connection, 2001, 2300, None)
        _assert_same_panels(timescale, plain)
        for connection, refresh in refreshes:
            refresh(connection)
        _assert_same_panels(timescale, plain)


def _assert_same_panels(timescale: psycopg.Connection, plain: psycopg.Connection) -> None:
    start, end = datetime.fromisoformat(START), datetime.fromisoformat("2026-03-01 12:59:59+00")
    queries = {query.title: query.sql for query in overview.PANELS}
    queries["variable model_version"] = overview.MODEL_VERSIONS
    for interval in ("1m", "5m"):
        for model in ("all", "v0002"):
            for title, sql in queries.items():
                expanded = expand(sql, start, end, interval, {"model_version": model})
                got, expected = timescale.execute(expanded).fetchall(), plain.execute(expanded).fetchall()
                assert expected, f"{title}: no rows on plain PostgreSQL"
                assert _same(got, expected), f"{title} ({interval}, {model}): {got[:3]} != {expected[:3]}"
    # the console reads the same views (its "now" figures read raw rows by write time: not compared)
    console = {name: aggregates.overview(connection) for name, connection in (("ts", timescale), ("pg", plain))}
    for key in ("stream_minute", "chart", "labels", "alert_precision", "alert_recall"):
        assert console["ts"][key] == console["pg"][key], key
    assert console["pg"]["chart"]["scored"]
