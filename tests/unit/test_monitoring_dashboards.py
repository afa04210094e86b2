"""Dashboards as code: the committed deploy/ files are what the generator writes, they survive the SDK's
own typed model unchanged, and the SQL expansion follows Grafana's documented macros."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from fraudstream.monitoring import guide, health, overview, provisioning
from fraudstream.monitoring.sql import expand, interval_seconds

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize("relative", sorted(provisioning.files()))
def test_committed_file_equals_what_the_generator_writes(relative: str) -> None:
    path = DEPLOY / relative
    assert path.is_file(), f"{path} missing: run `make dashboards`"
    assert path.read_text() == provisioning.files()[relative], f"{relative} is stale: run `make dashboards`"


@pytest.mark.parametrize("name", sorted(provisioning.dashboards()))
def test_dashboard_json_round_trips_through_the_sdk_types(name: str) -> None:
    data = json.loads(provisioning.dashboards()[name])
    assert json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder)) == data
    assert data["refresh"] == "5s" and data["time"] == {"from": "now-1h", "to": "now"}
    panels = [panel for panel in data["panels"] if panel["type"] != "row"]
    assert all(panel.get("title") and panel["targets"] for panel in panels)  # the original map had no title
    assert len({panel["id"] for panel in data["panels"]}) == len(data["panels"])


def test_overview_holds_every_sql_panel_once_with_a_one_minute_floor_on_bucketed_ones() -> None:
    data = json.loads(provisioning.dashboards()[f"{overview.UID}.json"])
    queries = [target["rawSql"] for panel in data["panels"] for target in panel.get("targets", [])]
    assert queries == [query.sql for query in overview.PANELS]
    for panel in data["panels"]:
        sql = " ".join(target.get("rawSql", "") for target in panel.get("targets", []))
        if "$__interval" in sql:
            assert panel["interval"] == "1m", panel["title"]
    assert [v["name"] for v in data["templating"]["list"]] == ["model_version", "console_url"]


def test_health_dashboard_reads_prometheus_only() -> None:
    data = json.loads(provisioning.dashboards()[f"{health.UID}.json"])
    sources = {target["datasource"]["uid"] for panel in data["panels"] for target in panel["targets"]}
    assert sources == {health.PROMETHEUS.uid}


def test_datasource_file_has_no_secret_and_marks_timescaledb_only_when_asked() -> None:
    plain, timescale = provisioning.datasources(), provisioning.datasources(timescaledb=True)
    assert "password: ${FRAUDSTREAM_GRAFANA_PG_PASSWORD}" in plain
    assert "timescaledb: false" in plain and "timescaledb: true" in timescale


def test_macros_expand_as_grafana_documents_them() -> None:
    start, end = datetime(2026, 3, 1, 12, 0, tzinfo=UTC), datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    sql = ("SELECT $__timeGroupAlias(minute, $__interval), sum(x) / ($__interval_ms / 1000.0) FROM v "
           "WHERE $__timeFilter(minute) AND '$model_version' IN ('all', m) AND t > $__timeFrom()::timestamptz "
           "AND $__timeGroup(coalesce(a, b), '1h') > 0")
    assert expand(sql, start, end, "5m", {"model_version": "v0001"}) == (
        "SELECT floor(extract(epoch from minute)/300)*300 AS \"time\", sum(x) / (300000 / 1000.0) FROM v "
        "WHERE minute BETWEEN '2026-03-01T12:00:00Z' AND '2026-03-01T13:00:00Z' AND 'v0001' IN ('all', m) "
        "AND t > '2026-03-01T12:00:00Z'::timestamptz AND floor(extract(epoch from coalesce(a, b))/3600)*3600 > 0")
    with pytest.raises(KeyError, match="model_version"):
        expand("SELECT '$model_version'", start, end)
    assert interval_seconds("30s") == 30 and interval_seconds("'2h'") == 7200


def test_demo_link_opens_the_overview_over_the_runs_simulated_minutes() -> None:
    start, end = datetime(2026, 2, 1, 0, 0, 30, tzinfo=UTC), datetime(2026, 2, 1, 0, 30, tzinfo=UTC)
    link = guide.overview_link(start, end)
    assert link == f"{guide.GRAFANA_URL}/d/{overview.UID}?from=1769904000000&to=1769905860000"
    assert guide.overview_link() == f"{guide.GRAFANA_URL}/d/{overview.UID}"


def test_rolling_window_never_goes_negative_with_buckets_longer_than_an_hour() -> None:
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 8, tzinfo=UTC)
    assert "greatest(0, 3600 - 7200000 / 1000) PRECEDING" in expand(
        overview.PRECISION_RECALL.sql, start, end, "2h", {"model_version": "all"})
