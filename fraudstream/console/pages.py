"""What the transaction and model pages show: reads only, each bounded by an index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg.rows import dict_row

from fraudstream.console.cases import UnknownTransaction
from fraudstream.model.exceptions import ModelError
from fraudstream.model.registry import MANIFEST_FILE, Registry

#: How many of the account's earlier transactions its typical feature values come from.
TYPICAL_WINDOW = 50
TIMELINE_LENGTH = 20


def typical_values(names: Sequence[str], rows: Sequence[tuple[Sequence[str], Sequence[float | None]]]
                   ) -> dict[str, float]:
    """Median of each feature over earlier rows (rows of other models are matched by feature name)."""
    collected: dict[str, list[float]] = {name: [] for name in names}
    for row_names, values in rows:
        for name, value in zip(row_names, values, strict=False):
            if name in collected and value is not None:
                collected[name].append(value)
    return {name: float(np.median(values)) for name, values in collected.items() if values}


@dataclass(frozen=True)
class TransactionView:
    row: dict[str, Any]
    features: list[tuple[str, float | None, float | None]]  # name, value, the account's typical value
    timeline: list[dict[str, Any]]
    merchant: dict[str, Any]
    label: dict[str, Any] | None
    verdicts: list[dict[str, Any]]
    claim: dict[str, Any] | None


def merchant_figures(alerts_24h: int, values: dict[str, float | None]) -> dict[str, float | None]:
    """The merchant's alerts and alert rate over the 24 h before the event (the rate's denominator is the
    engine's own merchant_transaction_count_24h feature, so no scan of the merchant's rows is needed), then
    its risk features as scored."""
    transactions = values.get("merchant_transaction_count_24h")
    rate = alerts_24h / transactions if transactions else None
    return {"alerts_24h": alerts_24h, "alert_rate_24h": rate,
            **{name: value for name, value in values.items() if name.startswith("merchant_")}}


def transaction_view(connection: psycopg.Connection, transaction_id: str) -> TransactionView:
    """Everything the transaction page shows; UnknownTransaction for an id that was never scored."""
    with connection.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT t.*, coalesce(m.feature_names, '{}') AS feature_names FROM transactions t"
            " LEFT JOIN model_features m USING (model_version) WHERE t.transaction_id = %s LIMIT 1",
            (transaction_id,)).fetchone()
        if row is None:
            raise UnknownTransaction(f"no transaction {transaction_id!r}")
        names = list(row["feature_names"])
        earlier = cur.execute(
            "SELECT coalesce(m.feature_names, '{}') AS names, t.features FROM transactions t"
            " LEFT JOIN model_features m USING (model_version)"
            " WHERE t.account_id = %s AND t.event_time < %s ORDER BY t.event_time DESC LIMIT %s",
            (row["account_id"], row["event_time"], TYPICAL_WINDOW)).fetchall()
        typical = typical_values(names, [(r["names"], r["features"]) for r in earlier])
        timeline = cur.execute(
            "SELECT transaction_id, event_time, amount, currency, merchant_id, channel, country, score, decision"
            " FROM transactions WHERE account_id = %s AND event_time <= %s ORDER BY event_time DESC LIMIT %s",
            (row["account_id"], row["event_time"], TIMELINE_LENGTH)).fetchall()
        alerts = cur.execute(
            "SELECT count(*) AS alerts FROM transactions WHERE merchant_id = %s AND decision <> 'approve'"
            " AND event_time > %s - interval '1 day' AND event_time <= %s",
            (row["merchant_id"], row["event_time"], row["event_time"])).fetchone()
        label = cur.execute(
            "SELECT l.is_fraud, l.labeled_at, l.source, l.scenario, u.username AS analyst FROM labels l"
            " LEFT JOIN console_users u ON u.user_id = l.analyst_id WHERE l.transaction_id = %s",
            (transaction_id,)).fetchone()
        verdicts = cur.execute(
            "SELECT v.verdict, v.note, v.decided_at, u.username FROM verdicts v JOIN console_users u USING (user_id)"
            " WHERE v.transaction_id = %s ORDER BY v.decided_at", (transaction_id,)).fetchall()
        claim = cur.execute(
            "SELECT u.username, c.expires_at FROM case_claims c JOIN console_users u USING (user_id)"
            " WHERE c.transaction_id = %s AND c.expires_at > clock_timestamp()", (transaction_id,)).fetchone()
    values = dict(zip(names, row["features"], strict=False))
    features = [(name, values.get(name), typical.get(name)) for name in names]
    merchant = merchant_figures(alerts["alerts"], values)
    return TransactionView(row, features, timeline, merchant, label, verdicts, claim)


@dataclass(frozen=True)
class ModelRow:
    version: str
    production: bool
    trained_at: str | None
    metrics: dict[str, float]
    error: str | None = None


def model_rows(registry: Registry) -> list[ModelRow]:
    """Every published version, newest first, with its test metrics read from its manifest (the files are
    verified when a version is promoted or loaded, not on every view of the page)."""
    production = registry.production_version()
    rows = []
    for version in reversed(registry.versions()):
        try:
            manifest = orjson.loads((registry.path(version) / MANIFEST_FILE).read_bytes())
        except (ModelError, OSError, orjson.JSONDecodeError) as error:
            rows.append(ModelRow(version, version == production, None, {}, f"unreadable manifest: {error}"))
            continue
        metrics = manifest.get("metrics", {}).get("model", {})
        rows.append(ModelRow(version, version == production, manifest.get("created_at"),
                             {name: value for name, value in metrics.items() if isinstance(value, int | float)}))
    return rows
