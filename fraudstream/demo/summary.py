"""The demo's closing figures, computed from the data itself: the rows' own timestamps and the producers'
send times for latency, the ground-truth labels for precision and recall."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg


@dataclass
class DemoSummary:
    """The demo's closing figures over the measured (live) part; the warm-up is not counted.

    Latencies are in ms of real time: ``send_to_commit`` from the producer handing an event to the
    Kafka client to its row's write, ``ingest_to_commit`` from the processor reading it to the write.
    (Event time is simulated, so event time -> commit is not a latency here.) Precision and recall are
    over labelled transactions."""

    produced: int = 0
    scored: int = 0
    alerted: int = 0
    dead_lettered: int = 0
    labels: int = 0
    frauds: int = 0
    late: int = 0
    precision: float | None = None
    recall: float | None = None
    send_to_commit_p50_ms: float | None = None
    send_to_commit_p99_ms: float | None = None
    ingest_to_commit_p50_ms: float | None = None
    ingest_to_commit_p99_ms: float | None = None
    model_version: str = ""
    time_scale: float | None = None
    warm_up_events: int = 0
    simulated_start: datetime | None = None
    simulated_end: datetime | None = None

    @property
    def flagged_share(self) -> float | None:
        return self.alerted / self.scored if self.scored else None


def measure(connection: psycopg.Connection, since: datetime, id_patterns: list[str]) -> DemoSummary:
    """Figures over this run's rows: (simulated) event time at or after ``since`` (the warm-up is
    before it) and transaction ids matching ``id_patterns`` (the table is shared with other runs)."""
    scored, alerted, late, ingest50, ingest99 = connection.execute(
        "SELECT count(*), count(*) FILTER (WHERE decision <> 'approve'), count(*) FILTER (WHERE is_late),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ingested_at)),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ingested_at))"
        " FROM transactions WHERE event_time >= %s AND transaction_id LIKE ANY(%s)", (since, id_patterns)).fetchone()
    labels, true_alerts, labelled_alerts, frauds = connection.execute(
        "SELECT count(*), count(*) FILTER (WHERE l.is_fraud AND t.decision <> 'approve'),"
        " count(*) FILTER (WHERE t.decision <> 'approve'), count(*) FILTER (WHERE l.is_fraud)"
        " FROM labels l JOIN transactions t USING (transaction_id)"
        " WHERE t.event_time >= %s AND t.transaction_id LIKE ANY(%s)", (since, id_patterns)).fetchone()

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else float(seconds) * 1000

    return DemoSummary(
        scored=scored, alerted=alerted, labels=labels, frauds=frauds, late=late,
        precision=true_alerts / labelled_alerts if labelled_alerts else None,
        recall=true_alerts / frauds if frauds else None,
        ingest_to_commit_p50_ms=ms(ingest50), ingest_to_commit_p99_ms=ms(ingest99),
    )


def labels_stored(connection: psycopg.Connection, id_patterns: list[str]) -> int:
    """Labels in the table for transaction ids matching ``id_patterns`` (warm-up included)."""
    return connection.execute("SELECT count(*) FROM labels WHERE transaction_id LIKE ANY(%s)",
                              (id_patterns,)).fetchone()[0]


def send_to_commit_ms(connection: psycopg.Connection, since: datetime,
                      send_times_us: dict[str, np.ndarray]) -> tuple[float | None, float | None]:
    """p50 and p99 (ms) from the producers' send times (per id prefix, indexed by the number that ends
    each transaction id) to the rows' write times."""
    sent, written = [], []
    for prefix, times_us in send_times_us.items():
        rows = connection.execute(
            "SELECT substr(transaction_id, %s)::bigint, (extract(epoch FROM written_at) * 1e6)::bigint"
            " FROM transactions WHERE event_time >= %s AND transaction_id LIKE %s",
            (len(prefix) + 1, since, prefix + "%")).fetchall()
        if not rows:
            continue
        numbers, written_us = np.array(rows, dtype=np.int64).T
        known = (numbers < len(times_us)) & (times_us[np.minimum(numbers, len(times_us) - 1)] >= 0)
        sent.append(times_us[numbers[known]])
        written.append(written_us[known])
    if not sent:
        return None, None
    latency_ms = (np.concatenate(written) - np.concatenate(sent)) / 1000.0
    return float(np.percentile(latency_ms, 50)), float(np.percentile(latency_ms, 99))
