"""The hand-written validator and the published JSON Schema must agree on every case."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import numpy as np
import orjson
import pyarrow as pa
import pytest
from jsonschema.exceptions import ValidationError

from fraudstream.batch import rows as pipeline
from fraudstream.events import contract, fast_decode
from fraudstream.timeunits import MICROS_PER_SECOND

pytestmark = pytest.mark.unit

VALID = {
    "schema_version": 1, "transaction_id": "tx-1", "event_time": "2026-11-28T13:45:00.123Z",
    "account_id": "acc-1", "amount": 12.5, "currency": "EUR", "merchant_id": "m-1",
    "merchant_category": "grocery", "payment_method": "credit_card", "channel": "online",
    "country": "DE", "latitude": 52.5, "longitude": 13.4, "device_id": "dev-1",
}

INVALID = {
    "missing amount": {k: v for k, v in VALID.items() if k != "amount"},
    "negative amount": {**VALID, "amount": -3},
    "zero amount": {**VALID, "amount": 0},
    "huge amount": {**VALID, "amount": 1e12},
    "amount as text": {**VALID, "amount": "12.5"},
    "amount as bool": {**VALID, "amount": True},
    "bad currency": {**VALID, "currency": "euro"},
    "unknown payment method": {**VALID, "payment_method": "barter"},
    "unknown channel": {**VALID, "channel": "pigeon"},
    "latitude out of range": {**VALID, "latitude": 91},
    "event time with offset": {**VALID, "event_time": "2026-11-28T13:45:00+02:00"},
    "event time not a date": {**VALID, "event_time": "yesterday"},
    "wrong schema version": {**VALID, "schema_version": 2},
    "account id too long": {**VALID, "account_id": "a" * 65},
    "account id not a string": {**VALID, "account_id": 42},
    "not an object": [1, 2, 3],
}


#: The reason each case is rejected with (what the dead-letter topic tells a person); kept as it was
#: before the vectorized decoder, which must give the same.
REASONS = {
    "missing amount": "missing field: amount",
    "negative amount": "amount must be > 0 and <= 1e+07, got -3",
    "zero amount": "amount must be > 0 and <= 1e+07, got 0",
    "huge amount": "amount must be > 0 and <= 1e+07, got 1e+12",
    "amount as text": "amount must be a number, got str",
    "amount as bool": "amount must be a number, got bool",
    "bad currency": "currency has an invalid format: 'euro'",
    "unknown payment method": "payment_method must be one of credit_card, debit_card, bank_transfer, paypal, crypto, "
                              "mobile_wallet",
    "unknown channel": "channel must be one of card_present, online, atm, mobile_app",
    "latitude out of range": "latitude must be >= -90 and <= 90, got 91",
    "event time with offset": "event_time must be ISO-8601 UTC like 2026-01-31T12:00:00.000Z",
    "event time not a date": "event_time must be ISO-8601 UTC like 2026-01-31T12:00:00.000Z",
    "wrong schema version": "schema_version must be 1, got 2",
    "account id too long": "account_id must have 1 to 64 characters",
    "account id not a string": "account_id must be a string, got int",
    "not an object": "event must be a JSON object, got list",
}
MORE_INVALID = {
    "missing event_time": ({k: v for k, v in VALID.items() if k != "event_time"}, "missing field: event_time"),
    "null event_time": ({**VALID, "event_time": None},
                        "event_time must be ISO-8601 UTC like 2026-01-31T12:00:00.000Z"),
    "null currency": ({**VALID, "currency": None}, "missing field: currency"),
    "float transaction id": ({**VALID, "transaction_id": 1.5}, "transaction_id must be a string, got float"),
    "empty device id": ({**VALID, "device_id": ""}, "device_id must have 1 to 64 characters"),
    "event time Feb 30": ({**VALID, "event_time": "2026-02-30T00:00:00Z"},
                          "event_time is not a real date: day is out of range for month"),
    "event time 1999": ({**VALID, "event_time": "1999-12-31T23:59:59Z"}, "event_time must lie between 2000 and 2100"),
    "event time 2100": ({**VALID, "event_time": "2100-01-01T00:00:00Z"}, "event_time must lie between 2000 and 2100"),
    "bad country": ({**VALID, "country": "de"}, "country has an invalid format: 'de'"),
    "bad category": ({**VALID, "merchant_category": "Grocery"}, "merchant_category has an invalid format: 'Grocery'"),
    "schema version true": ({**VALID, "schema_version": True}, "schema_version must be 1, got True"),
    "schema version text": ({**VALID, "schema_version": "1"}, "schema_version must be 1, got '1'"),
    "longitude out of range": ({**VALID, "longitude": -180.5}, "longitude must be >= -180 and <= 180, got -180.5"),
    "nul in merchant id": ({**VALID, "merchant_id": "merch\u0000-1"}, contract.NUL_REASON),
    "nul in country": ({**VALID, "country": "D\u0000"}, contract.NUL_REASON),
}

def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    """JSON Schema's ``pattern`` with ECMA-262's ``$`` (the end of the text only): Python's ``$`` also matches
    before a final newline, which would make jsonschema accept "EUR\n" where the standard does not."""
    if isinstance(instance, str) and not re.search(re.sub(r"(?<!\\)\$$", r"\\Z", pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})


@functools.cache
def schema_validator(name: str = "transaction") -> jsonschema.protocols.Validator:
    """A validator of the published schema ``name``, patterns read as the standard reads them."""
    return _Validator(contract.schema(name))


def schema_accepts(event: object, name: str = "transaction") -> bool:
    return schema_validator(name).is_valid(event)


def test_valid_event_passes_both() -> None:
    batch = fast_decode.decode_transactions([orjson.dumps(VALID)])
    assert schema_accepts(VALID)
    assert batch.rejected == []
    assert batch.frame.loc[0, "amount"] == 12.5
    assert contract.format_time_us(int(batch.frame.loc[0, "event_time_us"])) == "2026-11-28T13:45:00.123000Z"


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_event_rejected_by_both(case: str) -> None:
    event = INVALID[case]
    batch = fast_decode.decode_transactions([orjson.dumps(event)])
    assert not schema_accepts(event), case
    assert len(batch.rejected) == 1 and batch.frame.empty
    assert batch.rejected[0].reason == REASONS[case]


@pytest.mark.parametrize("case", sorted(MORE_INVALID))
def test_more_invalid_events_rejected_by_both_with_their_reason(case: str) -> None:
    event, reason = MORE_INVALID[case]
    batch = fast_decode.decode_transactions([orjson.dumps(event)])
    assert not schema_accepts(event), case
    assert [r.reason for r in batch.rejected] == [reason] and batch.frame.empty


def test_sql_looking_strings_are_data_not_errors() -> None:
    event = {**VALID, "merchant_id": "'; DROP TABLE transactions; --"}
    batch = fast_decode.decode_transactions([orjson.dumps(event)])
    assert batch.rejected == [] and batch.frame.loc[0, "merchant_id"] == event["merchant_id"]


def test_bad_payloads_report_positions_and_reasons() -> None:
    payloads = [b"{broken", None, b"x" * (contract.MAX_EVENT_BYTES + 1), orjson.dumps(VALID), b"NaN"]
    batch = fast_decode.decode_transactions(payloads)
    assert list(batch.positions) == [3]
    reasons = {r.position: r.reason for r in batch.rejected}
    assert set(reasons) == {0, 1, 2, 4}
    assert reasons[0].startswith("invalid JSON") and reasons[1] == "empty payload"
    assert reasons[2].startswith("oversized")
    assert reasons[4] == "invalid JSON: unexpected character, expected a JSON value: line 1 column 1 (char 0)"


def test_nan_amount_rejected() -> None:
    # orjson refuses NaN literals; a float NaN produced by a buggy client arrives as null
    with pytest.raises(contract.InvalidEvent, match="amount"):
        contract.validate_transaction({**VALID, "amount": math.nan})


def test_round_trip_through_wire_dictionary() -> None:
    frame = fast_decode.decode_transactions([orjson.dumps(VALID)]).frame
    again = contract.transaction_to_dict(frame.iloc[0].to_dict())
    assert fast_decode.decode_transactions([contract.encode(again)]).frame.equals(frame)
    assert schema_accepts(again)



def test_the_batch_encoder_gives_the_per_row_encoders_values_escaping_what_json_must() -> None:
    rows = [{**VALID, "transaction_id": f"tx-{number}", "event_time": contract.format_time_us(time_us)}
            for number, time_us in enumerate([946_684_800_000_000, 1_795_860_000_123_456, 4_102_444_799_999_999])]
    rows[1] |= {"device_id": 'a "quoted" \\ back\tslash', "amount": 0.01, "latitude": -0.5}
    rows[2] |= {"merchant_id": "café-ü", "amount": 10_000_000.0, "longitude": 180.0}
    frame = fast_decode.decode_transactions([orjson.dumps(row) for row in rows]).frame
    assert len(frame) == len(rows)
    payloads = contract.encode_transactions(pa.Table.from_pandas(frame, preserve_index=False))
    assert [orjson.loads(payload) for payload in payloads] == [
        orjson.loads(contract.encode(contract.transaction_to_dict(row))) for row in frame.itertuples(index=False)]
    assert fast_decode.decode_transactions(payloads).frame.equals(frame)


def test_the_batch_encoder_refuses_what_json_cannot_carry() -> None:
    frame = fast_decode.decode_transactions([orjson.dumps(VALID)]).frame
    with pytest.raises(ValueError, match="amount must be finite"):
        contract.encode_transactions(pa.Table.from_pandas(frame.assign(amount=math.inf), preserve_index=False))
    with pytest.raises(ValueError, match="device_id has missing values"):
        contract.encode_transactions(pa.Table.from_pandas(frame.assign(device_id=None), preserve_index=False))


def test_times_format_alike_one_by_one_and_in_bulk() -> None:
    times = [946_684_800_000_000, 1_795_860_000_000_001, 4_102_444_799_999_999]
    assert contract.format_times_us(times) == [contract.format_time_us(time_us) for time_us in times]
    assert [contract.parse_time_us(text) for text in contract.format_times_us(times)] == times

def test_partition_is_stable_and_spread() -> None:
    partitions = [contract.partition_for(f"acc-{i}", 6) for i in range(6000)]
    assert contract.partition_for("acc-1", 6) == contract.partition_for("acc-1", 6)
    assert all(600 < partitions.count(p) < 1400 for p in range(6))


def test_labels_decode() -> None:
    label = {"transaction_id": "tx-1", "is_fraud": True, "scenario": "card_testing",
             "labeled_at": "2026-11-29T00:00:00Z", "account_id": "acc-1", "merchant_id": "m-1"}
    frame, rejected = contract.decode_labels([orjson.dumps(label), orjson.dumps({**label, "is_fraud": "yes"})])
    assert len(frame) == 1 and bool(frame.loc[0, "is_fraud"]) and len(rejected) == 1
    assert schema_accepts(label, "label")


@pytest.mark.parametrize("field,value", [("currency", "EUR\n"), ("country", "DE\n"),
                                         ("event_time", "2026-11-28T13:45:00Z\n")])
def test_trailing_newline_does_not_slip_through_a_pattern(field: str, value: str) -> None:
    # Python's `$` matches before a final newline; JSON Schema's (ECMA-262) does not
    batch = fast_decode.decode_transactions([orjson.dumps({**VALID, field: value})])
    assert batch.frame.empty and field in batch.rejected[0].reason
    assert not schema_accepts({**VALID, field: value})


RECEIVED_US = contract.parse_time_us("2026-11-28T13:45:00Z")


def at(offset_s: float) -> bytes:
    event_time_us = RECEIVED_US + round(offset_s * MICROS_PER_SECOND)
    return orjson.dumps({**VALID, "event_time": contract.format_time_us(event_time_us)})


def test_events_dated_too_far_after_their_receipt_are_rejected_as_event_time_in_future() -> None:
    """Defect: an event dated decades ahead (the validator allows up to 2100) moved the feature clock."""
    payloads = [at(0), at(300), at(301), b"{broken", at(70 * 365 * 86_400), at(-30 * 86_400)]
    received = np.full(len(payloads), RECEIVED_US)
    decoded = pipeline.decode(payloads, received, future_tolerance_s=300)
    assert decoded.positions.tolist() == [0, 1, 5]  # 300 s ahead is tolerated; a month late is late, not refused
    assert len(decoded.frame) == 3
    reasons = {item.position: item.reason for item in decoded.rejected}
    assert sorted(reasons) == [2, 3, 4]
    assert reasons[2].startswith("event_time_in_future: event_time 2026-11-28T13:50:01.000000Z is 301 s after")
    assert "check the producer's clock" in reasons[4]
    assert [item.position for item in decoded.rejected] == [2, 3, 4]  # in payload order


def test_the_tolerance_is_a_setting_and_each_event_has_its_own_receipt_time() -> None:
    payloads = [at(60), at(60)]
    received = np.array([RECEIVED_US, RECEIVED_US + 60 * MICROS_PER_SECOND])
    assert pipeline.decode(payloads, received, future_tolerance_s=0).positions.tolist() == [1]
    assert pipeline.decode(payloads, received, future_tolerance_s=60).positions.tolist() == [0, 1]


def test_receipt_is_the_kafka_timestamp_else_the_read_time() -> None:
    read_at_us = RECEIVED_US + 5 * MICROS_PER_SECOND
    stamps = np.array([RECEIVED_US, -1_000, 0])  # confluent-kafka gives -1 ms for "no timestamp"
    assert pipeline.received_times_us(stamps, read_at_us).tolist() == [RECEIVED_US, read_at_us, read_at_us]


LABEL = {"transaction_id": "tx-1", "is_fraud": True, "scenario": "card_testing", "labeled_at": "2026-11-29T00:00:00Z",
         "account_id": "acc-1", "merchant_id": "m-1"}

#: Hostile labels and their reasons: the event's rules apply (before, a NUL in account_id, merchant_id or
#: scenario reached COPY label_stage and stopped the engine on every restart).
INVALID_LABELS = {
    "nul in account id": ({**LABEL, "account_id": "a\u0000"}, contract.NUL_REASON),
    "nul in merchant id": ({**LABEL, "merchant_id": "\u0000m"}, contract.NUL_REASON),
    "nul in scenario": ({**LABEL, "scenario": "card\u0000testing"}, contract.NUL_REASON),
    "nul in transaction id": ({**LABEL, "transaction_id": "tx\u0000"}, contract.NUL_REASON),
    "nul in labeled_at": ({**LABEL, "labeled_at": "2026-11-29T00:00:00\u0000Z"}, contract.NUL_REASON),
    "long account id": ({**LABEL, "account_id": "a" * 65}, "account_id must have 1 to 64 characters"),
    "long merchant id": ({**LABEL, "merchant_id": "m" * 10_000}, "merchant_id must have 1 to 64 characters"),
    "long scenario": ({**LABEL, "scenario": "s" * 65}, "scenario must have 1 to 64 characters"),
    "empty merchant id": ({**LABEL, "merchant_id": ""}, "merchant_id must have 1 to 64 characters"),
    "account id a number": ({**LABEL, "account_id": 42}, "account_id must be a string, got int"),
    "scenario a list": ({**LABEL, "scenario": ["x"]}, "scenario must be a string, got list"),
    "is_fraud text": ({**LABEL, "is_fraud": "yes"}, "is_fraud must be true or false"),
    "missing labeled_at": ({k: v for k, v in LABEL.items() if k != "labeled_at"}, "missing field: labeled_at"),
    "labeled_at not a time": ({**LABEL, "labeled_at": "yesterday"},
                              "labeled_at must be ISO-8601 UTC like 2026-01-31T12:00:00.000Z"),
    "labeled_at 2100": ({**LABEL, "labeled_at": "2100-01-01T00:00:00Z"}, "labeled_at must lie between 2000 and 2100"),
    "not an object": ("label", "label must be a JSON object, got str"),
}


@pytest.mark.parametrize("case", sorted(INVALID_LABELS))
def test_hostile_labels_are_rejected_with_the_rules_of_events(case: str) -> None:
    label, reason = INVALID_LABELS[case]
    frame, rejected = contract.decode_labels([orjson.dumps(label)])
    assert frame.empty and [item.reason for item in rejected] == [reason]
    assert not schema_accepts(label, "label")


def test_label_ids_and_scenario_may_be_absent_or_null() -> None:
    minimal = {"transaction_id": "tx-2", "is_fraud": False, "labeled_at": "2026-11-29T00:00:00.5+00:00"}
    nulls = {**minimal, "account_id": None, "merchant_id": None, "scenario": None}
    frame, rejected = contract.decode_labels([orjson.dumps(minimal), orjson.dumps(nulls)])
    assert rejected == [] and frame[["account_id", "merchant_id", "scenario"]].isna().all().all()
    assert schema_accepts(minimal, "label") and schema_accepts(nulls, "label")
