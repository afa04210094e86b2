"""Decoding a batch of transaction payloads fast: NumPy and Arrow over the bytes of the whole batch.

``decode_transactions`` gives exactly what the per-record reference (``contract.decode_json`` +
``contract.validate_transaction``) gives, payload by payload. A vectorized path (``_CompactLayout``)
accepts the payloads that are compact JSON objects in a known key order (what ``contract.encode`` and
the simulator send) and pass every rule of the contract; anything it is not sure of goes to the
reference, which also gives every rejection's reason. A property test checks that the two give the
same frame, positions and reasons.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.events.contract import (
    CHOICES,
    ID_FIELDS,
    MAX_EVENT_BYTES,
    MAX_ID_LENGTH,
    MAX_TIME_US,
    MIN_TIME_US,
    NUMBER_RANGES,
    PATTERNS,
    TRANSACTION_COLUMNS,
    WIRE_FIELDS,
    DecodedBatch,
    InvalidEvent,
    field_value,
    validate_each,
    validate_transaction,
)

try:
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError:  # pandas < 3
    create_dataframe_from_blocks = None

_COLUMN_NAMES = list(TRANSACTION_COLUMNS)


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
    rows, row_positions, rejected = validate_each(payloads, validate_transaction, np.flatnonzero(~taken).tolist())
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


# A payload is taken here only if it is, byte for byte, a compact JSON object in a known
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
    expected = {"schema_version": False, **{name: name not in NUMBER_RANGES for name in WIRE_FIELDS}}
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
        numbers = [self.index[name] for name in NUMBER_RANGES]
        for name, texts in zip(NUMBER_RANGES, buffer.texts(value_starts[numbers], value_sizes[numbers]), strict=True):
            low, high, exclusive_low = NUMBER_RANGES[name]
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
        names = [name for name in WIRE_FIELDS if name in ID_FIELDS or name in PATTERNS or name in CHOICES]
        columns_at = [self.index[name] for name in names]
        texts = buffer.texts(value_starts[columns_at], value_sizes[columns_at])
        for name, values in zip(names, texts, strict=True):
            if name in ID_FIELDS:  # 1..64 bytes is 1..64 characters; no NUL can get here
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
            if not is_text and name not in NUMBER_RANGES and name != "schema_version":  # other fields: any JSON scalar
                start, size = value(name)
                scalars = buffer.texts(start[None], size[None])[0].cast(pa.large_string())
                ok &= (size <= _MAX_NUMBER_TEXT) & _flags(pc.match_substring_regex(scalars, _JSON_SCALAR))
        return matched, ok, columns


def _flags(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False)


def _field_accepts(name: str, value: str) -> bool:
    try:
        field_value({name: value}, name)
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
    fine &= (time_us >= MIN_TIME_US) & (time_us < MAX_TIME_US)
    return time_us, fine
