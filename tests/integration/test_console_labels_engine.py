"""An analyst's verdict is a label like any other: the running local engine applies it to merchant risk."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from console_harness import PASSWORD, login
from fastapi.testclient import TestClient
from local_engine_harness import model_state_dir, new_run, stop, stream, wait_for_rows

from fraudstream.config import Settings
from fraudstream.console.app import create_app
from fraudstream.console.auth import create_user

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def _merchant_features(database: psycopg.Connection, transaction_ids: list[str]) -> list[dict[str, float]]:
    rows = database.execute("SELECT features FROM transaction_features WHERE transaction_id = ANY(%s)"
                            " ORDER BY event_time", (transaction_ids,)).fetchall()
    return [{name: value for name, value in row[0].items() if name.startswith("merchant_")} for row in rows]


def test_a_confirmed_fraud_verdict_raises_the_merchants_risk_for_its_next_transactions(
        postgres_ready: Settings, database: psycopg.Connection, tmp_path: Path) -> None:
    run = new_run(postgres_ready, model_state_dir(postgres_ready), tmp_path / "logs")
    prefix = f"verdict-{run.group}-"
    events = stream(6_000, prefix)
    processor = run.start("verdict")
    try:
        run.publish(events)
        assert wait_for_rows(database, prefix, len(events), 180, (processor,)) == len(events)
        case, merchant = database.execute(
            "SELECT transaction_id, merchant_id FROM transactions WHERE transaction_id LIKE %s"
            " AND decision <> 'approve' ORDER BY score DESC LIMIT 1", (prefix + "%",)).fetchone()
        before = database.execute(
            "SELECT transaction_id FROM transactions WHERE transaction_id LIKE %s AND merchant_id = %s"
            " ORDER BY event_time DESC LIMIT 1", (prefix + "%", merchant)).fetchone()[0]
        [merchant_before] = _merchant_features(database, [before])

        username = f"analyst-{uuid.uuid4().hex[:8]}"
        create_user(database, username, PASSWORD, "analyst")
        with TestClient(create_app(run.settings)) as client:
            csrf = login(client, username)
            answer = client.post(f"/cases/{case}/verdict", headers={"Accept": "application/json"},
                                 data={"verdict": "fraud", "request_id": str(uuid.uuid4()), "csrf_token": csrf})
        assert answer.status_code == 200, answer.text
        labeled_at = database.execute("SELECT labeled_at FROM labels WHERE transaction_id = %s", (case,)).fetchone()[0]

        # the merchant's next transactions: same merchant, after the verdict on the stream's clock
        later = events[events["merchant_id"] == merchant].head(3).copy()
        later["transaction_id"] = [f"{prefix}after-{i}" for i in range(len(later))]
        start_us = int(labeled_at.timestamp() * 1_000_000)
        later["event_time_us"] = [start_us + (i + 1) * 1_000_000 for i in range(len(later))]
        run.publish(later)
        assert wait_for_rows(database, f"{prefix}after-", len(later), 120, (processor,)) == len(later)
    finally:
        assert stop(processor) == 0

    after = _merchant_features(database, list(later["transaction_id"]))
    fraud_count = next(name for name in merchant_before if name.startswith("merchant_fraud_count_"))
    for features in after:
        assert features[fraud_count] == merchant_before[fraud_count] + 1
        assert features["merchant_label_count"] == merchant_before["merchant_label_count"] + 1
        assert features["merchant_fraud_rate_smoothed"] > merchant_before["merchant_fraud_rate_smoothed"]
    source = database.execute("SELECT source FROM labels WHERE transaction_id = %s", (case,)).fetchone()[0]
    assert source == "analyst"  # the engine's own upsert of the same label from the topic kept the verdict's row
