"""Transaction, label and alert contracts: the JSON on the wire and the columnar batch the core reads.

The JSON Schemas in ``fraudstream/schemas/`` are the published contract; the hand-written checks
below enforce the same rules at stream speed (a generic schema validator is ~50x slower) and a test
keeps the two in agreement. Every rejection names the field and the rule, because the reason travels
to the dead-letter topic and a person has to act on it.

Decoding a batch has two paths over one set of rules (``_WIRE_FIELDS`` and the tables beside it):

- the per-record path (``decode_json`` + ``validate_transaction``) is the reference: it decides every
  rejection and its reason;
- a vectorized fast path (``_CompactLayout``) accepts, with NumPy and Arrow over the whole batch, the
  payloads that are compact JSON objects in a known key order (what ``encode`` and the simulator send)
  and pass every rule; anything it is not sure of goes to the per-record path. A property test checks
  that the two give the same frame, positions and reasons.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

try:
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError:  # pandas < 3
    create_dataframe_from_blocks = None

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
_MIN_TIME_US = int((datetime(2000, 1, 1, tzinfo=UTC) - _EPOCH) / timedelta(microseconds=1))
_MAX_TIME_US = int((datetime(2100, 1, 1, tzinfo=UTC) - _EPOCH) / timedelta(microseconds=1))
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
    seconds, micros = divmod(int(time_us), 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"


def parse_time_us(text: str, name: str = "event_time") -> int:
    """ISO-8601 UTC text as microseconds since the epoch; raises InvalidEvent (naming field ``name``) otherwise."""
    if not isinstance(text, str) or not _ISO_UTC.fullmatch(text):
        raise InvalidEvent(f"{name} must be ISO-8601 UTC like 2026-01-31T12:00:00.000Z")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidEvent(f"{name} is not a real date: {error}") from None
    time_us = (moment - _EPOCH) // timedelta(microseconds=1)
    if not _MIN_TIME_US <= time_us < _MAX_TIME_US:
        raise InvalidEvent(f"{name} must lie between 2000 and 2100")
    return time_us


NUL_REASON = "text contains a NUL character (\\u0000), which the database cannot store"

#: The rules per wire field, declared once: the per-record validator and the fast path both read them.
_ID_FIELDS = ("transaction_id", "account_id", "merchant_id", "device_id")
_PATTERNS: dict[str, re.Pattern[str]] = {"currency": _CURRENCY, "merchant_category": _CATEGORY, "country": _COUNTRY}
_CHOICES: dict[str, tuple[str, ...]] = {"payment_method": PAYMENT_METHODS, "channel": CHANNELS}
#: name -> (low, high, low is exclusive)
_NUMBERS: dict[str, tuple[float, float, bool]] = {
    "amount": (0.0, MAX_AMOUNT, True), "latitude": (-90.0, 90.0, False), "longitude": (-180.0, 180.0, False),
}
#: The event's fields in TRANSACTION_COLUMNS order (``event_time`` arrives as text, leaves as µs).
_COLUMN_NAMES = list(TRANSACTION_COLUMNS)
_WIRE_FIELDS = tuple("event_time" if name == "event_time_us" else name for name in TRANSACTION_COLUMNS)


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


def _field(event: dict[str, Any], name: str) -> Any:
    """One wire field's value, or InvalidEvent naming the field and the rule."""
    if name == "event_time":
        return _time_field(event)
    if name in _NUMBERS:
        return _number(event, name, *_NUMBERS[name])
    if name in _CHOICES:
        return _choice(event, name, _CHOICES[name])
    return _text(event, name, _PATTERNS.get(name))


def validate_transaction(event: Any) -> tuple[Any, ...]:
    """The event's values in TRANSACTION_COLUMNS order, or InvalidEvent naming what is wrong.

    This is the reference: the fast path of ``decode_transactions`` only accepts what this accepts,
    and every rejection's reason comes from here.
    """
    if not isinstance(event, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(event).__name__}")
    version = event.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidEvent(f"schema_version must be {SCHEMA_VERSION}, got {version!r}")
    return tuple(_field(event, name) for name in _WIRE_FIELDS)


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


def decode_transactions(payloads: Sequence[bytes | None]) -> DecodedBatch:
    """Decode and validate a micro-batch; bad payloads are reported, never raised.

    The same result as ``decode_transactions_per_record``: the fast path takes the payloads it can
    prove valid, the per-record reference decides the rest (and gives every reason).
    """
    payloads = payloads if isinstance(payloads, list) else list(payloads)
    try:
        parts = _fast_parts(payloads) if len(payloads) >= _FAST_PATH_MIN_BATCH else []
    except (pa.ArrowException, ValueError, IndexError):  # never expected; the reference is always right
        parts = []
    taken = np.zeros(len(payloads), dtype=bool)
    for positions, _ in parts:
        taken[positions] = True
    rows: list[tuple[Any, ...]] = []
    row_positions: list[int] = []
    rejected: list[Rejected] = []
    for position in np.flatnonzero(~taken).tolist():
        try:
            rows.append(validate_transaction(decode_json(payloads[position])))
        except InvalidEvent as error:
            rejected.append(Rejected(position, str(error)))
        else:
            row_positions.append(position)
    if rows or not parts:
        values = list(zip(*rows, strict=True)) if rows else [()] * len(TRANSACTION_COLUMNS)
        parts.append((np.asarray(row_positions, dtype=np.int64), {
            name: np.array(column, dtype=dtype) for (name, dtype), column in zip(TRANSACTION_COLUMNS.items(), values,
                                                                                  strict=True)}))
    if len(parts) == 1:
        positions, columns = parts[0]
        return DecodedBatch(_frame(columns, len(positions)), positions, rejected)
    # parts from several layouts and from the reference interleave
    positions = np.concatenate([positions for positions, _ in parts])
    order = np.argsort(positions, kind="stable")
    columns = {name: np.concatenate([part[name] for _, part in parts])[order] for name in TRANSACTION_COLUMNS}
    positions = positions[order]
    return DecodedBatch(_frame(columns, len(positions)), positions, rejected)


def _frame(columns: dict[str, np.ndarray], length: int) -> pd.DataFrame:
    """TRANSACTION_COLUMNS as a frame, built as three blocks (object, int64, float64) without inference."""
    if create_dataframe_from_blocks is None:  # pandas < 3 infers no string dtype
        return pd.DataFrame(columns, columns=list(TRANSACTION_COLUMNS), copy=False)
    blocks = []
    for dtype in ("object", "int64", "float64"):
        places = [number for number, kind in enumerate(TRANSACTION_COLUMNS.values()) if kind == dtype]
        block = np.empty((len(places), length), dtype=dtype)
        for row, place in enumerate(places):
            block[row] = columns[_COLUMN_NAMES[place]]
        blocks.append((block, np.array(places)))
    return create_dataframe_from_blocks(blocks, index=pd.RangeIndex(length), columns=pd.Index(_COLUMN_NAMES))


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
    """The reference path: each payload through ``decode_json`` and ``validate_transaction``."""
    rows: list[tuple[Any, ...]] = []
    positions: list[int] = []
    rejected: list[Rejected] = []
    for position, payload in enumerate(payloads):
        try:
            rows.append(validate_transaction(decode_json(payload)))
        except InvalidEvent as error:
            rejected.append(Rejected(position, str(error)))
        else:
            positions.append(position)
    return DecodedBatch(transactions_frame(rows), np.asarray(positions, dtype=np.int64), rejected)


# ---------------------------------------------------------------------------------------------------
# Fast path. A payload is taken here only if it is, byte for byte, a compact JSON object in a known
# key order -- ``{"k":v,"k":v}``, no whitespace, every value a string without escapes or control
# characters, or a plain number -- and every wire field passes its rule. For such a payload the JSON
# meaning is unambiguous (no escapes, no duplicate keys, no NaN), so reading it with NumPy and Arrow
# gives exactly what orjson + validate_transaction give. Everything else goes to the reference.

#: A JSON number without exponent, and not "-0" (orjson reads that as the integer 0, Arrow as -0.0):
#: what orjson writes for 1e-4 <= |x| < 1e16. At most 30 digits on either side of the point, so
#: Arrow neither overflows nor underflows (it would refuse the text where orjson gives inf or 0.0).
_PLAIN_NUMBER = r"^(?:-?[1-9][0-9]{0,29}|0|-?(?:0|[1-9][0-9]{0,29})\.[0-9]{1,30})$"
#: Any JSON scalar short enough to be a finite float64 (for fields beyond the contract's).
_JSON_SCALAR = r"^(?:true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?)$"
_MAX_NUMBER_TEXT = 32
_MAX_TIME_TEXT = 32  # 2026-01-31T12:00:00.000000+00:00
_TIME_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_TIME_PUNCTUATION = np.array([4, 7, 10, 13, 16])
_TIME_PUNCTUATION_CHARS = np.frombuffer(b"--T::", dtype=np.uint8)
_UTC_OFFSET = np.uint64(int.from_bytes(b"+00:00", "little"))
_MAX_LAYOUTS_PER_BATCH = 3
_FAST_PATH_MIN_BATCH = 200  # below this, the fixed cost of ~100 NumPy/Arrow calls outweighs the gain
_MAX_LAYOUT_PROBES = 8
_PADDING = b"0" + bytes(31)  # a "0" to point rejected numbers at; room to read 8-byte words anywhere
_LOW_BYTES = np.array([2 ** (8 * count) - 1 for count in range(9)], dtype=np.uint64)  # keep the low n bytes
_MICROS_PER_DIGIT = 10 ** np.arange(5, -1, -1, dtype=np.int64)


@dataclass
class _Buffer:
    """The candidate payloads joined into one buffer: where each starts and ends, and its quotes."""

    text: bytes  # the payloads, then _PADDING
    data: np.ndarray  # text as uint8
    words: np.ndarray  # words[i] = the 8 bytes from text[i] as a little-endian uint64
    starts: np.ndarray
    ends: np.ndarray
    quotes: np.ndarray  # offsets of every '"'
    first_quote: np.ndarray  # per payload: index in ``quotes`` of its first quote
    quote_count: np.ndarray
    usable: np.ndarray  # valid UTF-8, no backslash, no control character

    @classmethod
    def of(cls, payloads: list[bytes], sizes: np.ndarray) -> _Buffer:
        ends = np.cumsum(sizes)
        starts = ends - sizes
        text = b"".join([*payloads, _PADDING])
        data = np.frombuffer(text, dtype=np.uint8)
        words = np.ndarray((len(text) - 7,), dtype="<u8", buffer=text, strides=(1,))
        payload_bytes = data[: len(text) - len(_PADDING)]
        quotes = np.flatnonzero(payload_bytes == ord('"'))
        first_quote = np.searchsorted(quotes, starts)
        usable = np.ones(len(payloads), dtype=bool)
        special = (payload_bytes < 0x20) | (payload_bytes == ord("\\"))
        if special.any():
            usable[np.searchsorted(ends, np.flatnonzero(special), side="right")] = False
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            usable &= [_is_utf8(payload) for payload in payloads]
        return cls(text, data, words, starts, ends, quotes, first_quote,
                   np.searchsorted(quotes, ends) - first_quote, usable)

    @property
    def zero(self) -> int:
        """The offset of a "0" (in the padding)."""
        return len(self.text) - len(_PADDING)

    def chars(self, starts: np.ndarray, width: int) -> np.ndarray:
        """The ``width`` bytes (a multiple of 8) from each of ``starts``, as a (starts, width) uint8 matrix."""
        return self.words[starts[:, None] + np.arange(0, width, 8)].view(np.uint8)

    def texts(self, starts: np.ndarray, sizes: np.ndarray) -> list[pa.Array]:
        """The texts at ``starts`` (columns x rows) with ``sizes``, one Arrow string_view array per column,
        zero-copy (each text must be UTF-8 between ASCII bytes)."""
        columns, rows = starts.shape
        starts, sizes = starts.ravel(), sizes.ravel()
        first, second = self.words[starts], self.words[starts + 8]
        inline = sizes <= 12  # Arrow keeps a text of up to 12 bytes inside its 16-byte view
        head = first & np.where(inline, _LOW_BYTES[np.minimum(sizes, 8)], _LOW_BYTES[4])  # or the 4-byte prefix
        views = np.empty((len(starts), 2), dtype=np.uint64)
        views[:, 0] = sizes.astype(np.uint64) | (head << np.uint64(32))
        views[:, 1] = np.where(inline, (head >> np.uint64(32)) | ((second & _LOW_BYTES[np.clip(sizes - 8, 0, 4)])
                                                                  << np.uint64(32)),
                               starts.astype(np.uint64) << np.uint64(32))  # buffer 0, offset
        array = pa.Array.from_buffers(pa.string_view(), len(starts),
                                      [None, pa.py_buffer(views), pa.py_buffer(self.text)])
        return [array.slice(column * rows, rows) for column in range(columns)]


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fast_parts(payloads: list[Any]) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(positions, columns) of the payloads the fast path accepts, one part per layout."""
    if set(map(type, payloads)) == {bytes}:
        sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    else:
        sizes = np.fromiter((len(p) if type(p) is bytes else -1 for p in payloads), np.int64, len(payloads))
    candidates = np.flatnonzero((sizes >= 2) & (sizes <= MAX_EVENT_BYTES))
    if not len(candidates) or sizes[candidates].sum() >= 2**31 - 2**16:  # views hold 32-bit offsets
        return []
    chosen = payloads if len(candidates) == len(payloads) else [payloads[i] for i in candidates.tolist()]
    buffer = _Buffer.of(chosen, sizes[candidates])
    waiting = buffer.usable.copy()
    parts = []
    layouts = probes = 0
    while layouts < _MAX_LAYOUTS_PER_BATCH and probes < _MAX_LAYOUT_PROBES and waiting.any():
        rows = np.flatnonzero(waiting)
        probes += 1
        waiting[rows[0]] = False
        layout = _layout_of(chosen[rows[0]])
        if layout is None:
            continue
        layouts += 1
        rows = rows[buffer.quote_count[rows] == layout.quote_count]
        matched, ok, columns = layout.read(buffer, rows)
        waiting[rows[matched]] = False
        if ok.all():
            parts.append((candidates[rows], columns))
        elif ok.any():
            parts.append((candidates[rows[ok]], {name: values[ok] for name, values in columns.items()}))
    return parts


def _layout_of(payload: bytes) -> _CompactLayout | None:
    """The layout of one payload's keys, if it could be a valid event (learned from it, cached)."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not all(type(v) in (str, int, float, bool) or v is None for v in event.values()):
        return None
    return _compact_layout(tuple((key, type(value) is str) for key, value in event.items()))


@functools.lru_cache(maxsize=64)
def _compact_layout(signature: tuple[tuple[str, bool], ...]) -> _CompactLayout | None:
    kinds = dict(signature)
    expected = {"schema_version": False, **{name: name not in _NUMBERS for name in _WIRE_FIELDS}}
    if any(kinds.get(name) is not is_text for name, is_text in expected.items()):
        return None
    if any(orjson.dumps(key) != b'"' + key.encode() + b'"' for key in kinds):
        return None  # a key that needs escaping
    return _CompactLayout(signature)


class _CompactLayout:
    """``{"k1":v1,"k2":v2,...}`` for one key order and one kind (text or not) per value.

    Reading a batch: the quotes give where each value starts and ends; the bytes between values (the
    separators ``{"k1":``, ``,"k2":"``, ...) must equal this layout's, compared 8 bytes at a time;
    then each value is checked by its field's rule, column by column.
    """

    def __init__(self, signature: tuple[tuple[str, bool], ...]) -> None:
        self.keys = tuple(key for key, _ in signature)
        self.is_text = tuple(is_text for _, is_text in signature)
        self.index = {key: number for number, key in enumerate(self.keys)}
        fields = len(self.keys)
        key_quote = [2 * number + 2 * sum(self.is_text[:number]) for number in range(fields)]
        self.quote_count = 2 * fields + 2 * sum(self.is_text)
        # a value's start and end: the offset of one of the payload's quotes (by index) plus a shift
        bound_quote, bound_shift = [], []
        separators = []
        for number, (key, is_text) in enumerate(signature):
            if is_text:  # "key":"value"
                bound_quote += [key_quote[number] + 2, key_quote[number] + 3]
                bound_shift += [1, 0]
            else:  # "key":value, (or "key":value} at the end: set from the payload's end)
                following = key_quote[number + 1] if number + 1 < fields else 0
                bound_quote += [key_quote[number] + 1, following]
                bound_shift += [2, -1]
            closing = b'"' if number and self.is_text[number - 1] else b""
            separators.append(closing + (b"," if number else b"{") + b'"' + key.encode() + b'":'
                              + (b'"' if is_text else b""))
        separators.append((b'"' if self.is_text[-1] else b"") + b"}")
        self.bound_quote, self.bound_shift = np.array(bound_quote), np.array(bound_shift)
        self.separator_sizes = np.array([len(separator) for separator in separators], dtype=np.int64)
        chunks = [(2 * number, offset, separator[offset:offset + 8])
                  for number, separator in enumerate(separators) for offset in range(0, len(separator), 8)]
        self.word_bound = np.array([bound for bound, _, _ in chunks])
        self.word_offset = np.array([offset for _, offset, _ in chunks], dtype=np.int64)
        self.word_value = np.array([int.from_bytes(chunk, "little") for _, _, chunk in chunks], dtype=np.uint64)
        self.word_mask = np.array([2 ** (8 * len(chunk)) - 1 for _, _, chunk in chunks], dtype=np.uint64)

    def read(self, buffer: _Buffer, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """For ``rows`` (all with this layout's quote count): which match the layout, which of those
        pass every rule, and the columns (meaningful where they pass)."""
        starts, ends = buffer.starts[rows], buffer.ends[rows]
        # bounds[:, r] = payload start, each value's start and end, payload end: the pieces between
        # consecutive bounds are separator, value, separator, ..., value, separator.
        bounds = np.empty((2 * len(self.keys) + 2, len(rows)), dtype=np.int64)
        bounds[0], bounds[-1] = starts, ends
        bounds[1:-1] = buffer.quotes[buffer.first_quote[rows] + self.bound_quote[:, None]] + self.bound_shift[:, None]
        if not self.is_text[-1]:  # a number closes the object
            bounds[-2] = ends - 1
        sizes = np.diff(bounds, axis=0)
        matched = (sizes >= 0).all(axis=0) & (sizes[0::2] == self.separator_sizes[:, None]).all(axis=0)
        at = np.minimum(bounds[self.word_bound] + self.word_offset[:, None], len(buffer.words) - 1)
        matched &= ((buffer.words[at] & self.word_mask[:, None]) == self.word_value[:, None]).all(axis=0)
        if not matched.all():
            bounds[:, ~matched] = starts[~matched]  # empty values: the views stay inside valid UTF-8
            sizes[:, ~matched] = 0

        value_starts, value_sizes = bounds[1:-1:2], sizes[1::2]

        def value(name: str) -> tuple[np.ndarray, np.ndarray]:
            return value_starts[self.index[name]], value_sizes[self.index[name]]

        version_start, version_size = value("schema_version")
        ok = matched & (version_size == 1) & (buffer.data[version_start] == ord("1"))
        columns: dict[str, np.ndarray] = {}
        # numbers (amount, coordinates): plain JSON numbers read by Arrow (correctly rounded, like orjson)
        numbers = [self.index[name] for name in _NUMBERS]
        for name, texts in zip(_NUMBERS, buffer.texts(value_starts[numbers], value_sizes[numbers]), strict=True):
            low, high, exclusive_low = _NUMBERS[name]
            texts = texts.cast(pa.large_string())
            plain = _flags(pc.match_substring_regex(texts, _PLAIN_NUMBER))
            if not plain.all():
                texts = pc.if_else(pa.array(plain), texts, "0")
            columns[name] = _flags(pc.cast(texts, pa.float64()))
            ok &= plain & (columns[name] <= high) & (columns[name] > low if exclusive_low else columns[name] >= low)
        # event time: the layout _ISO_UTC describes, then a date that exists, 2000..2100
        columns["event_time_us"], fine = _iso_utc_us(buffer, *value("event_time"))
        ok &= fine
        # texts
        names = [name for name in _WIRE_FIELDS if name in _ID_FIELDS or name in _PATTERNS or name in _CHOICES]
        columns_at = [self.index[name] for name in names]
        texts = buffer.texts(value_starts[columns_at], value_sizes[columns_at])
        for name, values in zip(names, texts, strict=True):
            if name in _ID_FIELDS:  # 1..64 bytes is 1..64 characters; no NUL can get here
                size = value(name)[1]
                ok &= (size >= 1) & (size <= MAX_ID_LENGTH)
                columns[name] = values.to_numpy(zero_copy_only=False)
            else:  # few distinct values: ask the reference about each
                encoded = pc.dictionary_encode(values)
                distinct = encoded.dictionary.to_pylist()
                indices = encoded.indices.to_numpy()
                ok &= np.array([_field_accepts(name, text) for text in distinct], dtype=bool)[indices]
                columns[name] = np.array(distinct, dtype=object)[indices]
        for name, is_text in zip(self.keys, self.is_text, strict=True):
            if not is_text and name not in _NUMBERS and name != "schema_version":  # other fields: any JSON scalar
                start, size = value(name)
                scalars = buffer.texts(start[None], size[None])[0].cast(pa.large_string())
                ok &= (size <= _MAX_NUMBER_TEXT) & _flags(pc.match_substring_regex(scalars, _JSON_SCALAR))
        return matched, ok, columns


def _flags(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False)


def _field_accepts(name: str, value: str) -> bool:
    try:
        _field({name: value}, name)
    except InvalidEvent:
        return False
    return True


def _iso_utc_us(buffer: _Buffer, starts: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch as ``parse_time_us`` computes them, and whether each text matches
    _ISO_UTC with a date and time that exist, between 2000 and 2100."""
    chars = buffer.chars(starts, _MAX_TIME_TEXT)
    digits = chars - np.uint8(ord("0"))
    rows = np.arange(len(size))
    last = chars[rows, np.clip(size - 1, 0, _MAX_TIME_TEXT - 1)]
    utc = last == ord("Z")
    utc |= (buffer.words[starts + np.maximum(size - 6, 0)] & _LOW_BYTES[6]) == _UTC_OFFSET
    fraction = size - 19 - np.where(last == ord("Z"), 1, 6)  # ".123": 4
    fine = (size >= 20) & (size <= _MAX_TIME_TEXT) & utc
    fine &= (digits[:, _TIME_DIGITS] <= 9).all(axis=1)
    fine &= (chars[:, _TIME_PUNCTUATION] == _TIME_PUNCTUATION_CHARS).all(axis=1)
    fraction_digits = ((digits[:, 20:26] <= 9) | (np.arange(6) >= fraction[:, None] - 1)).all(axis=1)
    fine &= (fraction == 0) | ((fraction >= 2) & (fraction <= 7) & (chars[:, 19] == ord(".")) & fraction_digits)

    def number(first: int, width: int) -> np.ndarray:
        return digits[:, first:first + width].astype(np.int64) @ (10 ** np.arange(width - 1, -1, -1, dtype=np.int64))

    year, month, day = number(0, 4), number(5, 2), number(8, 2)
    hour, minute, second = number(11, 2), number(14, 2), number(17, 2)
    micros = np.where(np.arange(6) < fraction[:, None] - 1, digits[:, 20:26], 0).astype(np.int64) @ _MICROS_PER_DIGIT
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)]
    month_days = month_days + (leap & (month == 2))
    fine &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    fine &= (hour <= 23) & (minute <= 59) & (second <= 59)
    # days since the epoch from the proleptic Gregorian date (H. Hinnant's days_from_civil)
    shifted = year - (month <= 2)
    era = shifted // 400
    year_of_era = shifted - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146_097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719_468
    time_us = (((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000 + micros
    fine &= (time_us >= _MIN_TIME_US) & (time_us < _MAX_TIME_US)
    return time_us, fine


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
    rows: list[tuple[Any, ...]] = []
    rejected: list[Rejected] = []
    for position, payload in enumerate(payloads):
        try:
            rows.append(validate_label(decode_json(payload)))
        except InvalidEvent as error:
            rejected.append(Rejected(position, str(error)))
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
