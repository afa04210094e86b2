"""The wire contract of transactions and labels: the JSON on the wire and the columnar batch the core reads.

The JSON Schemas in ``fraudstream/schemas/`` are the published contract; the hand-written checks
below enforce the same rules at stream speed and a test keeps the two in agreement. Every rejection
names the field and the rule, because the reason travels to the dead-letter topic and a person has to
act on it.

The rules per wire field are declared once (``WIRE_FIELDS`` and the tables beside it) and read by both
decoding paths: the per-record reference here (``decode_json`` + ``validate_transaction``), which
decides every rejection and its reason, and the vectorized one in ``events.fast_decode``.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 16 * 1024
MAX_AMOUNT = 10_000_000.0
MAX_ID_LENGTH = 64

PAYMENT_METHODS = ("credit_card", "debit_card", "bank_transfer", "paypal", "crypto", "mobile_wallet")
CHANNELS = ("card_present", "online", "atm", "mobile_app")

#: Columns of a decoded transaction batch, in order, with their dtypes. Engines add their own
#: bookkeeping columns (partition, offset, ingest time) beside these.
TRANSACTION_COLUMNS: dict[str, str] = {
    "transaction_id": "object",
    "event_time_us": "int64",
    "account_id": "object",
    "amount": "float64",
    "currency": "object",
    "merchant_id": "object",
    "merchant_category": "object",
    "payment_method": "object",
    "channel": "object",
    "country": "object",
    "latitude": "float64",
    "longitude": "float64",
    "device_id": "object",
}
LABEL_COLUMNS: dict[str, str] = {
    "transaction_id": "object",
    "account_id": "object",
    "merchant_id": "object",
    "is_fraud": "bool",
    "scenario": "object",
    "labeled_at_us": "int64",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
MIN_TIME_US = int((datetime(2000, 1, 1, tzinfo=UTC) - _EPOCH) / timedelta(microseconds=1))
MAX_TIME_US = int((datetime(2100, 1, 1, tzinfo=UTC) - _EPOCH) / timedelta(microseconds=1))
_ISO_UTC = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CATEGORY = re.compile(r"^[a-z0-9_]{1,40}$")


class InvalidEvent(ValueError):
    """An event that breaks the contract; the message is the dead-letter reason."""


def schema(name: str = "transaction") -> dict[str, Any]:
    """The published JSON Schema (``transaction`` or ``label``)."""
    text = resources.files("fraudstream.schemas").joinpath(f"{name}.schema.json").read_text()
    return orjson.loads(text)


def partition_for(account_id: str, partitions: int) -> int:
    """The Kafka partition of an account: stable across processes and engines (CRC-32, not Python's hash).

    Producers set the partition explicitly with this, and model training replays history through the
    same split, so partition-scoped feature state sees the same events in training and in serving.
    """
    return zlib.crc32(account_id.encode()) % partitions


def format_time_us(time_us: int) -> str:
    """Microseconds since the epoch as ISO-8601 UTC with a ``Z``."""
    return (_NAIVE_EPOCH + timedelta(microseconds=int(time_us))).isoformat(timespec="microseconds") + "Z"


def format_times_us(times_us: np.ndarray | Sequence[int]) -> list[str]:
    """``format_time_us`` of many times at once (NumPy)."""
    texts = np.datetime_as_string(np.asarray(times_us, dtype=np.int64).astype("datetime64[us]"), unit="us")
    return [text + "Z" for text in texts.tolist()]


def parse_time_us(text: str, name: str = "event_time") -> int:
    """ISO-8601 UTC text as microseconds since the epoch; raises InvalidEvent (naming field ``name``) otherwise."""
    if not isinstance(text, str) or not _ISO_UTC.fullmatch(text):
        raise InvalidEvent(f"{name} must be ISO-8601 UTC like 2026-01-31T12:00:00.000Z")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidEvent(f"{name} is not a real date: {error}") from None
    time_us = (moment - _EPOCH) // timedelta(microseconds=1)
    if not MIN_TIME_US <= time_us < MAX_TIME_US:
        raise InvalidEvent(f"{name} must lie between 2000 and 2100")
    return time_us


NUL_REASON = "text contains a NUL character (\\u0000), which the database cannot store"

#: The rules per wire field, declared once: the per-record validator and the fast path both read them.
ID_FIELDS = ("transaction_id", "account_id", "merchant_id", "device_id")
PATTERNS: dict[str, re.Pattern[str]] = {"currency": _CURRENCY, "merchant_category": _CATEGORY, "country": _COUNTRY}
CHOICES: dict[str, tuple[str, ...]] = {"payment_method": PAYMENT_METHODS, "channel": CHANNELS}
#: name -> (low, high, low is exclusive)
NUMBER_RANGES: dict[str, tuple[float, float, bool]] = {
    "amount": (0.0, MAX_AMOUNT, True), "latitude": (-90.0, 90.0, False), "longitude": (-180.0, 180.0, False),
}
#: The event's fields in TRANSACTION_COLUMNS order (``event_time`` arrives as text, leaves as µs).
WIRE_FIELDS = tuple("event_time" if name == "event_time_us" else name for name in TRANSACTION_COLUMNS)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise InvalidEvent(NUL_REASON)
    return value


def _text(event: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = event.get(name)
    if value is None:
        raise InvalidEvent(f"missing field: {name}")
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string, got {type(value).__name__}")
    _no_nul(value)
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(f"{name} must have 1 to {MAX_ID_LENGTH} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidEvent(f"{name} has an invalid format: {value[:20]!r}")
    return value


def _number(event: dict[str, Any], name: str, low: float, high: float, exclusive_low: bool = False) -> float:
    value = event.get(name)
    if value is None:
        raise InvalidEvent(f"missing field: {name}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidEvent(f"{name} must be finite")
    if value < low or (exclusive_low and value == low) or value > high:
        bound = ">" if exclusive_low else ">="
        raise InvalidEvent(f"{name} must be {bound} {low:g} and <= {high:g}, got {value:g}")
    return value


def _choice(event: dict[str, Any], name: str, allowed: Sequence[str]) -> str:
    value = event.get(name)
    if value is None:
        raise InvalidEvent(f"missing field: {name}")
    if isinstance(value, str):
        _no_nul(value)
    if value not in allowed:
        raise InvalidEvent(f"{name} must be one of {', '.join(allowed)}")
    return value


def _time_field(event: dict[str, Any], name: str = "event_time") -> int:
    if name not in event:
        raise InvalidEvent(f"missing field: {name}")
    value = event[name]
    return parse_time_us(_no_nul(value) if isinstance(value, str) else value, name)


def field_value(event: dict[str, Any], name: str) -> Any:
    """One wire field's value, or InvalidEvent naming the field and the rule."""
    if name == "event_time":
        return _time_field(event)
    if name in NUMBER_RANGES:
        return _number(event, name, *NUMBER_RANGES[name])
    if name in CHOICES:
        return _choice(event, name, CHOICES[name])
    return _text(event, name, PATTERNS.get(name))


def validate_transaction(event: Any) -> tuple[Any, ...]:
    """The event's values in TRANSACTION_COLUMNS order, or InvalidEvent naming what is wrong.

    This is the reference: ``fast_decode.decode_transactions`` only accepts what this accepts,
    and every rejection's reason comes from here.
    """
    if not isinstance(event, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(event).__name__}")
    version = event.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidEvent(f"schema_version must be {SCHEMA_VERSION}, got {version!r}")
    return tuple(field_value(event, name) for name in WIRE_FIELDS)


@dataclass(frozen=True)
class Rejected:
    """A payload that failed decoding: its position in the input and the reason."""

    position: int
    reason: str


@dataclass
class DecodedBatch:
    """Valid transactions as columns, plus the positions of the valid rows and the rejections."""

    frame: pd.DataFrame
    positions: np.ndarray
    rejected: list[Rejected] = field(default_factory=list)


def decode_json(payload: bytes | None) -> Any:
    """Parse one payload, or InvalidEvent with the reason (empty, oversized, not JSON)."""
    if payload is None or len(payload) == 0:
        raise InvalidEvent("empty payload")
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"oversized: {len(payload)} bytes > {MAX_EVENT_BYTES}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent(f"invalid JSON: {error}") from None


#: The reason code of an event dated too far after it was received (``reject_future_events``).
EVENT_TIME_IN_FUTURE = "event_time_in_future"


def reject_future_events(decoded: DecodedBatch, received_at_us: np.ndarray, tolerance_us: int) -> DecodedBatch:
    """``decoded`` without the events dated more than ``tolerance_us`` after they were received
    (``received_at_us``, one per payload), which become rejections with reason ``event_time_in_future``.

    Why: event time drives the feature state's clock, so an event from a producer whose clock is decades
    ahead would make every account look idle; the time it reached us is the bound it cannot fake alone.
    """
    times = decoded.frame["event_time_us"].to_numpy()
    received = np.asarray(received_at_us, dtype=np.int64)[decoded.positions]
    future = times > received + tolerance_us
    if not future.any():
        return decoded
    late_by = [(int(position), int(time_us), int(at_us)) for position, time_us, at_us in
               zip(decoded.positions[future].tolist(), times[future].tolist(), received[future].tolist(), strict=True)]
    rejected = decoded.rejected + [
        Rejected(position, f"{EVENT_TIME_IN_FUTURE}: event_time {format_time_us(time_us)} is "
                           f"{(time_us - at_us) / 1e6:.0f} s after the event was received ({format_time_us(at_us)}), "
                           f"more than the {tolerance_us / 1e6:g} s tolerated; check the producer's clock")
        for position, time_us, at_us in late_by]
    rejected.sort(key=lambda item: item.position)
    keep = ~future
    return DecodedBatch(decoded.frame[keep].reset_index(drop=True), decoded.positions[keep], rejected)


def decode_transactions_per_record(payloads: Sequence[bytes | None]) -> DecodedBatch:
    """The reference path: each payload through ``decode_json`` and ``validate_transaction``.

    ``fast_decode.decode_transactions`` gives the same result faster; this one is its yardstick."""
    rows, positions, rejected = validate_each(payloads, validate_transaction, range(len(payloads)))
    return DecodedBatch(transactions_frame(rows), np.asarray(positions, dtype=np.int64), rejected)


def validate_each(payloads: Sequence[bytes | None], validate: Callable[[Any], tuple[Any, ...]],
                  positions: Iterable[int]) -> tuple[list[tuple[Any, ...]], list[int], list[Rejected]]:
    """The payloads at ``positions`` through ``decode_json`` and ``validate``: the valid rows, their
    positions, and the rejections with their reasons."""
    rows: list[tuple[Any, ...]] = []
    valid: list[int] = []
    rejected: list[Rejected] = []
    for position in positions:
        try:
            rows.append(validate(decode_json(payloads[position])))
        except InvalidEvent as error:
            rejected.append(Rejected(position, str(error)))
        else:
            valid.append(position)
    return rows, valid, rejected


def transactions_frame(rows: Iterable[tuple[Any, ...]]) -> pd.DataFrame:
    """A batch with TRANSACTION_COLUMNS from value tuples in column order."""
    frame = pd.DataFrame.from_records(list(rows), columns=list(TRANSACTION_COLUMNS))
    return frame.astype(TRANSACTION_COLUMNS)


def transaction_to_dict(row: Any) -> dict[str, Any]:
    """A TRANSACTION_COLUMNS record (mapping or namedtuple-like) as the wire dictionary."""
    get = row.__getitem__ if isinstance(row, dict) else lambda name: getattr(row, name)
    event: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    for name in TRANSACTION_COLUMNS:
        if name == "event_time_us":
            event["event_time"] = format_time_us(get(name))
        elif TRANSACTION_COLUMNS[name] == "float64":
            event[name] = float(get(name))
        else:
            event[name] = get(name)
    return event


def encode(event: dict[str, Any]) -> bytes:
    """JSON bytes for the wire."""
    return orjson.dumps(event)


def encode_transactions(table: pa.Table) -> list[bytes]:
    """``encode(transaction_to_dict(row))`` for every row of a table with TRANSACTION_COLUMNS: the same
    JSON values (key order and number text may differ), built by Arrow in C for producers."""
    return add_event_times(encode_transactions_without_time(table), table.column("event_time_us").to_numpy())


def encode_transactions_without_time(table: pa.Table) -> list[bytes]:
    """Each row as a JSON object of every wire field but ``event_time``, for a producer that stamps
    the time when it sends (``add_event_times``)."""
    pieces: list[pa.Array | str] = [f'{{"schema_version":{SCHEMA_VERSION}']
    for name in WIRE_FIELDS:
        if name == "event_time":
            continue
        column = table.column(name).combine_chunks()
        if column.null_count:
            raise ValueError(f"{name} has missing values")
        if TRANSACTION_COLUMNS[name] == "float64":
            if not pc.all(pc.is_finite(column)).as_py():
                raise ValueError(f"{name} must be finite")
            pieces += [f',"{name}":', pc.cast(column, pa.string())]
        else:
            pieces += [f',"{name}":', _json_strings(column)]
    pieces.append("}")
    return pc.binary_join_element_wise(*pieces, "").cast(pa.binary()).to_pylist()


#: A quote, a backslash or a control character: what a JSON string must escape.
_NEEDS_ESCAPING = r'["\\\x00-\x1f]'


def _json_strings(column: pa.Array) -> pa.Array:
    """JSON string literals: quotes added by Arrow when no value needs escaping, else orjson's (of a
    dictionary-encoded column: its few distinct values)."""
    if pa.types.is_dictionary(column.type):
        return pa.DictionaryArray.from_arrays(column.indices, _json_strings(column.dictionary)).cast(pa.string())
    column = column.cast(pa.string())
    if pc.any(pc.match_substring_regex(column, _NEEDS_ESCAPING)).as_py():
        return pa.array([orjson.dumps(value).decode() for value in column.to_pylist()], pa.string())
    return pc.binary_join_element_wise('"', column, '"', "")


def add_event_times(bodies: Sequence[bytes], times_us: np.ndarray | Sequence[int]) -> list[bytes]:
    """Bodies from ``encode_transactions_without_time`` with each one's ``event_time`` added last."""
    texts = format_times_us(times_us)
    return [body[:-1] + b',"event_time":"' + text.encode() + b'"}' for body, text in zip(bodies, texts, strict=True)]


#: Label fields that may be absent or null; when present they follow the rules of the event's ids.
_OPTIONAL_LABEL_TEXT = ("account_id", "merchant_id", "scenario")


def _optional_text(event: dict[str, Any], name: str) -> str | None:
    return None if event.get(name) is None else _text(event, name)


def validate_label(event: Any) -> tuple[Any, ...]:
    """The label's values in LABEL_COLUMNS order, or InvalidEvent naming what is wrong.

    The same rules as an event's (``_text``: types, 1 to 64 characters, no NUL): a label is written to
    the database like an event, and one that cannot be stored would stop the engine on every restart."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"label must be a JSON object, got {type(event).__name__}")
    is_fraud = event.get("is_fraud")
    if not isinstance(is_fraud, bool):
        raise InvalidEvent("is_fraud must be true or false")
    transaction_id = _text(event, "transaction_id")
    account_id, merchant_id, scenario = (_optional_text(event, name) for name in _OPTIONAL_LABEL_TEXT)
    labeled_at = _time_field(event, "labeled_at")
    return transaction_id, account_id, merchant_id, is_fraud, scenario, labeled_at


def decode_labels(payloads: Sequence[bytes | None]) -> tuple[pd.DataFrame, list[Rejected]]:
    """Decode and validate labels; bad ones are reported, never raised."""
    rows, _, rejected = validate_each(payloads, validate_label, range(len(payloads)))
    frame = pd.DataFrame.from_records(rows, columns=list(LABEL_COLUMNS))
    return frame.astype(LABEL_COLUMNS), rejected


def label_to_dict(row: Any) -> dict[str, Any]:
    """A LABEL_COLUMNS record as the wire dictionary."""
    get = row.__getitem__ if isinstance(row, dict) else lambda name: getattr(row, name)
    return {
        "transaction_id": get("transaction_id"),
        "account_id": get("account_id"),
        "merchant_id": get("merchant_id"),
        "is_fraud": bool(get("is_fraud")),
        "scenario": get("scenario"),
        "labeled_at": format_time_us(get("labeled_at_us")),
    }
