"""The console's pure pieces: keyset cursors, the verdict rate limit, typical values, passwords, the shared loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from fraudstream.console import auth, cases, pages
from fraudstream.console.aggregates import histogram_percentile, outcomes_by_version
from fraudstream.console.app import _safe_next
from fraudstream.console.overview import OverviewHub
from fraudstream.events.contract import validate_label

pytestmark = pytest.mark.unit

ROW = {"score": 0.91, "event_time": datetime(2026, 1, 5, 12, 0, 1, 250, tzinfo=UTC), "transaction_id": "t-9"}


def test_cursors_round_trip_per_order_and_refuse_anything_else() -> None:
    assert cases.decode_cursor(cases.encode_cursor(ROW, "score"), "score") == (0.91, ROW["event_time"], "t-9")
    assert cases.decode_cursor(cases.encode_cursor(ROW, "newest"), "newest") == (ROW["event_time"], "t-9")
    for bad in ("", "garbage", cases.encode_cursor(ROW, "newest") + "x"):
        with pytest.raises(cases.BadRequest):
            cases.decode_cursor(bad, "newest")
    with pytest.raises(cases.BadRequest, match="another order"):
        cases.decode_cursor(cases.encode_cursor(ROW, "newest"), "score")


def test_queue_sql_is_parameterized_and_pages_by_keyset() -> None:
    filters = cases.QueueFilter(order="score", merchant_id="m'; DROP TABLE labels; --", min_amount=5.0)
    sql, params = cases.queue_sql(filters, cases.encode_cursor(ROW, "score"), 51)
    assert "DROP TABLE" not in sql and params["merchant_id"].startswith("m'")
    assert "OFFSET" not in sql.upper()
    assert "(t.score, t.event_time, t.transaction_id) < (%(c_score)s, %(c_time)s, %(c_id)s)" in sql
    assert params["limit"] == 51 and params["min_amount"] == 5.0


def test_rate_limiter_is_a_sliding_window_per_user() -> None:
    limiter = cases.RateLimiter(limit=2, window_s=60)
    assert limiter.allow(1, now=0.0) and limiter.allow(1, now=1.0)
    assert not limiter.allow(1, now=59.0)
    assert limiter.allow(2, now=59.0)
    assert limiter.allow(1, now=60.5)  # the first action left the window


def test_typical_values_are_medians_matched_by_feature_name() -> None:
    rows = [(("amount", "count_1h"), (10.0, 1.0)), (("count_1h", "amount"), (3.0, 30.0)),
            (("amount",), (None,)), (("amount", "count_1h"), (20.0, 2.0))]
    assert pages.typical_values(["amount", "count_1h", "unseen"], rows) == {"amount": 20.0, "count_1h": 2.0}


def test_passwords_are_argon2_and_tokens_compare_safely() -> None:
    stored = auth.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct" not in stored
    assert auth.verify_password(stored, "correct horse battery")
    assert not auth.verify_password(stored, "wrong") and not auth.verify_password("not a hash", "x")
    assert auth.tokens_match("abc", "abc") and not auth.tokens_match("abc", None) and not auth.tokens_match("abc", "")


def test_label_message_passes_the_engines_label_validation() -> None:
    row = {"transaction_id": "t-1", "account_id": "a-1", "merchant_id": "m-1"}
    message = cases.label_message(row, True, datetime(2026, 1, 5, tzinfo=UTC), 7)
    assert validate_label(message)[0] == "t-1"
    assert message["source"] == "analyst" and message["analyst_id"] == "7"
    assert message["labeled_at"] == "2026-01-05T00:00:00.000000Z"


def test_login_redirects_stay_on_this_site() -> None:
    assert _safe_next("/queue?order=score") == "/queue?order=score"
    for outside in ("https://evil.example/", "//evil.example/", "/\\evil.example", "queue"):
        assert _safe_next(outside) == "/"


def test_twenty_subscribers_share_one_query_loop() -> None:
    reads = []

    def read() -> dict[str, int]:
        reads.append(1)
        return {"round": len(reads)}

    async def scenario() -> tuple[int, list[list[bytes]]]:
        hub = OverviewHub(read, interval_s=0.01)
        received: list[list[bytes]] = [[] for _ in range(20)]

        async def listen(index: int) -> None:
            async for snapshot in hub.subscribe():
                received[index].append(snapshot)
                if len(received[index]) == 3:
                    return

        await asyncio.gather(*(listen(i) for i in range(20)))
        await asyncio.sleep(0.05)  # the loop ends once nobody listens
        return hub.rounds, received

    rounds, received = asyncio.run(scenario())
    assert all(len(snapshots) == 3 for snapshots in received)
    assert len(reads) == rounds <= 5  # one read per round for all 20, not one per subscriber


def test_histogram_percentile_reads_the_bucket_that_holds_the_quantile() -> None:
    buckets = [(2.0, 50), (1.0, 40), (10.0, 9), (100.0, 1)]
    assert histogram_percentile(buckets, 0.5) == 2.0
    assert histogram_percentile(buckets, 0.99) == 10.0
    assert histogram_percentile(buckets, 1.0) == 100.0
    assert histogram_percentile([], 0.5) is None


def test_outcomes_by_version_give_precision_and_recall_of_the_alerts() -> None:
    rows = [{"model_version": "v1", "flagged": True, "is_fraud": True, "transactions": 3},
            {"model_version": "v1", "flagged": True, "is_fraud": False, "transactions": 1},
            {"model_version": "v1", "flagged": False, "is_fraud": True, "transactions": 1},
            {"model_version": "v1", "flagged": False, "is_fraud": False, "transactions": 95},
            {"model_version": "v2", "flagged": False, "is_fraud": False, "transactions": 4}]
    outcomes = outcomes_by_version(rows)
    assert outcomes["v1"]["precision"] == 0.75 and outcomes["v1"]["recall"] == 0.75
    assert outcomes["v1"]["labels"] == 100
    assert outcomes["v2"]["precision"] is None and outcomes["v2"]["recall"] is None


def test_an_analyst_label_is_valid_under_the_published_label_schema() -> None:
    import jsonschema

    from fraudstream.events.contract import schema

    message = cases.label_message({"transaction_id": "t-1", "account_id": "a-1", "merchant_id": "m-1"}, False,
                                  datetime(2026, 1, 5, tzinfo=UTC), 3)
    assert jsonschema.Draft202012Validator(schema("label")).is_valid(message)
    assert not jsonschema.Draft202012Validator(schema("label")).is_valid({**message, "source": 7})


def test_merchant_alert_rate_uses_the_engines_transaction_count() -> None:
    values = {"merchant_transaction_count_24h": 40.0, "merchant_fraud_rate_smoothed": 0.02, "amount": 9.0}
    figures = pages.merchant_figures(10, values)
    assert figures == {"alerts_24h": 10, "alert_rate_24h": 0.25, "merchant_transaction_count_24h": 40.0,
                       "merchant_fraud_rate_smoothed": 0.02}
    assert pages.merchant_figures(3, {"merchant_transaction_count_24h": 0.0})["alert_rate_24h"] is None
    assert pages.merchant_figures(3, {})["alert_rate_24h"] is None
