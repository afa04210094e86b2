"""Scored rows and labels with known figures, and the checks that the per-minute monitoring views equal
direct counts over them: shared by the plain PostgreSQL tests and the TimescaleDB flavour's."""

from __future__ import annotations

import psycopg

START = "2026-03-01 12:00+00"

# n rows; event times spread over 30 minutes from %(start)s, written 2 s after; every 7th flagged, every
# 21st blocked.
INSERT = """
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
LABEL = """
INSERT INTO labels (transaction_id, is_fraud, labeled_at, received_at)
SELECT %(prefix)s || n, n %% 3 = 0, now(), coalesce(%(received)s::timestamptz, clock_timestamp())
FROM generate_series(%(first)s::integer, %(last)s::integer) AS n
"""

# (view query, the same figures straight from the raw rows)
CHECKS = {
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


def mismatches(connection: psycopg.Connection) -> list[str]:
    """The names of the checks whose view figures differ from the direct counts (or that have no rows)."""
    wrong = []
    for name, (view, direct) in CHECKS.items():
        got = connection.execute(view).fetchall()
        if not got or got != connection.execute(direct).fetchall():
            wrong.append(name)
    return wrong


def assert_views_match(connection: psycopg.Connection) -> None:
    assert mismatches(connection) == []


def insert(connection: psycopg.Connection, first: int, last: int, written: str | None, prefix: str = "t",
           start: str = START) -> None:
    """Rows written at ``written`` (+1 ms each), or at the clock as the writer stamps them (None)."""
    connection.execute(INSERT, {"prefix": prefix, "first": first, "last": last, "written": written,
                                "start": start})


def label(connection: psycopg.Connection, first: int, last: int, received: str | None, prefix: str = "t") -> None:
    connection.execute(LABEL, {"prefix": prefix, "first": first, "last": last, "received": received})
