"""The vectorized decoder against the per-record reference: same frame, positions and reasons.

Randomized mixes of valid events and mutations (every case of the invalid catalogue, NULs, raw garbage,
other JSON layouts, escapes, unicode, number and time edge cases), each decoded both ways.
"""

from __future__ import annotations

import json
import random
import string
import time

import numpy as np
import orjson
import pandas as pd
import pytest
from test_events import INVALID, VALID

from fraudstream.batch import rows as pipeline
from fraudstream.events import contract, fast_decode

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def fast_path_for_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small batches skip the fast path in production; here every batch takes it."""
    monkeypatch.setattr(fast_decode, "_FAST_PATH_MIN_BATCH", 1)

IDS = ["tx-1", "a", "x" * 64, "x" * 65, "", "café ☕ 𝄞", "é" * 64, "é" * 33, 'quote"inside', "back\\slash",
       "new\nline", "tab\tch", "nul\u0000char", "\u0000", "'; DROP TABLE transactions; --", "{\"json\": [1,2]}"]
TIMES = ["2026-11-28T13:45:00Z", "2026-11-28T13:45:00.1Z", "2026-11-28T13:45:00.123456Z",
         "2026-11-28T13:45:00.1234567Z", "2026-11-28T13:45:00+00:00", "2026-11-28T13:45:00.12+00:00",
         "2026-11-28T13:45:00.123456+00:00", "2024-02-29T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
         "2000-01-01T00:00:00Z", "1999-12-31T23:59:59.999999Z", "2099-12-31T23:59:59.999999Z",
         "2100-01-01T00:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T23:60:00Z", "2026-11-28T23:59:60Z",
         "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-28 13:45:00Z",
         "2026-11-28T13:45:00.Z", "2026-11-28T13:45:00-00:00", "2026-11-28T13:45:00+01:00", "2026-11-28T13:45:00",
         "2026-11-28T13:45:00Z\n", "２０２６-11-28T13:45:00Z", "2026-11-28T13:45:00.12３Z", "2026-11-28t13:45:00Z",
         "2026-11-28T13:45:00\u0000Z", "", "x" * 40]
NUMBERS: list[object] = [0, -0.0, 0.0, 1, -1, 12.5, 1e-7, 1e-5, 0.1, 9_999_999.99, 10_000_000, 10_000_000.000001,
                         1e12, 90, 90.0, 90.00000000000001, -90, -180, 180.5, 123456789012345678, 0.30000000000000004,
                         5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, True, False, None, "12.5", [1], {}]
RAW_NUMBERS = [b"-0", b"0", b"-0.0", b"01", b"1.", b".5", b"1e2", b"1E+2", b"1e-2", b"-1.5e1", b"+1", b"1_0",
               b"0x10", b"Infinity", b"NaN", b"1e400", b"1" * 40, b"0." + b"1" * 40, b"12.50000000000000000001",
               b"-", b"--1", b"true", b"null", b'"1"', b"1" * 400 + b".0", b"0." + b"0" * 400 + b"1",
               b"0." + b"0" * 29 + b"1", b"1" * 30, b"-" + b"9" * 30 + b".5"]
CHOICES = {"currency": ["EUR", "USD", "euro", "EU", "EUR\n", "ÉUR", "EUR\u0000"],
           "country": ["DE", "US", "de", "D", "DEU", "D\u0000"],
           "merchant_category": ["grocery", "hotel", "Grocery", "a" * 40, "a" * 41, "fuel-station", "café"],
           "payment_method": [*contract.PAYMENT_METHODS, "barter", "credit_card\u0000", ""],
           "channel": [*contract.CHANNELS, "pigeon", "ONLINE"]}


def random_valid(rng: random.Random, number: int) -> dict[str, object]:
    return {
        "schema_version": 1, "transaction_id": f"tx-{number}-{rng.randrange(10**9)}",
        "event_time": f"20{rng.randrange(0, 100):02d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
                      f"T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
                      + rng.choice(["", ".", "."]).replace(".", "." + str(rng.randrange(10**6)).zfill(6)[
                          : rng.randrange(1, 7)]) + rng.choice(["Z", "Z", "+00:00"]),
        "account_id": f"acct-{rng.randrange(600):06d}",
        "amount": 1 + round(rng.lognormvariate(3, 1.5), rng.choice([0, 2, 5])),
        "currency": rng.choice(["EUR", "USD", "GBP"]), "merchant_id": f"merch-{rng.randrange(200):06d}",
        "merchant_category": rng.choice(["grocery", "hotel", "fuel", "online_retail"]),
        "payment_method": rng.choice(contract.PAYMENT_METHODS), "channel": rng.choice(contract.CHANNELS),
        "country": rng.choice(["DE", "US", "FR"]),
        "latitude": rng.uniform(-90, 90), "longitude": rng.uniform(-180, 180),
        "device_id": f"dev-{rng.randrange(10**12)}",
    }


def random_text(rng: random.Random) -> str:
    alphabet = string.printable + "é☕𝄞\u0000\u2028\u00a0"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))


def mutate(rng: random.Random, event: dict[str, object]) -> bytes | None:
    """One payload: the event broken (or merely re-laid-out) in one of many ways."""
    kind = rng.randrange(16)
    if kind == 0:
        return orjson.dumps(rng.choice(list(INVALID.values())))
    if kind == 1:
        return orjson.dumps({**event, rng.choice(["transaction_id", "account_id", "merchant_id", "device_id"]):
                             rng.choice(IDS)})
    if kind == 2:
        return orjson.dumps({**event, "event_time": rng.choice(TIMES)})
    if kind == 3:
        return orjson.dumps({**event, rng.choice(["amount", "latitude", "longitude"]): rng.choice(NUMBERS)})
    if kind == 4:  # a number written the way some other encoder might
        name = rng.choice(["amount", "latitude", "longitude", "schema_version"])
        return orjson.dumps({**event, name: 7}).replace(f'"{name}":7'.encode(), f'"{name}":'.encode()
                                                         + rng.choice(RAW_NUMBERS))
    if kind == 5:
        name = rng.choice(list(CHOICES))
        return orjson.dumps({**event, name: rng.choice(CHOICES[name])})
    if kind == 6:  # other layouts of valid JSON: spaces, pretty, other key orders, extra fields
        return rng.choice([
            json.dumps(event).encode(), json.dumps(event, indent=2).encode(), b"  " + orjson.dumps(event) + b"\n",
            orjson.dumps(dict(sorted(event.items()))), orjson.dumps({**event, "note": random_text(rng)}),
            orjson.dumps({**event, "flag": rng.choice([True, False, None, 3, 1.5, [1], {"a": 1}])}),
            json.dumps(event, ensure_ascii=True).encode(), orjson.dumps({"note": "x", **event}),
        ])
    if kind == 7:  # raw NUL and control bytes, invalid UTF-8, truncation, garbage
        payload = orjson.dumps(event)
        cut = rng.randrange(len(payload))
        return rng.choice([payload[:cut], payload[:cut] + b"\x00" + payload[cut:],
                           payload.replace(b"acct", b"\xff\xfe"),
                           payload.replace(b'"dev', b'"d\x01ev'), bytes(rng.randrange(256) for _ in range(40)),
                           payload + payload, b"[" + payload + b"]", payload.replace(b"}", b",}")])
    if kind == 8:  # duplicate keys: orjson keeps the last one
        payload = orjson.dumps(event)
        return payload[:-1] + rng.choice([b',"amount":-1}', b',"amount":3.5}', b',"schema_version":2}',
                                          b',"currency":"USD"}'])
    if kind == 9:
        return rng.choice([None, b"", b"{}", b"[]", b"null", b"NaN", b"1", b'"text"', b"{" * 50,
                           b" " * (contract.MAX_EVENT_BYTES + 1),
                           orjson.dumps({**event, "note": "x" * contract.MAX_EVENT_BYTES})])
    if kind == 10:  # escapes in strings, some of which decode to NUL
        payload = orjson.dumps(event)
        return payload.replace(b"merch-", rng.choice([b"merch\\u0000-", b"merch\\u00e9-", b"merch\\\\u0000-",
                                                      b"merch\\n-", b"merch\\ud800-", b"m\\u0065rch-"]))
    if kind == 11:
        return orjson.dumps({k: v for k, v in event.items() if k != rng.choice(list(VALID))})
    if kind == 12:
        return orjson.dumps({**event, rng.choice(list(VALID)): rng.choice([None, 1, 1.5, "1", True, [], {}])})
    if kind == 13:
        return orjson.dumps({**event, "schema_version": rng.choice([1.0, 2, "1", True, None, 0])})
    if kind == 14:  # the same key order but a value of another JSON kind
        name = rng.choice(list(VALID))
        return orjson.dumps({**event, name: rng.choice([12, "12", None, True])})
    return orjson.dumps(event)


def batch(seed: int, size: int, invalid_share: float) -> list[bytes | None]:
    rng = random.Random(seed)
    payloads: list[bytes | None] = []
    for number in range(size):
        event = random_valid(rng, number)
        payloads.append(mutate(rng, event) if rng.random() < invalid_share else orjson.dumps(event))
    return payloads


def assert_same(payloads: list[bytes | None]) -> contract.DecodedBatch:
    fast_decode._fast_parts(payloads)  # raises nothing (decode_transactions would fall back to the reference)
    fast = fast_decode.decode_transactions(payloads)
    reference = contract.decode_transactions_per_record(payloads)
    pd.testing.assert_frame_equal(fast.frame, reference.frame)
    assert fast.frame.dtypes.astype(str).to_dict() == contract.TRANSACTION_COLUMNS
    assert fast.positions.dtype == np.int64 and fast.positions.tolist() == reference.positions.tolist()
    assert fast.rejected == reference.rejected
    # bit-for-bit floats (assert_frame_equal treats -0.0 and 0.0 as equal)
    for name in ("amount", "latitude", "longitude"):
        assert fast.frame[name].to_numpy().tobytes() == reference.frame[name].to_numpy().tobytes(), name
    return fast


@pytest.mark.parametrize(("seed", "size", "invalid_share"),
                         [(1, 5_000, 0.01), (2, 2_000, 0.3), (3, 1_000, 0.9), (4, 300, 1.0), (5, 1, 0.0), (6, 7, 0.5)])
def test_fast_decoder_agrees_with_the_reference(seed: int, size: int, invalid_share: float) -> None:
    assert_same(batch(seed, size, invalid_share))


def test_every_mutation_kind_agrees() -> None:
    rng = random.Random(7)
    payloads = [mutate(rng, random_valid(rng, number)) for number in range(6_000)]
    decoded = assert_same(payloads)
    assert 0 < len(decoded.rejected) < len(payloads)


def test_catalogue_cases_spread_through_a_valid_batch_agree() -> None:
    rng = random.Random(8)
    payloads: list[bytes | None] = [orjson.dumps(random_valid(rng, number)) for number in range(500)]
    for number, event in enumerate(INVALID.values()):
        payloads.insert(number * 29, orjson.dumps(event))
    decoded = assert_same(payloads)
    assert len(decoded.rejected) == len(INVALID)


def test_numbers_are_read_exactly_as_orjson_reads_them() -> None:
    rng = random.Random(9)
    texts = [f"{rng.uniform(-1, 1) * 10 ** rng.randrange(-3, 7):.{rng.randrange(0, 20)}f}" for _ in range(3_000)]
    texts += [repr(rng.uniform(-90, 90)) for _ in range(2_000)] + [str(rng.randrange(-90, 91)) for _ in range(500)]
    payloads = [orjson.dumps({**VALID, "latitude": 1}).replace(b'"latitude":1', b'"latitude":' + text.encode())
                for text in texts]
    assert_same(payloads)


def test_the_fast_path_takes_compact_events_in_any_key_order() -> None:
    rng = random.Random(10)
    events_ = [random_valid(rng, number) for number in range(200)]
    payloads = [orjson.dumps(e) for e in events_[:100]] + [orjson.dumps(dict(sorted(e.items()))) for e in events_[100:]]
    payloads += [contract.encode(contract.transaction_to_dict(row)) for row in
                 fast_decode.decode_transactions(payloads[:10]).frame.to_dict("records")]
    taken = sum(len(positions) for positions, _ in fast_decode._fast_parts(payloads))
    assert taken == len(payloads)
    assert_same(payloads)


def decode(payloads: list[bytes]) -> contract.DecodedBatch:
    """The engines' decode, every payload received now."""
    received = np.full(len(payloads), time.time_ns() // 1000, dtype=np.int64)
    return pipeline.decode(payloads, received, future_tolerance_s=300)


def test_nul_characters_are_rejected_with_their_reason() -> None:
    escaped = orjson.dumps({**VALID, "merchant_id": "merch\u0000-1"})
    assert b"\\u0000" in escaped
    raw = orjson.dumps(VALID).replace(b"m-1", b"m\x00-1")
    decoded = decode([escaped, raw, orjson.dumps(VALID), orjson.dumps({**VALID, "note": "a\\u0000b"})])
    assert decoded.rejected[0] == contract.Rejected(0, contract.NUL_REASON)
    assert decoded.rejected[1].reason.startswith("invalid JSON")  # a raw NUL is not JSON at all
    assert decoded.positions.tolist() == [2, 3]
    for name in ("transaction_id", "event_time", "currency", "payment_method", "device_id"):
        value = "\u0000" if name != "event_time" else "2026-11-28T13:45:00\u0000Z"
        assert decode([orjson.dumps({**VALID, name: value})]).rejected[0].reason == contract.NUL_REASON, name


def test_small_batches_agree_without_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_decode, "_FAST_PATH_MIN_BATCH", 200)
    for seed, size in ((11, 0), (12, 1), (13, 50), (14, 199)):
        assert_same(batch(seed, size, 0.3))
