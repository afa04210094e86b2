"""The alert queue, claims and verdicts: what an analyst does to a case, and how a verdict becomes a label.

A case is a transaction decided ``review`` or ``block``. It stays in the queue until a verdict of
``fraud`` or ``legitimate`` is given (``escalate`` keeps it there, marked). A claim locks a case to one
analyst until it expires. A verdict, in one database transaction:

1. is looked up by the form's request id: a repeated POST (double click, retry) returns the first;
2. takes (or renews) the claim, failing with CaseLocked while another analyst holds it;
3. is written to the ``verdicts`` audit log;
4. for fraud / legitimate, upserts the label (``source='analyst'``, the analyst's id; a later verdict
   replaces an earlier one's label) and sends the same label to the labels topic, with delivery
   confirmed, so the engines apply it like any other label;
5. releases the claim, and commits. A failed send rolls everything back (nothing half-done).
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
import psycopg
from confluent_kafka import Producer
from psycopg.rows import dict_row

from fraudstream.events.contract import InvalidEvent, encode, format_time_us, validate_label

VERDICTS = ("fraud", "legitimate", "escalate")
ORDERS = ("newest", "score")
DECISIONS = ("review", "block")
PAGE_SIZE = 50
LABEL_SOURCE = "analyst"
_QUEUE_COLUMNS = ", ".join(f"t.{name}" for name in (
    "transaction_id", "event_time", "account_id", "merchant_id", "amount", "currency", "channel", "country",
    "score", "decision", "reasons", "model_version"))


class CaseError(Exception):
    """A request about a case that cannot be done; ``status`` is the HTTP answer."""

    status = 400


class UnknownTransaction(CaseError):
    status = 404


class CaseLocked(CaseError):
    status = 409


class BadRequest(CaseError):
    status = 422


class LabelNotPublished(CaseError):
    status = 503


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows; every field optional. Built from query parameters by the app (validated there)."""

    order: Literal["newest", "score"] = "newest"
    decision: Literal["review", "block"] | None = None
    channel: str | None = None
    country: str | None = None
    merchant_id: str | None = None
    model_version: str | None = None
    min_amount: float | None = None
    max_amount: float | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(row: dict[str, Any], order: str) -> str:
    """The keyset position after ``row`` for ``order``: opaque to the browser, checked when it comes back."""
    key = [row["event_time"].isoformat(), row["transaction_id"]]
    if order == "score":
        key.insert(0, row["score"])
    return base64.urlsafe_b64encode(orjson.dumps([order, *key])).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[Any, ...]:
    """The keyset values of a cursor made by encode_cursor for the same order; BadRequest otherwise."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or values[0] != order:
            raise ValueError("cursor of another order")
        key = values[1:]
        if order == "score":
            score, moment, transaction_id = key
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise ValueError("score is not a number")
            return float(score), datetime.fromisoformat(moment), str(transaction_id)
        moment, transaction_id = key
        return datetime.fromisoformat(moment), str(transaction_id)
    except (ValueError, TypeError, orjson.JSONDecodeError) as error:
        raise BadRequest(f"malformed cursor: {error}") from None


def queue_sql(filters: QueueFilter, cursor: str | None, limit: int) -> tuple[str, dict[str, Any]]:
    """The keyset-paginated queue query and its parameters (no OFFSET: each page costs the same)."""
    where = ["t.decision <> 'approve'",
             "NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.transaction_id = t.transaction_id"
             " AND v.verdict <> 'escalate')"]
    params: dict[str, Any] = {"limit": limit}
    for name in ("decision", "channel", "country", "merchant_id", "model_version"):
        value = getattr(filters, name)
        if value is not None:
            where.append(f"t.{name} = %({name})s")
            params[name] = value
    bounds = (("min_amount", "t.amount >= %(min_amount)s"), ("max_amount", "t.amount <= %(max_amount)s"),
              ("since", "t.event_time >= %(since)s"), ("until", "t.event_time < %(until)s"))
    for name, condition in bounds:
        if getattr(filters, name) is not None:
            where.append(condition)
            params[name] = getattr(filters, name)
    if filters.order == "score":
        order_by = "t.score DESC, t.event_time DESC, t.transaction_id DESC"
        if cursor:
            params["c_score"], params["c_time"], params["c_id"] = decode_cursor(cursor, "score")
            where.append("(t.score, t.event_time, t.transaction_id) < (%(c_score)s, %(c_time)s, %(c_id)s)")
    else:
        order_by = "t.event_time DESC, t.transaction_id DESC"
        if cursor:
            params["c_time"], params["c_id"] = decode_cursor(cursor, "newest")
            where.append("(t.event_time, t.transaction_id) < (%(c_time)s, %(c_id)s)")
    sql = f"""
SELECT t.*, u.username AS claimed_by, c.expires_at AS claim_expires_at,
       EXISTS (SELECT 1 FROM verdicts v WHERE v.transaction_id = t.transaction_id) AS escalated
FROM (SELECT {_QUEUE_COLUMNS} FROM transactions t WHERE {' AND '.join(where)} ORDER BY {order_by} LIMIT %(limit)s) t
LEFT JOIN case_claims c ON c.transaction_id = t.transaction_id AND c.expires_at > clock_timestamp()
LEFT JOIN console_users u ON u.user_id = c.user_id
ORDER BY {order_by}"""
    return sql, params


@dataclass(frozen=True)
class QueuePage:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def queue_page(connection: psycopg.Connection, filters: QueueFilter, cursor: str | None = None,
               limit: int = PAGE_SIZE) -> QueuePage:
    """One page of open cases and the cursor of the next page (None on the last one)."""
    sql, params = queue_sql(filters, cursor, limit + 1)
    with connection.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return QueuePage(rows, encode_cursor(rows[-1], filters.order) if more else None)


@dataclass(frozen=True)
class Claim:
    transaction_id: str
    username: str
    expires_at: datetime


def _flagged(connection: psycopg.Connection, transaction_id: str) -> dict[str, Any]:
    with connection.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT transaction_id, account_id, merchant_id, event_time FROM transactions"
                          " WHERE transaction_id = %s AND decision <> 'approve' LIMIT 1", (transaction_id,)).fetchone()
    if row is None:
        raise UnknownTransaction(f"no alert for transaction {transaction_id!r}")
    return row


def _take_claim(connection: psycopg.Connection, transaction_id: str, user_id: int, minutes: float) -> datetime:
    row = connection.execute(
        "INSERT INTO case_claims (transaction_id, user_id, expires_at) VALUES (%s, %s, clock_timestamp() + %s)"
        " ON CONFLICT (transaction_id) DO UPDATE SET user_id = EXCLUDED.user_id, claimed_at = clock_timestamp(),"
        " expires_at = EXCLUDED.expires_at"
        " WHERE case_claims.expires_at <= clock_timestamp() OR case_claims.user_id = EXCLUDED.user_id"
        " RETURNING expires_at", (transaction_id, user_id, timedelta(minutes=minutes))).fetchone()
    if row is None:
        holder = connection.execute(
            "SELECT u.username, c.expires_at FROM case_claims c JOIN console_users u USING (user_id)"
            " WHERE c.transaction_id = %s", (transaction_id,)).fetchone()
        raise CaseLocked(f"case {transaction_id} is claimed by {holder[0]} until {holder[1]:%H:%M:%S} UTC")
    return row[0]


def claim(connection: psycopg.Connection, transaction_id: str, user_id: int, username: str,
          minutes: float) -> Claim:
    """Lock a case to this analyst (or renew their lock); CaseLocked while someone else holds it."""
    with connection.transaction():
        _flagged(connection, transaction_id)
        expires_at = _take_claim(connection, transaction_id, user_id, minutes)
    return Claim(transaction_id, username, expires_at)


def release(connection: psycopg.Connection, transaction_id: str, user_id: int) -> bool:
    """Give a claim back; only its holder can. True when there was one."""
    return connection.execute("DELETE FROM case_claims WHERE transaction_id = %s AND user_id = %s",
                              (transaction_id, user_id)).rowcount > 0


@dataclass(frozen=True)
class VerdictResult:
    verdict_id: int
    verdict: str
    repeated: bool  # True: this request id had been given already; nothing new was written
    labeled_at: datetime | None


def label_message(row: dict[str, Any], is_fraud: bool, labeled_at: datetime, user_id: int) -> dict[str, Any]:
    """The label as it travels on the labels topic: the simulator's schema plus where it came from.

    Checked with the engines' own label validation before it is sent, so an analyst label can never be
    a dead letter."""
    labeled_at_us = (labeled_at - datetime(1970, 1, 1, tzinfo=labeled_at.tzinfo)) // timedelta(microseconds=1)
    message = {"transaction_id": row["transaction_id"], "account_id": row["account_id"],
               "merchant_id": row["merchant_id"], "is_fraud": is_fraud, "scenario": None,
               "labeled_at": format_time_us(labeled_at_us), "source": LABEL_SOURCE, "analyst_id": str(user_id)}
    try:
        validate_label(message)
    except InvalidEvent as error:
        raise BadRequest(f"this transaction cannot be labeled: {error}") from None
    return message


def _label_time(connection: psycopg.Connection, event_time: datetime) -> datetime:
    """The verdict's time on the stream's event-time clock (the latest event time not in the future).

    Engines apply a label to events at or after its labeled_at; on a replayed or simulated stream the
    wall clock can be far from event time, and a wall-clock time would then never (or always) apply."""
    row = connection.execute(
        "SELECT greatest(%s, (SELECT max(event_time) FROM transactions WHERE event_time <= now()))",
        (event_time,)).fetchone()
    return row[0]


def _publish(producer: Producer, topic: str, key: str, message: dict[str, Any], timeout_s: float) -> None:
    errors: list[Any] = []
    producer.produce(topic, key=key.encode(), value=encode(message),
                     on_delivery=lambda error, _message: errors.append(error))
    producer.flush(timeout_s)
    if not errors or errors[0] is not None:
        reason = errors[0] if errors else f"no delivery report within {timeout_s:g} s"
        raise LabelNotPublished(f"the label could not be sent to {topic} ({reason}); nothing was saved, try again")


def give_verdict(connection: psycopg.Connection, producer: Producer, labels_topic: str, transaction_id: str,
                 user_id: int, verdict: str, note: str, request_id: str, claim_minutes: float,
                 publish_timeout_s: float = 10.0) -> VerdictResult:
    """Record a verdict and, for fraud / legitimate, its label in the table and on the topic (module docstring)."""
    if verdict not in VERDICTS:
        raise BadRequest(f"verdict must be one of {', '.join(VERDICTS)}")
    try:
        request = uuid.UUID(request_id)
    except (ValueError, TypeError):
        raise BadRequest("request_id must be a UUID (it comes with the form)") from None
    with connection.transaction():
        earlier = connection.execute("SELECT verdict_id, transaction_id, verdict FROM verdicts WHERE request_id = %s",
                                     (request,)).fetchone()
        if earlier is not None:
            if earlier[1] != transaction_id:
                raise BadRequest("this request_id was used for another transaction")
            return VerdictResult(earlier[0], earlier[2], True, None)
        row = _flagged(connection, transaction_id)
        _take_claim(connection, transaction_id, user_id, claim_minutes)
        inserted = connection.execute(
            "INSERT INTO verdicts (request_id, transaction_id, user_id, verdict, note) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (request_id) DO NOTHING RETURNING verdict_id",
            (request, transaction_id, user_id, verdict, note)).fetchone()
        if inserted is None:  # the same request committed meanwhile (a concurrent double click)
            earlier = connection.execute("SELECT verdict_id, verdict FROM verdicts WHERE request_id = %s",
                                         (request,)).fetchone()
            return VerdictResult(earlier[0], earlier[1], True, None)
        labeled_at = None
        if verdict != "escalate":
            labeled_at = _label_time(connection, row["event_time"])
            message = label_message(row, verdict == "fraud", labeled_at, user_id)
            connection.execute(
                "INSERT INTO labels (transaction_id, account_id, merchant_id, is_fraud, scenario, labeled_at, source,"
                " analyst_id) VALUES (%s, %s, %s, %s, NULL, %s, %s, %s)"
                " ON CONFLICT (transaction_id) DO UPDATE SET is_fraud = EXCLUDED.is_fraud, scenario = NULL,"
                " labeled_at = EXCLUDED.labeled_at, source = EXCLUDED.source, analyst_id = EXCLUDED.analyst_id,"
                " received_at = clock_timestamp()",
                (transaction_id, row["account_id"], row["merchant_id"], verdict == "fraud", labeled_at,
                 LABEL_SOURCE, user_id))
            _publish(producer, labels_topic, row["account_id"], message, publish_timeout_s)
        connection.execute("DELETE FROM case_claims WHERE transaction_id = %s", (transaction_id,))
    return VerdictResult(inserted[0], verdict, False, labeled_at)


@dataclass
class RateLimiter:
    """At most ``limit`` actions per user in any ``window_s`` seconds (sliding window, in this process)."""

    limit: int
    window_s: float = 60.0
    _times: dict[int, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, user_id: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._times.setdefault(user_id, deque())
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            return True
