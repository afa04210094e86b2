"""Every aggregate the console reads, in one place: the live overview and the models page's live metrics.

Time here is wall-clock processing time (``scored_at``, ``received_at``): an analyst watches what the
system does now, also when the events' own times are simulated or replayed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

WINDOW = "1 hour"

_PER_MINUTE = f"""
SELECT date_trunc('minute', scored_at) AS minute,
       count(*) AS scored,
       count(*) FILTER (WHERE decision = 'review') AS review,
       count(*) FILTER (WHERE decision = 'block') AS block,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY written_at - ingested_at) AS latency_p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY written_at - ingested_at) AS latency_p99
FROM transactions
WHERE scored_at > clock_timestamp() - interval '{WINDOW}'
GROUP BY 1 ORDER BY 1
"""
_RECENT = """
SELECT count(*) FILTER (WHERE scored_at > clock_timestamp() - interval '10 seconds') AS scored_10s,
       count(*) AS scored_60s,
       count(*) FILTER (WHERE decision = 'approve') AS approve_60s,
       count(*) FILTER (WHERE decision = 'review') AS review_60s,
       count(*) FILTER (WHERE decision = 'block') AS block_60s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY written_at - ingested_at) AS latency_p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY written_at - ingested_at) AS latency_p99,
       (SELECT model_version FROM transactions WHERE scored_at > clock_timestamp() - interval '60 seconds'
        ORDER BY scored_at DESC LIMIT 1) AS model_version
FROM transactions WHERE scored_at > clock_timestamp() - interval '60 seconds'
"""
#: Alerts against the labels that arrived in the window: precision = flagged and fraud / flagged,
#: recall = flagged and fraud / fraud.
_LABEL_OUTCOMES = f"""
SELECT t.model_version,
       count(*) FILTER (WHERE t.decision <> 'approve' AND l.is_fraud) AS true_alerts,
       count(*) FILTER (WHERE t.decision <> 'approve' AND NOT l.is_fraud) AS false_alerts,
       count(*) FILTER (WHERE t.decision = 'approve' AND l.is_fraud) AS missed_fraud,
       count(*) AS labels
FROM labels l JOIN transactions t USING (transaction_id)
WHERE l.received_at > clock_timestamp() - interval '{WINDOW}'
GROUP BY t.model_version
"""


def _ms(value: Any) -> float | None:
    return None if value is None else value.total_seconds() * 1000.0


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def label_outcomes(connection: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Per model version: alert outcomes, precision and recall from the labels that arrived in the window."""
    with connection.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_LABEL_OUTCOMES).fetchall()
    return {row["model_version"]: {**row,
                                   "precision": _ratio(row["true_alerts"], row["true_alerts"] + row["false_alerts"]),
                                   "recall": _ratio(row["true_alerts"], row["true_alerts"] + row["missed_fraud"])}
            for row in rows}


def overview(connection: psycopg.Connection) -> dict[str, Any]:
    """The live overview's figures and its last hour per minute (JSON-ready)."""
    with connection.cursor(row_factory=dict_row) as cur:
        recent = cur.execute(_RECENT).fetchone()
        minutes = cur.execute(_PER_MINUTE).fetchall()
    outcomes = label_outcomes(connection)
    true_alerts = sum(o["true_alerts"] for o in outcomes.values())
    false_alerts = sum(o["false_alerts"] for o in outcomes.values())
    missed = sum(o["missed_fraud"] for o in outcomes.values())
    return {
        "events_per_second": recent["scored_10s"] / 10.0,
        "decisions_per_minute": {name: recent[f"{name}_60s"] for name in ("approve", "review", "block")},
        "flagged_share": _ratio(recent["review_60s"] + recent["block_60s"], recent["scored_60s"]),
        "alert_precision": _ratio(true_alerts, true_alerts + false_alerts),
        "alert_recall": _ratio(true_alerts, true_alerts + missed),
        "labels_last_hour": sum(o["labels"] for o in outcomes.values()),
        "latency_p50_ms": _ms(recent["latency_p50"]),
        "latency_p99_ms": _ms(recent["latency_p99"]),
        "model_version": recent["model_version"],
        "chart": {
            "minute": [_epoch(row["minute"]) for row in minutes],
            "scored": [row["scored"] for row in minutes],
            "flagged": [row["review"] + row["block"] for row in minutes],
            "latency_p99_ms": [_ms(row["latency_p99"]) for row in minutes],
        },
    }


def _epoch(moment: datetime) -> float:
    return moment.timestamp()
