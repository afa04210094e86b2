"""The ``model_events`` table: one row per promote, rollback and retrain run, so "which model served when,
and why" is answered from the database (the registry's files only know the present)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

KINDS = ("promote", "rollback", "retrain")
DECISIONS = ("promoted", "shadow", "rolled_back", "failed")


@dataclass(frozen=True)
class ModelEvent:
    """One line of the lifecycle log; metrics are the promotion rule's inputs of each model."""

    kind: str
    decision: str
    production_before: str | None = None
    production_after: str | None = None
    challenger: str | None = None
    reasons: tuple[str, ...] = ()
    #: Event-time "now" of a retrain, µs since the epoch.
    as_of_us: int | None = None
    windows: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    challenger_metrics: dict[str, float] | None = None
    actor: str = "cli"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model event kind must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if self.decision not in DECISIONS:
            raise ValueError(f"model event decision must be one of {', '.join(DECISIONS)} (got {self.decision!r})")


def _json_metrics(metrics: dict[str, float] | None) -> Jsonb | None:
    """JSON has no NaN: a metric that could not be computed is stored as null."""
    if metrics is None:
        return None
    return Jsonb({name: None if isinstance(value, float) and math.isnan(value) else value
                  for name, value in metrics.items()})


def record_model_event(connection: psycopg.Connection, event: ModelEvent) -> int:
    """Append one event; its id."""
    row = connection.execute(
        "INSERT INTO model_events (kind, decision, production_before, production_after, challenger, reasons, as_of,"
        " windows, champion_metrics, challenger_metrics, actor) VALUES (%s, %s, %s, %s, %s, %s,"
        " timestamptz 'epoch' + %s * interval '1 microsecond', %s, %s, %s, %s) RETURNING event_id",
        (event.kind, event.decision, event.production_before, event.production_after, event.challenger,
         list(event.reasons), event.as_of_us, Jsonb(event.windows), _json_metrics(event.champion_metrics),
         _json_metrics(event.challenger_metrics), event.actor),
    ).fetchone()
    assert row is not None
    return int(row[0])


def recent_model_events(connection: psycopg.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The newest events first, as dictionaries of the table's columns."""
    cursor = connection.execute(
        "SELECT event_id, occurred_at, kind, decision, production_before, production_after, challenger, reasons,"
        " as_of, windows, champion_metrics, challenger_metrics, actor FROM model_events"
        " ORDER BY occurred_at DESC, event_id DESC LIMIT %s", (limit,))
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def log_model_event(database_url: str, event: ModelEvent) -> str | None:
    """Record an event whose registry change is already done; a warning naming what to fix when the
    database cannot take it (the change stands either way), else None."""
    try:
        with psycopg.connect(database_url, connect_timeout=10) as connection:
            record_model_event(connection, event)
    except psycopg.errors.UndefinedTable:
        return "the model_events table is missing: run `fraudstream db init` (the change itself is done)"
    except psycopg.OperationalError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (f"the {event.kind} is done but was not recorded in model_events ({first_line}): start the database "
                "(`fraudstream services up`) or check FRAUDSTREAM_DATABASE_URL")
    return None
