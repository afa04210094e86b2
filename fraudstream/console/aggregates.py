"""Every aggregate the console reads, in one place: the live overview and the models page's live metrics.

Two kinds of figures:

- **now** (events/s, decisions in the last minute, latency percentiles): the rows written in the last
  seconds, by wall-clock ``written_at`` through its BRIN index, so they move while traffic flows even
  when event times are simulated or replayed;
- **the stream's last hour** (charts) and **the last day** (alert precision and recall from the labels
  that have arrived): the per-minute monitoring views of migration 005, which Grafana reads too. Their
  minutes are event-time minutes, so the window ends at the stream's latest minute (not after now).

The console process also keeps the views' rollups fresh (``monitoring.refresh.refresh_every`` on a thread,
safe beside the `services up monitoring` refresher), so their live part stays small without it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row

CHART_WINDOW = "1 hour"
LABEL_WINDOW = "1 day"
LATENCY_STAGE = "ingest_to_write"

_NOW = """
SELECT count(*) FILTER (WHERE written_at > now() - interval '10 seconds') AS written_10s,
       count(*) AS written_60s,
       count(*) FILTER (WHERE decision = 'approve') AS approve_60s,
       count(*) FILTER (WHERE decision = 'review') AS review_60s,
       count(*) FILTER (WHERE decision = 'block') AS block_60s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY written_at - ingested_at) AS latency_p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY written_at - ingested_at) AS latency_p99,
       (array_agg(model_version ORDER BY written_at DESC))[1] AS model_version
FROM transactions WHERE written_at > now() - interval '60 seconds'
"""
#: The stream's latest event-time minute (not a future one: a bad clock must not hide the present).
_LATEST_MINUTE = "SELECT max(minute) FROM scored_per_minute WHERE minute <= clock_timestamp()"
_SCORED_CHART = f"""
SELECT minute, sum(transactions)::bigint AS scored,
       coalesce(sum(transactions) FILTER (WHERE decision <> 'approve'), 0)::bigint AS flagged
FROM scored_per_minute WHERE minute > %(latest)s - interval '{CHART_WINDOW}' AND minute <= %(latest)s
GROUP BY minute ORDER BY minute
"""
_LATENCY_CHART = f"""
SELECT minute, upper_ms, sum(transactions)::bigint AS transactions
FROM latency_per_minute
WHERE stage = '{LATENCY_STAGE}' AND minute > %(latest)s - interval '{CHART_WINDOW}' AND minute <= %(latest)s
GROUP BY minute, upper_ms
"""
_LABEL_OUTCOMES = f"""
SELECT model_version, decision <> 'approve' AS flagged, is_fraud, sum(transactions)::bigint AS transactions
FROM label_outcomes_per_minute
WHERE minute > %(latest)s - interval '{LABEL_WINDOW}' AND minute <= %(latest)s
GROUP BY 1, 2, 3
"""


def _ms(value: Any) -> float | None:
    return None if value is None else value.total_seconds() * 1000.0


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def histogram_percentile(buckets: Iterable[tuple[float, int]], quantile: float) -> float | None:
    """The upper bound of the bucket holding the quantile of (upper bound, count) pairs; None when empty."""
    ordered = sorted(buckets)
    total = sum(count for _, count in ordered)
    if total == 0:
        return None
    running = 0
    for upper, count in ordered:
        running += count
        if running >= quantile * total:
            return upper
    return ordered[-1][0]


def outcomes_by_version(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model version: true and false alerts, missed fraud, labels, precision and recall."""
    tally: dict[str, dict[str, int]] = defaultdict(lambda: {"true_alerts": 0, "false_alerts": 0,
                                                            "missed_fraud": 0, "labels": 0})
    for row in rows:
        counts, number = tally[row["model_version"]], int(row["transactions"])
        counts["labels"] += number
        if row["flagged"]:
            counts["true_alerts" if row["is_fraud"] else "false_alerts"] += number
        elif row["is_fraud"]:
            counts["missed_fraud"] += number
    return {version: {**c, "precision": _ratio(c["true_alerts"], c["true_alerts"] + c["false_alerts"]),
                      "recall": _ratio(c["true_alerts"], c["true_alerts"] + c["missed_fraud"])}
            for version, c in tally.items()}


def latest_minute(connection: psycopg.Connection) -> Any:
    return connection.execute(_LATEST_MINUTE).fetchone()[0]


def label_outcomes(connection: psycopg.Connection, latest: Any = None) -> dict[str, dict[str, Any]]:
    """Alert outcomes per model version over the stream's last day, from the labels that have arrived."""
    latest = latest if latest is not None else latest_minute(connection)
    if latest is None:
        return {}
    with connection.cursor(row_factory=dict_row) as cur:
        return outcomes_by_version(cur.execute(_LABEL_OUTCOMES, {"latest": latest}).fetchall())


def overview(connection: psycopg.Connection) -> dict[str, Any]:
    """The live overview's figures and the stream's last hour per minute (JSON-ready)."""
    with connection.cursor(row_factory=dict_row) as cur:
        now = cur.execute(_NOW).fetchone()
        latest = latest_minute(connection)
        scored = cur.execute(_SCORED_CHART, {"latest": latest}).fetchall() if latest else []
        latency_rows = cur.execute(_LATENCY_CHART, {"latest": latest}).fetchall() if latest else []
    outcomes = label_outcomes(connection, latest)
    histograms: dict[Any, list[tuple[float, int]]] = defaultdict(list)
    for row in latency_rows:
        histograms[row["minute"]].append((row["upper_ms"], row["transactions"]))
    total = {key: sum(o[key] for o in outcomes.values()) for key in ("true_alerts", "false_alerts", "missed_fraud")}
    return {
        "events_per_second": now["written_10s"] / 10.0,
        "decisions_per_minute": {name: now[f"{name}_60s"] for name in ("approve", "review", "block")},
        "flagged_share": _ratio(now["review_60s"] + now["block_60s"], now["written_60s"]),
        "alert_precision": _ratio(total["true_alerts"], total["true_alerts"] + total["false_alerts"]),
        "alert_recall": _ratio(total["true_alerts"], total["true_alerts"] + total["missed_fraud"]),
        "labels": sum(o["labels"] for o in outcomes.values()),
        "latency_p50_ms": _ms(now["latency_p50"]),
        "latency_p99_ms": _ms(now["latency_p99"]),
        "model_version": now["model_version"],
        "stream_minute": latest.isoformat() if latest else None,
        "chart": {
            "minute": [row["minute"].timestamp() for row in scored],
            "scored": [row["scored"] for row in scored],
            "flagged": [row["flagged"] for row in scored],
            "latency_p99_ms": [histogram_percentile(histograms.get(row["minute"], []), 0.99) for row in scored],
        },
    }
