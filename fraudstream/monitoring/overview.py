"""Dashboard "Fraud overview": the original seven panels corrected, plus what a fraud-operations team
watches (throughput, decisions, scores, ground truth, latency, merchants, reasons).

Every panel but the recent-alerts table reads the per-minute views of migration 005, filtered by
``$__timeFilter(minute)`` (whole minutes) and bucketed by ``$__timeGroupAlias(minute, $__interval)``
with a minimum interval of one minute; the table reads the newest 100 alerts through the partial
index on flagged rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import barchart, bargauge, gauge, geomap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    QueryVariable,
    Row,
    TextBoxVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
)

from fraudstream.monitoring.guide import OVERVIEW_UID
from fraudstream.monitoring.sql import Format, Sql

POSTGRES = common.DataSourceRef(type_val="grafana-postgresql-datasource", uid="fraudstream-postgres")
UID = OVERVIEW_UID
#: Where the analyst console runs; a transaction's page is <console_url>/transactions/<id>.
DEFAULT_CONSOLE_URL = "http://localhost:8000"

MODEL = "'$model_version' IN ('all', model_version)"
FLAGGED = "decision <> 'approve'"
CAUGHT = f"{FLAGGED} AND is_fraud"
PAYMENT_METHODS = "segment = 'payment_method'"
COUNTRIES = "segment = 'country'"


def _decision(name: str) -> str:
    return f"decision = '{name}'"


def _in_range(view: str, *conditions: str) -> str:
    where = " AND ".join(("$__timeFilter(minute)", MODEL, *conditions))
    return f"FROM {view} WHERE {where}"


@dataclass(frozen=True)
class PanelQuery:
    """A panel's title and SQL: what the tests and the benchmark execute."""

    title: str
    sql: str
    format: Format = "table"


def _count(condition: str) -> str:
    return f"coalesce(sum(transactions) FILTER (WHERE {condition}), 0)"


FLAGGED_LAST_10_MIN = PanelQuery(
    "Flagged transactions, last 10 min",
    f"SELECT {_count(FLAGGED)} AS flagged {_in_range('scored_per_minute')}")
FLAGGED_OVER_TIME = PanelQuery(
    "Flagged transactions per interval",
    f"SELECT $__timeGroupAlias(minute, $__interval), {_count(_decision('review'))} AS review, "
    f"{_count(_decision('block'))} AS block {_in_range('scored_per_minute', FLAGGED)} GROUP BY 1 ORDER BY 1",
    "time_series")
FLAGGED_SHARE_LAST_10_MIN = PanelQuery(
    "Flagged share, last 10 min",
    f"SELECT coalesce(100.0 * {_count(FLAGGED)} / nullif(sum(transactions), 0), 0) AS \"flagged %\" "
    f"{_in_range('scored_per_minute')}")
FLAGGED_SHARE_PER_PAYMENT_METHOD = PanelQuery(
    "Flagged share per payment method",
    f"SELECT value AS payment_method, 100.0 * {_count(FLAGGED)} / sum(transactions) AS \"flagged %\" "
    f"{_in_range('segments_per_minute', PAYMENT_METHODS)} GROUP BY 1 ORDER BY 2 DESC")
FLAGGED_BY_COUNTRY_MAP = PanelQuery(
    "Flagged transactions by country (map)",
    f"SELECT value AS country, sum(latitude_sum) / sum(transactions) AS latitude, "
    f"sum(longitude_sum) / sum(transactions) AS longitude, {_count(FLAGGED)} AS flagged "
    f"{_in_range('segments_per_minute', COUNTRIES)} GROUP BY 1 ORDER BY 4 DESC")
FLAGGED_PER_COUNTRY = PanelQuery(
    "Flagged transactions per country",
    f"SELECT value AS country, {_count(FLAGGED)} AS flagged "
    f"{_in_range('segments_per_minute', COUNTRIES)} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20")
RECENT_ALERTS = PanelQuery(
    "Recent alerts (newest 100)",
    "SELECT t.event_time AS time, t.transaction_id, t.decision, round(t.score::numeric, 3) AS score, t.amount, "
    "t.currency, t.merchant_id, t.payment_method, t.country, array_to_string(t.reasons, '; ') AS reasons, "
    "t.model_version, CASE WHEN l.is_fraud THEN 'fraud' WHEN NOT l.is_fraud THEN 'legitimate' "
    "ELSE 'pending' END AS label "
    "FROM transactions t LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
    "WHERE $__timeFilter(t.event_time) AND t.decision <> 'approve' "
    "AND '$model_version' IN ('all', t.model_version) ORDER BY t.event_time DESC LIMIT 100")

EVENTS_PER_SECOND = PanelQuery(
    "Events per second",
    "SELECT $__timeGroupAlias(minute, $__interval), sum(transactions) / ($__interval_ms / 1000.0) "
    f"AS \"events/s\" {_in_range('scored_per_minute')} GROUP BY 1 ORDER BY 1",
    "time_series")
DECISIONS_OVER_TIME = PanelQuery(
    "Decisions per interval",
    "SELECT $__timeGroupAlias(minute, $__interval), "
    + ", ".join(f"{_count(_decision(d))} AS {d}" for d in ("approve", "review", "block"))
    + f" {_in_range('scored_per_minute')} GROUP BY 1 ORDER BY 1",
    "time_series")
SCORE_DISTRIBUTION = PanelQuery(
    "Score distribution",
    "SELECT to_char(score_bucket, 'FM0.00') || '-' || to_char(score_bucket + 0.05, 'FM0.00') AS score, "
    f"sum(transactions) AS transactions {_in_range('scored_per_minute')} "
    "GROUP BY score_bucket ORDER BY score_bucket")
PRECISION_RECALL = PanelQuery(
    "Alert precision and fraud recall, rolling 1 h (labelled transactions only)",
    "WITH buckets AS (SELECT $__timeGroupAlias(minute, $__interval), "
    f"{_count(CAUGHT)} AS caught, "
    f"{_count(FLAGGED)} AS alerted, {_count('is_fraud')} AS fraud FROM label_outcomes_per_minute "
    f"WHERE minute BETWEEN $__timeFrom()::timestamptz - interval '1 hour' AND $__timeTo()::timestamptz "
    f"AND {MODEL} GROUP BY 1), "
    "rolling AS (SELECT time, sum(caught) OVER w AS caught, sum(alerted) OVER w AS alerted, "
    "sum(fraud) OVER w AS fraud FROM buckets "
    "WINDOW w AS (ORDER BY time RANGE BETWEEN greatest(0, 3600 - $__interval_ms / 1000) PRECEDING "
    "AND CURRENT ROW)) "
    "SELECT time, caught::float8 / nullif(alerted, 0) AS \"alert precision\", "
    "caught::float8 / nullif(fraud, 0) AS \"fraud recall\" FROM rolling "
    "WHERE time >= extract(epoch FROM $__timeFrom()::timestamptz) ORDER BY 1",
    "time_series")
LABELS_PENDING = PanelQuery(
    "Labels pending / labelled (range)",
    f"SELECT (SELECT coalesce(sum(transactions), 0) {_in_range('scored_per_minute')}) - "
    f"(SELECT coalesce(sum(transactions), 0) {_in_range('label_outcomes_per_minute')}) AS pending, "
    f"(SELECT coalesce(sum(transactions), 0) {_in_range('label_outcomes_per_minute')}) AS labelled")


def latency_percentiles(title: str, stages: tuple[str, ...]) -> PanelQuery:
    """p50/p95/p99 per bucket of the named stages (latency_per_minute), read as the upper bound of the
    histogram bucket that holds the percentile (10% resolution)."""
    names = ", ".join(f"'{stage}'" for stage in stages)
    return PanelQuery(title, (
        "WITH merged AS (SELECT $__timeGroupAlias(minute, $__interval), stage, bucket, "
        f"sum(transactions) AS n {_in_range('latency_per_minute', f'stage IN ({names})')} GROUP BY 1, 2, 3), "
        "ranked AS (SELECT time, stage, bucket, sum(n) OVER (PARTITION BY time, stage ORDER BY bucket) AS below, "
        "sum(n) OVER (PARTITION BY time, stage) AS total FROM merged) "
        "SELECT time, stage, "
        + ", ".join(f"monitoring_bucket_upper_ms(min(bucket) FILTER (WHERE below >= {q} * total)) AS p{p}"
                    for p, q in (("50", "0.5"), ("95", "0.95"), ("99", "0.99")))
        + " FROM ranked GROUP BY 1, 2 ORDER BY 1, 2"), "time_series")


PIPELINE_LATENCY = latency_percentiles("Latency: read from Kafka to scored / to written (ms)",
                                       ("ingest_to_score", "ingest_to_write"))
EVENT_LATENCY = latency_percentiles("Latency: event time to written (ms; wall-clock producers only)",
                                    ("event_to_write",))
TOP_MERCHANTS = PanelQuery(
    "Top merchants among alerts",
    "SELECT merchant_id AS merchant, merchant_category AS category, sum(alerts) AS alerts, "
    f"round(sum(amount)::numeric, 2) AS amount {_in_range('alert_merchants_per_minute')} "
    "GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 10")
TOP_REASONS = PanelQuery(
    "Top reasons among alerts",
    f"SELECT reason, sum(alerts) AS alerts {_in_range('alert_reasons_per_minute')} "
    "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10")

MODEL_VERSIONS = ("SELECT 'all' AS model_version UNION ALL (SELECT DISTINCT model_version FROM scored_per_minute "
                  "WHERE $__timeFilter(minute) ORDER BY 1)")

#: Every SQL panel of the dashboard, in layout order (the variable's query is executed by the tests too).
PANELS = (FLAGGED_LAST_10_MIN, FLAGGED_OVER_TIME, FLAGGED_SHARE_LAST_10_MIN, FLAGGED_SHARE_PER_PAYMENT_METHOD,
          FLAGGED_BY_COUNTRY_MAP, FLAGGED_PER_COUNTRY, RECENT_ALERTS, EVENTS_PER_SECOND, DECISIONS_OVER_TIME,
          SCORE_DISTRIBUTION, PRECISION_RECALL, LABELS_PENDING, PIPELINE_LATENCY, EVENT_LATENCY, TOP_MERCHANTS,
          TOP_REASONS)


def _target(query: PanelQuery) -> Sql:
    return Sql(query.sql, POSTGRES, query.format)


def _thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=value, color=color) for value, color in steps])


def _all_rows() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().values(True).calcs([])


def _last() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().values(False).calcs(["lastNotNull"])


def _stacked(panel: timeseries.Panel) -> timeseries.Panel:
    return panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(60)


def _map_layer() -> common_builders.MapLayerOptions:
    return (common_builders.MapLayerOptions().type("markers").name("flagged").tooltip(True)
            .location(common_builders.FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS)
                      .latitude("latitude").longitude("longitude"))
            .config({"showLegend": True, "style": {
                "color": {"fixed": "red"}, "opacity": 0.6,
                "size": {"field": "flagged", "fixed": 5, "max": 30, "min": 4}}}))


def _console_link() -> list[DynamicConfigValue]:
    return [DynamicConfigValue(id_val="links", value=[{
        "title": "Open in the analyst console", "targetBlank": True,
        "url": "${console_url}/transactions/${__value.raw}"}])]


def build() -> Dashboard:
    """The "Fraud overview" dashboard."""
    panels = [
        Row("What the model flagged (the original seven panels, corrected)"),
        stat.Panel().with_target(_target(FLAGGED_LAST_10_MIN)).time_from("10m").reduce_options(_last())
        .description("Rows decided review or block in the last 10 minutes (event time, whole minutes).")
        .span(6).height(6),
        timeseries.Panel().with_target(_target(FLAGGED_OVER_TIME)).interval("1m").span(10).height(6)
        .description("One bucket per $__interval (at least 1 minute), within the dashboard's range."),
        gauge.Panel().with_target(_target(FLAGGED_SHARE_LAST_10_MIN)).time_from("10m").unit("percent")
        .min(0).max(100).reduce_options(_last())
        .thresholds(_thresholds((None, "green"), (30, "yellow"), (50, "red"))).span(8).height(6),
        bargauge.Panel().with_target(_target(FLAGGED_SHARE_PER_PAYMENT_METHOD)).unit("percent").min(0).max(100)
        .reduce_options(_all_rows()).orientation(common.VizOrientation.HORIZONTAL).span(8).height(8),
        geomap.Panel().with_target(_target(FLAGGED_BY_COUNTRY_MAP)).layers([_map_layer()])
        .description("Markers at the mean coordinates of each country's transactions, sized by flagged count.")
        .span(8).height(8),
        barchart.Panel().with_target(_target(FLAGGED_PER_COUNTRY)).x_field("country").span(8).height(8),
        table.Panel().with_target(_target(RECENT_ALERTS)).override_by_name("transaction_id", _console_link())
        .description("Newest first by event time; reasons in words; the transaction id opens the console.")
        .span(24).height(10),
        Row("Fraud operations"),
        timeseries.Panel().with_target(_target(EVENTS_PER_SECOND)).interval("1m").unit("reqps").span(8).height(7),
        _stacked(timeseries.Panel().with_target(_target(DECISIONS_OVER_TIME)).interval("1m")).span(8).height(7),
        barchart.Panel().with_target(_target(SCORE_DISTRIBUTION)).x_field("score")
        .scale_distribution(common_builders.ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10))
        .span(8).height(7),
        timeseries.Panel().with_target(_target(PRECISION_RECALL)).interval("1m").unit("percentunit").min(0).max(1)
        .description("Over the hour before each point, among transactions whose label has arrived: precision ="
                     " alerts confirmed fraud / labelled alerts; recall = confirmed fraud alerted / confirmed fraud.")
        .span(16).height(7),
        stat.Panel().with_target(_target(LABELS_PENDING)).reduce_options(_all_rows())
        .description("Transactions in range whose label has not arrived yet, and those whose label has.")
        .span(8).height(7),
        timeseries.Panel().with_target(_target(PIPELINE_LATENCY)).interval("1m").unit("ms").span(12).height(7),
        timeseries.Panel().with_target(_target(EVENT_LATENCY)).interval("1m").unit("ms").span(12).height(7),
        table.Panel().with_target(_target(TOP_MERCHANTS)).span(12).height(8),
        bargauge.Panel().with_target(_target(TOP_REASONS)).reduce_options(_all_rows())
        .orientation(common.VizOrientation.HORIZONTAL).span(12).height(8),
    ]
    titled = iter(PANELS)
    dashboard = (Dashboard("Fraud overview").uid(UID).tags(["fraudstream"]).refresh("5s").time("now-1h", "now")
                 .timezone("browser")
                 .description("Scored transactions, alerts and ground truth from the per-minute views of "
                              "fraudstream's database (generated by fraudstream.monitoring.overview).")
                 .with_variable(QueryVariable("model_version").label("Model version").datasource(POSTGRES)
                                .query(MODEL_VERSIONS).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                                .current(VariableOption(text="all", value="all")))
                 .with_variable(TextBoxVariable("console_url").label("Console URL").default_value(DEFAULT_CONSOLE_URL)))
    for number, panel in enumerate(panels, start=1):
        panel.id(number)
        if isinstance(panel, Row):
            dashboard.with_row(panel)
        else:
            panel.title(next(titled).title).datasource(POSTGRES)
            dashboard.with_panel(panel)
    return dashboard
