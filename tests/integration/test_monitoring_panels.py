"""Every SQL panel of "Fraud overview", expanded as Grafana expands it, run against the real PostgreSQL
after the local engine has scored real traffic and stored labels; the figures agree with direct counts
over the raw rows. The database is a scratch one, so that no other test's rows count."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from local_engine_harness import model_state_dir, new_run, stop, wait_for_rows

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.events.contract import encode, label_to_dict
from fraudstream.monitoring import overview
from fraudstream.monitoring.sql import expand
from fraudstream.simulate.backfill import simulate_history
from fraudstream.store.schema import migrate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

EVENTS = 4_000
INTERVAL = "5m"


def _one(connection: psycopg.Connection, sql: str, *args: object) -> object:
    return connection.execute(sql, args).fetchone()[0]


@pytest.fixture
def scored_database(kafka_ready: Settings, scratch_url: str, tmp_path: Path) -> str:
    """A scratch database holding EVENTS rows scored by `fraudstream process` and about half of their labels,
    the rollups refreshed once between the rows and the labels (so views mix rollups and the live tail)."""
    migrate(scratch_url)
    run = new_run(kafka_ready.model_copy(update={"database_url": scratch_url}), model_state_dir(kafka_ready),
                  tmp_path / "logs")
    history = simulate_history(days=1, seed=5, accounts=3_000, merchants=300)
    prefix = f"panels-{uuid.uuid4().hex[:6]}-"
    frame = history.transactions.head(EVENTS).copy()
    frame["transaction_id"] = prefix + frame["transaction_id"]
    labels = history.labels[history.labels["transaction_id"].isin(history.transactions["transaction_id"].head(EVENTS))]
    labels = labels.iloc[::2].copy()
    labels["transaction_id"] = prefix + labels["transaction_id"]
    process = run.start("panels")
    try:
        run.wait_until_assigned(process)
        run.publish(frame)
        with psycopg.connect(scratch_url, autocommit=True) as connection:
            assert wait_for_rows(connection, prefix, EVENTS, 180, (process,)) == EVENTS
            connection.execute("SELECT monitoring_refresh(interval '0 seconds')")
            producer = kafka.producer(run.settings)
            for row in labels.itertuples(index=False):
                producer.produce(run.settings.labels_topic, key=row.account_id.encode(),
                                 value=encode(label_to_dict(row)))
            assert producer.flush(30) == 0
            deadline = time.monotonic() + 120
            while _one(connection, "SELECT count(*) FROM labels") < len(labels):
                assert time.monotonic() < deadline, "labels not stored"
                time.sleep(0.3)
    finally:
        assert stop(process) == 0
    return scratch_url


def test_every_overview_panel_runs_and_agrees_with_direct_counts(scored_database: str) -> None:
    with psycopg.connect(scored_database, autocommit=True) as connection:
        first, last = connection.execute("SELECT date_trunc('minute', min(event_time)), "
                                         "date_trunc('minute', max(event_time)) FROM transactions").fetchone()
        start, end = first, last + timedelta(seconds=59)

        def panel(query: overview.PanelQuery, model: str = "all") -> tuple[list[str], list[tuple]]:
            cursor = connection.execute(expand(query.sql, start, end, INTERVAL, {"model_version": model}))
            rows = cursor.fetchall()
            assert rows, f"{query.title}: no rows"
            names = [column.name for column in cursor.description]
            if query.format == "time_series":
                assert names[0] == "time", query.title
            return names, rows

        total = _one(connection, "SELECT count(*) FROM transactions")
        flagged = _one(connection, "SELECT count(*) FROM transactions WHERE decision <> 'approve'")
        assert total == EVENTS and 0 < flagged < total

        results = {query.title: panel(query) for query in overview.PANELS}
        versions = [row[0] for row in connection.execute(
            expand(overview.MODEL_VERSIONS, start, end, INTERVAL)).fetchall()]
        assert versions[0] == "all" and len(versions) == 2
        assert panel(overview.FLAGGED_LAST_10_MIN, versions[1])[1] == [(flagged,)]
        assert connection.execute(expand(overview.FLAGGED_LAST_10_MIN.sql, start, end, INTERVAL,
                                         {"model_version": "v9999"})).fetchall() == [(0,)]

        def rows(query: overview.PanelQuery) -> list[tuple]:
            return results[query.title][1]

        # 1-3: counts and share
        assert rows(overview.FLAGGED_LAST_10_MIN) == [(flagged,)]
        assert sum(review + block for _, review, block in rows(overview.FLAGGED_OVER_TIME)) == flagged
        assert float(rows(overview.FLAGGED_SHARE_LAST_10_MIN)[0][0]) == pytest.approx(100 * flagged / total)
        # 4-6: segments
        direct = dict(connection.execute("SELECT payment_method, 100.0 * count(*) FILTER (WHERE decision <> "
                                         "'approve') / count(*) FROM transactions GROUP BY 1").fetchall())
        assert {name: pytest.approx(float(share)) for name, share in rows(overview.FLAGGED_SHARE_PER_PAYMENT_METHOD)} \
            == {name: float(share) for name, share in direct.items()}
        by_country = dict(connection.execute("SELECT country, count(*) FROM transactions WHERE decision <> 'approve'"
                                             " GROUP BY 1").fetchall())
        assert {country: n for country, n in rows(overview.FLAGGED_PER_COUNTRY) if n} == by_country
        names, markers = results[overview.FLAGGED_BY_COUNTRY_MAP.title]
        assert names == ["country", "latitude", "longitude", "flagged"]
        assert all(-90 <= lat <= 90 and -180 <= lon <= 180 for _, lat, lon, _ in markers)
        assert sum(n for *_, n in markers) == flagged
        # 7: newest 100 alerts by event time, reasons in words, label state
        names, alerts = results[overview.RECENT_ALERTS.title]
        assert len(alerts) == min(100, flagged)
        times = [row[0] for row in alerts]
        assert times == sorted(times, reverse=True)
        assert times[0] == _one(connection, "SELECT max(event_time) FROM transactions WHERE decision <> 'approve'")
        assert all(row[names.index("reasons")] for row in alerts)
        assert {row[names.index("label")] for row in alerts} <= {"fraud", "legitimate", "pending"}
        # throughput, decisions, scores
        assert sum(rate for _, rate in rows(overview.EVENTS_PER_SECOND)) * 300 == pytest.approx(total)
        assert sum(a + r + b for _, a, r, b in rows(overview.DECISIONS_OVER_TIME)) == total
        assert sum(n for _, n in rows(overview.SCORE_DISTRIBUTION)) == total
        # ground truth
        labelled = _one(connection, "SELECT count(*) FROM transactions JOIN labels USING (transaction_id)")
        assert rows(overview.LABELS_PENDING) == [(total - labelled, labelled)]
        curve = rows(overview.PRECISION_RECALL)
        point_time, precision, recall = curve[-1]
        window = "event_time >= to_timestamp(%s) - interval '55 minutes' AND event_time < to_timestamp(%s) " \
                 "+ interval '5 minutes'"
        caught, alerted, fraud = connection.execute(
            "SELECT count(*) FILTER (WHERE decision <> 'approve' AND is_fraud), count(*) FILTER (WHERE decision <> "
            f"'approve'), count(*) FILTER (WHERE is_fraud) FROM transactions JOIN labels USING (transaction_id) "
            f"WHERE {window}", (point_time, point_time)).fetchone()
        assert precision == (pytest.approx(caught / alerted) if alerted else None)
        assert recall == (pytest.approx(caught / fraud) if fraud else None)
        assert any(p is not None for _, p, _ in curve)
        long_buckets = connection.execute(expand(overview.PRECISION_RECALL.sql, start, end, "2h",
                                                 {"model_version": "all"})).fetchall()  # wider than the window
        assert long_buckets and all(p is None or 0 <= p <= 1 for _, p, _ in long_buckets)
        # latency percentiles: ordered and positive
        for query in (overview.PIPELINE_LATENCY, overview.EVENT_LATENCY):
            for _, _, p50, p95, p99 in rows(query):
                assert 0 < p50 <= p95 <= p99
        # merchants and reasons
        top = connection.execute("SELECT merchant_id, count(*) FROM transactions WHERE decision <> 'approve' "
                                 "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1").fetchone()
        assert (rows(overview.TOP_MERCHANTS)[0][0], rows(overview.TOP_MERCHANTS)[0][2]) == top
        reasons = connection.execute("SELECT regexp_replace(r, '[0-9][0-9,.]*', '…', 'g'), count(*) FROM transactions,"
                                     " unnest(reasons) r GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10").fetchall()
        assert rows(overview.TOP_REASONS) == reasons
        assert not any(char.isdigit() for reason, _ in reasons for char in reason)
