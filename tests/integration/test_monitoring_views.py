"""The per-minute monitoring views (migration 005) agree with direct counts over the raw rows, before any
refresh (all live tail), after one, and after more rows, late events and labels arrive in either order."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from monitoring_rows import assert_views_match, insert, label

from fraudstream.config import Settings
from fraudstream.services import manager
from fraudstream.store.schema import migrate

pytestmark = pytest.mark.integration


def _refresh(connection: psycopg.Connection) -> None:
    connection.execute("SELECT monitoring_refresh()")


def test_views_equal_direct_counts_through_refreshes_late_rows_and_labels(scratch_url: str) -> None:
    migrate(scratch_url)
    with psycopg.connect(scratch_url, autocommit=True) as connection:
        insert(connection, 1, 3000, "2026-12-01 10:00+00")
        label(connection, 1, 500, "2026-12-01 10:00:30+00")
        assert_views_match(connection)  # nothing refreshed: the views are all live tail
        # scored_at - ingested_at is 15 ms for every row: one bucket, whose upper bound is within 10%
        buckets = connection.execute("SELECT upper_ms, sum(transactions) FROM latency_per_minute"
                                     " WHERE stage = 'ingest_to_score' GROUP BY 1").fetchall()
        assert len(buckets) == 1 and 15 <= buckets[0][0] < 16.5 and buckets[0][1] == 3000

        _refresh(connection)
        assert connection.execute("SELECT count(*) FROM scored_rollup").fetchone()[0] > 0
        assert connection.execute("SELECT count(*) FROM label_outcomes_rollup").fetchone()[0] > 0
        assert_views_match(connection)

        # Labels for rows already rolled up; labels that arrive before their rows; late events in old
        # minutes (all stamped by the clock, as the writer does); rows stamped in the future (left in the tail).
        label(connection, 501, 1500, None)
        label(connection, 1, 400, None, prefix="late")
        insert(connection, 1, 600, None, prefix="late")
        insert(connection, 1, 300, "2099-01-01 00:00+00", prefix="future")
        label(connection, 1, 100, "2099-01-01 00:00+00", prefix="future")
        assert_views_match(connection)
        time.sleep(1.1)  # past the refresh's margin
        _refresh(connection)
        assert_views_match(connection)
        _refresh(connection)  # nothing new: adds nothing
        assert_views_match(connection)
        in_tail = connection.execute(
            "SELECT sum(transactions) FROM monitoring_watermark w, monitoring_scored_delta(w.refreshed_to,"
            " 'infinity')").fetchone()[0]
        assert in_tail == 300


def test_refresh_stops_before_an_open_writing_transaction(scratch_url: str) -> None:
    migrate(scratch_url)
    with psycopg.connect(scratch_url) as writer, psycopg.connect(scratch_url, autocommit=True) as refresher:
        insert(writer, 1, 100, None)  # stamped by the clock, long before its commit
        label(writer, 1, 50, None)
        time.sleep(1.5)
        _refresh(refresher)
        writer.commit()
        assert_views_match(refresher)  # the rows are in the tail, not lost behind the watermark
        _refresh(refresher)
        assert refresher.execute("SELECT sum(transactions) FROM scored_rollup").fetchone()[0] == 100
        assert_views_match(refresher)


def test_refresher_service_keeps_the_rollups_current(postgres_ready: Settings, scratch_url: str,
                                                     tmp_path: Path) -> None:
    """`services up refresher` (part of `services up monitoring`) runs `fraudstream monitoring refresh --every`."""
    migrate(scratch_url)
    settings = postgres_ready.model_copy(update={"database_url": scratch_url, "state_dir": tmp_path})
    with psycopg.connect(scratch_url, autocommit=True) as connection:
        insert(connection, 1, 200, None)
        manager.up(settings, ["refresher"])
        try:
            deadline = time.monotonic() + 60  # the CLI's start-up, then one refresh every 2 s
            while connection.execute("SELECT coalesce(sum(transactions), 0) FROM scored_rollup").fetchone()[0] < 200:
                assert time.monotonic() < deadline, manager.logs(settings, "refresher")
                time.sleep(0.5)
        finally:
            assert manager.down(settings, ["refresher"])[0].action == "stopped"
