"""Hand-built transaction and label frames with sensible defaults, for the feature tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from fraudstream.events.contract import LABEL_COLUMNS, TRANSACTION_COLUMNS

#: 2026-01-01T00:00:00Z, a Thursday.
ORIGIN_US = 1_767_225_600_000_000
TRANSACTION_DEFAULTS: dict[str, Any] = {
    "account_id": "a1",
    "amount": 10.0,
    "currency": "USD",
    "merchant_id": "m1",
    "merchant_category": "grocery",
    "payment_method": "credit_card",
    "channel": "online",
    "country": "US",
    "latitude": 40.0,
    "longitude": 0.0,
    "device_id": "d1",
}


def transactions(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A TRANSACTION_COLUMNS frame; each row gives ``seconds`` after ORIGIN_US plus any overrides."""
    records = []
    for number, row in enumerate(rows):
        record = {**TRANSACTION_DEFAULTS, **{k: v for k, v in row.items() if k != "seconds"}}
        record.setdefault("transaction_id", f"t{number}")
        record["event_time_us"] = ORIGIN_US + round(row["seconds"] * 1_000_000)
        records.append(record)
    return pd.DataFrame.from_records(records, columns=list(TRANSACTION_COLUMNS)).astype(TRANSACTION_COLUMNS)


def labels(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A LABEL_COLUMNS frame; each row gives ``transaction_id``, ``merchant_id``, ``is_fraud`` and
    ``seconds`` (labeled_at after ORIGIN_US)."""
    records = [
        {
            "transaction_id": row["transaction_id"],
            "account_id": row.get("account_id", "a1"),
            "merchant_id": row.get("merchant_id", "m1"),
            "is_fraud": row.get("is_fraud", True),
            "scenario": row.get("scenario"),
            "labeled_at_us": ORIGIN_US + round(row["seconds"] * 1_000_000),
        }
        for row in rows
    ]
    return pd.DataFrame.from_records(records, columns=list(LABEL_COLUMNS)).astype(LABEL_COLUMNS)
