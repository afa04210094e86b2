"""Backfills: determinism, the published contracts, labels, fraud share, legitimate surprises."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

from fraudstream.events import contract, fast_decode
from fraudstream.history import History, read_history, write_history
from fraudstream.simulate.backfill import simulate_history
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS, SCENARIO_NAMES

pytestmark = pytest.mark.unit

SMALL = {"accounts": 1_500, "merchants": 300}


@pytest.fixture(scope="module")
def history() -> History:
    return simulate_history(days=28, seed=11, fraud_share=0.02, **SMALL)


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in ("transactions.parquet", "labels.parquet", "summary.json")}


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("first", 5), ("again", 5), ("other", 6)):
        write_history(simulate_history(days=5, seed=seed, **SMALL), tmp_path / name)
    first, again, other = (_files(tmp_path / name) for name in ("first", "again", "other"))
    assert first == again
    assert all(first[name] != other[name] for name in first)


def test_read_history_returns_what_was_written_with_contract_dtypes(history: History, tmp_path: Path) -> None:
    write_history(history, tmp_path)
    loaded = read_history(tmp_path)
    assert loaded.transactions.equals(history.transactions)
    assert loaded.labels.equals(history.labels)
    assert loaded.transactions.dtypes.astype(str).to_dict() == {
        name: "object" if kind == "object" else kind for name, kind in contract.TRANSACTION_COLUMNS.items()}
    assert loaded.labels.dtypes.astype(str).to_dict() == contract.LABEL_COLUMNS
    assert loaded.seed == 11


def test_frames_are_sorted_as_streams_deliver_them(history: History) -> None:
    transactions, labels = history.transactions, history.labels
    assert transactions["transaction_id"].is_unique
    keys = list(zip(transactions["event_time_us"], transactions["transaction_id"], strict=True))
    assert keys == sorted(keys)
    label_keys = list(zip(labels["labeled_at_us"], labels["transaction_id"], strict=True))
    assert label_keys == sorted(label_keys)


def test_events_validate_against_the_published_schema_and_the_stream_decoder(history: History) -> None:
    transactions = history.transactions
    fraud = transactions[transactions["transaction_id"].isin(history.labels.loc[history.labels["is_fraud"],
                                                                                 "transaction_id"])]
    sample = pd.concat([transactions.sample(3_000, random_state=1), fraud])
    payloads = [contract.encode(contract.transaction_to_dict(row)) for row in sample.itertuples(index=False)]
    decoded = fast_decode.decode_transactions(payloads)
    assert decoded.rejected == []
    assert len(decoded.frame) == len(sample)
    validator = jsonschema.Draft202012Validator(contract.schema("transaction"),
                                                format_checker=jsonschema.FormatChecker())
    for row in sample.sample(800, random_state=2).itertuples(index=False):
        event = contract.transaction_to_dict(row)
        validator.validate(event)
        assert set(event) == set(contract.schema("transaction")["required"])  # no ground truth inside


def test_labels_validate_and_cover_every_transaction_once(history: History) -> None:
    labels, transactions = history.labels, history.transactions
    validator = jsonschema.Draft202012Validator(contract.schema("label"), format_checker=jsonschema.FormatChecker())
    for row in labels.sample(500, random_state=2).itertuples(index=False):
        validator.validate(contract.label_to_dict(row))
    assert sorted(labels["transaction_id"]) == sorted(transactions["transaction_id"])
    assert labels.loc[labels["is_fraud"], "scenario"].isin(SCENARIO_NAMES).all()
    assert labels.loc[~labels["is_fraud"], "scenario"].isna().all()


def test_labels_arrive_after_chargeback_or_no_dispute_delays(history: History) -> None:
    merged = history.labels.merge(history.transactions[["transaction_id", "event_time_us"]], on="transaction_id")
    delay_days = (merged["labeled_at_us"] - merged["event_time_us"]) / 86_400e6
    fraud = merged["is_fraud"]
    assert delay_days[fraud].between(1, 21).all()
    assert delay_days[~fraud].between(30, 45).all()


def test_fraud_share_is_near_the_configured_share_in_every_scenario(history: History) -> None:
    events_count = len(history.transactions)
    by_scenario = history.fraud_by_scenario(SCENARIO_NAMES)
    assert sum(by_scenario.values()) / events_count == pytest.approx(0.02, rel=0.25)
    total_weight = sum(DEFAULT_SCENARIO_WEIGHTS.values())
    for name, count in by_scenario.items():
        expected = 0.02 * DEFAULT_SCENARIO_WEIGHTS[name] / total_weight
        assert count / events_count == pytest.approx(expected, rel=0.5), name


def test_scenarios_can_be_switched_off_and_fraud_share_set_to_zero() -> None:
    only = simulate_history(days=7, seed=2, fraud_share=0.01, scenarios={"card_testing": 1.0}, **SMALL)
    assert set(only.labels["scenario"].dropna()) == {"card_testing"}
    clean = simulate_history(days=3, seed=2, fraud_share=0.0, **SMALL)
    assert not clean.labels["is_fraud"].any()
    with pytest.raises(ValueError, match="unknown scenarios"):
        simulate_history(days=1, scenarios={"bank_robbery": 1.0}, **SMALL)


def test_legitimate_traffic_has_surprises_so_no_single_field_separates_fraud(history: History) -> None:
    frame = history.transactions.merge(history.labels[["transaction_id", "is_fraud"]], on="transaction_id")
    legit = frame[~frame["is_fraud"]]
    home = legit.groupby("account_id")["currency"].first()
    home_country = legit.groupby("account_id")["country"].agg(lambda values: values.mode().iloc[0])
    abroad = legit["country"].to_numpy() != home_country.reindex(legit["account_id"]).to_numpy()
    assert 0.003 < abroad.mean() < 0.2  # trips and VPNs
    assert (legit["amount"] > 1_000).sum() > 20  # big one-off purchases
    first_seen = legit.drop_duplicates(["account_id", "device_id"])
    late_devices = first_seen["event_time_us"] > legit["event_time_us"].min() + 14 * 86_400e6
    assert late_devices.sum() > 20  # new phones
    assert len(home) > 1_000
    # Every payment method and channel occurs in legitimate traffic.
    assert set(legit["payment_method"]) == set(contract.PAYMENT_METHODS)
    assert set(legit["channel"]) == set(contract.CHANNELS)


def test_activity_follows_daily_and_weekly_seasonality(history: History) -> None:
    times = pd.to_datetime(history.transactions["event_time_us"], unit="us", utc=True)
    weekday_counts = np.bincount(times.dt.day_of_week, minlength=7)
    assert weekday_counts[4:6].mean() > 1.08 * weekday_counts[:3].mean()
    hourly = np.bincount(times.dt.hour, minlength=24)
    assert hourly.max() > 3 * hourly.min()
