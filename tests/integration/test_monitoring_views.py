"""The per-minute monitoring views (migration 005) agree with direct counts over the raw rows, before any
refresh (all live tail), after one, and after more rows, late events and labels arrive in either order."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from fraudstream.config import Settings
from fraudstream.services import manager
from fraudstream.store.schema import migrate

pytestmark = pytest.mark.integration

# n rows; event times spread over 30 minutes, written 2 s after; every 7th flagged, every 21st blocked.
_INSERT = """
INSERT INTO transactions (transaction_id, event_time, account_id, amount, currency, merchant_id, merchant_category,
    payment_method, channel, country, latitude, longitude, device_id, score, decision, reasons, model_version,
    is_late, engine, ingested_at, scored_at, written_at)
SELECT %(prefix)s || n, e, 'a' || n %% 50, 10 + n %% 90, 'EUR', 'm' || n %% 13, 'grocery',
    (ARRAY['credit_card', 'paypal', 'crypto'])[1 + n %% 3], 'online', (ARRAY['DE', 'FR', 'US', 'BR'])[1 + n %% 4],
    40 + n %% 4, n %% 4 * 10, 'd', (n %% 100) / 100.0,
    CASE WHEN n %% 21 = 0 THEN 'block' WHEN n %% 7 = 0 THEN 'review' ELSE 'approve' END,
    CASE WHEN n %% 7 = 0 THEN ARRAY['amount is ' || n || '.5x this account''s average', 'made at night']
         ELSE '{}'::text[] END,
    (ARRAY['v0001', 'v0002'])[1 + n %% 2], n %% 11 = 0, 'local', e + interval '20 ms', e + interval '35 ms',
    coalesce(%(written)s::timestamptz + n * interval '1 ms', clock_timestamp())
FROM generate_series(%(first)s::integer, %(last)s::integer) AS n,
     LATERAL (SELECT %(start)s::timestamptz + (n %% 1800) * interval '1 second') AS t(e)
"""
_LABEL = """
INSERT INTO labels (transaction_id, is_fraud, labeled_at, received_at)
SELECT %(prefix)s || n, n %% 3 = 0, now(), coalesce(%(received)s::timestamptz, clock_timestamp())
FROM generate_series(%(first)s::integer, %(last)s::integer) AS n
"""

# (view query, the same figures straight from the raw rows)
_CHECKS = {
    "scored": (
        "SELECT minute, decision, sum(transactions), sum(late), round(sum(amount)::numeric, 6)"
        " FROM scored_per_minute GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT date_trunc('minute', event_time), decision, count(*), count(*) FILTER (WHERE is_late),"
        " round(sum(amount)::numeric, 6) FROM transactions GROUP BY 1, 2 ORDER BY 1, 2"),
    "score histogram": (
        "SELECT score_bucket, sum(transactions) FROM scored_per_minute GROUP BY 1 ORDER BY 1",
        "SELECT least(floor(score * 20), 19) / 20.0, count(*) FROM transactions GROUP BY 1 ORDER BY 1"),
    "countries": (
        "SELECT value, decision, sum(transactions), round((sum(latitude_sum) / sum(transactions))::numeric, 6)"
        " FROM segments_per_minute WHERE segment = 'country' GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT country, decision, count(*), round(avg(latitude)::numeric, 6) FROM transactions GROUP BY 1, 2"
        " ORDER BY 1, 2"),
    "payment methods": (
        "SELECT value, model_version, sum(transactions) FROM segments_per_minute WHERE segment = 'payment_method'"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT payment_method, model_version, count(*) FROM transactions GROUP BY 1, 2 ORDER BY 1, 2"),
    "merchants": (
        "SELECT merchant_id, sum(alerts) FROM alert_merchants_per_minute GROUP BY 1 ORDER BY 1",
        "SELECT merchant_id, count(*) FROM transactions WHERE decision <> 'approve' GROUP BY 1 ORDER BY 1"),
    "reasons": (
        "SELECT reason, sum(alerts) FROM alert_reasons_per_minute GROUP BY 1 ORDER BY 1",
        "SELECT regexp_replace(r, '[0-9][0-9,.]*', '…', 'g'), count(*) FROM transactions, unnest(reasons) r"
        " GROUP BY 1 ORDER BY 1"),
    "latency": (
        "SELECT stage, sum(transactions) FROM latency_per_minute GROUP BY 1 ORDER BY 1",
        "SELECT stage, count(*) FROM transactions, (VALUES ('event_to_write'), ('ingest_to_score'),"
        " ('ingest_to_write'), ('score_to_write')) AS s(stage) GROUP BY 1 ORDER BY 1"),
    "labels": (
        "SELECT decision, is_fraud, sum(transactions) FROM label_outcomes_per_minute GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT t.decision, l.is_fraud, count(*) FROM transactions t JOIN labels l USING (transaction_id)"
        " GROUP BY 1, 2 ORDER BY 1, 2"),
}


def _assert_views_match(connection: psycopg.Connection) -> None:
    for name, (view, direct) in _CHECKS.items():
        got, expected = connection.execute(view).fetchall(), connection.execute(direct).fetchall()
        assert got == expected, name
        assert got, f"{name}: no rows"


def _insert(connection: psycopg.Connection, first: int, last: int, written: str | None,
            prefix: str = "t") -> None:
    """Rows written at ``written`` (+1 ms each), or at the clock as the writer stamps them (None)."""
    connection.execute(_INSERT, {"prefix": prefix, "first": first, "last": last, "written": written,
                                 "start": "2026-03-01 12:00+00"})


def _label(connection: psycopg.Connection, first: int, last: int, received: str | None, prefix: str = "t") -> None:
    connection.execute(_LABEL, {"prefix": prefix, "first": first, "last": last, "received": received})


def _refresh(connection: psycopg.Connection) -> None:
    connection.execute("SELECT monitoring_refresh()")


def test_views_equal_direct_counts_through_refreshes_late_rows_and_labels(scratch_url: str) -> None:
    migrate(scratch_url)
    with psycopg.connect(scratch_url, autocommit=True) as connection:
        _insert(connection, 1, 3000, "2026-12-01 10:00+00")
        _label(connection, 1, 500, "2026-12-01 10:00:30+00")
        _assert_views_match(connection)  # nothing refreshed: the views are all live tail
        # scored_at - ingested_at is 15 ms for every row: one bucket, whose upper bound is within 10%
        buckets = connection.execute("SELECT upper_ms, sum(transactions) FROM latency_per_minute"
                                     " WHERE stage = 'ingest_to_score' GROUP BY 1").fetchall()
        assert len(buckets) == 1 and 15 <= buckets[0][0] < 16.5 and buckets[0][1] == 3000

        _refresh(connection)
        assert connection.execute("SELECT count(*) FROM scored_rollup").fetchone()[0] > 0
        assert connection.execute("SELECT count(*) FROM label_outcomes_rollup").fetchone()[0] > 0
        _assert_views_match(connection)

        # Labels for rows already rolled up; labels that arrive before their rows; late events in old
        # minutes (all stamped by the clock, as the writer does); rows stamped in the future (left in the tail).
        _label(connection, 501, 1500, None)
        _label(connection, 1, 400, None, prefix="late")
        _insert(connection, 1, 600, None, prefix="late")
        _insert(connection, 1, 300, "2099-01-01 00:00+00", prefix="future")
        _label(connection, 1, 100, "2099-01-01 00:00+00", prefix="future")
        _assert_views_match(connection)
        time.sleep(1.1)  # past the refresh's margin
        _refresh(connection)
        _assert_views_match(connection)
        _refresh(connection)  # nothing new: adds nothing
        _assert_views_match(connection)
        in_tail = connection.execute(
            "SELECT sum(transactions) FROM monitoring_watermark w, monitoring_scored_delta(w.refreshed_to,"
            " 'infinity')").fetchone()[0]
        assert in_tail == 300


def test_refresh_stops_before_an_open_writing_transaction(scratch_url: str) -> None:
    migrate(scratch_url)
    with psycopg.connect(scratch_url) as writer, psycopg.connect(scratch_url, autocommit=True) as refresher:
        _insert(writer, 1, 100, None)  # stamped by the clock, long before its commit
        _label(writer, 1, 50, None)
        time.sleep(1.5)
        _refresh(refresher)
        writer.commit()
        _assert_views_match(refresher)  # the rows are in the tail, not lost behind the watermark
        _refresh(refresher)
        assert refresher.execute("SELECT sum(transactions) FROM scored_rollup").fetchone()[0] == 100
        _assert_views_match(refresher)


def test_refresher_service_keeps_the_rollups_current(postgres_ready: Settings, scratch_url: str,
                                                     tmp_path: Path) -> None:
    """`services up refresher` (part of `services up monitoring`) runs `fraudstream monitoring refresh --every`."""
    migrate(scratch_url)
    settings = postgres_ready.model_copy(update={"database_url": scratch_url, "state_dir": tmp_path})
    with psycopg.connect(scratch_url, autocommit=True) as connection:
        _insert(connection, 1, 200, None)
        manager.up(settings, ["refresher"])
        try:
            deadline = time.monotonic() + 60  # the CLI's start-up, then one refresh every 2 s
            while connection.execute("SELECT coalesce(sum(transactions), 0) FROM scored_rollup").fetchone()[0] < 200:
                assert time.monotonic() < deadline, manager.logs(settings, "refresher")
                time.sleep(0.5)
        finally:
            assert manager.down(settings, ["refresher"])[0].action == "stopped"
