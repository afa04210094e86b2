"""Each fraud scenario leaves its behavioural signature, and legitimate traffic mostly does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.history import History
from fraudstream.simulate.backfill import simulate_history
from fraudstream.simulate.population import distance_km
from fraudstream.timeunits import MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MINUTE

pytestmark = pytest.mark.unit



@pytest.fixture(scope="module")
def history() -> History:
    return simulate_history(days=42, seed=21, accounts=2_000, merchants=300, fraud_share=0.03)


@pytest.fixture(scope="module")
def frame(history: History) -> pd.DataFrame:
    """Transactions with their ground truth, in time order."""
    labels = history.labels[["transaction_id", "is_fraud", "scenario"]]
    return history.transactions.merge(labels, on="transaction_id").sort_values(["event_time_us", "transaction_id"])


def _scenario(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    rows = frame[frame["scenario"] == name]
    assert len(rows) > 30, f"too few {name} transactions to judge"
    return rows


def _legit(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[~frame["is_fraud"]]


def _incidents(rows: pd.DataFrame, gap_us: int = 2 * MICROS_PER_HOUR) -> list[pd.DataFrame]:
    """A scenario's rows split per account wherever the account pauses longer than ``gap_us``."""
    ordered = rows.sort_values(["account_id", "event_time_us"])
    gaps = ordered.groupby("account_id")["event_time_us"].diff()
    number = (gaps.isna() | (gaps > gap_us)).cumsum()
    return [incident for _, incident in ordered.groupby(number)]


def _speeds_kmh(frame: pd.DataFrame) -> pd.Series:
    """Speed each account needed to travel from its previous transaction to this one."""
    previous = frame.groupby("account_id")[["latitude", "longitude", "event_time_us"]].shift()
    kilometres = distance_km(previous["latitude"].to_numpy(), previous["longitude"].to_numpy(),
                             frame["latitude"].to_numpy(), frame["longitude"].to_numpy())
    hours = (frame["event_time_us"] - previous["event_time_us"]).to_numpy() / MICROS_PER_HOUR
    return pd.Series(kilometres / np.maximum(hours, 1 / 3600), index=frame.index)


def test_card_testing_is_a_burst_of_tiny_amounts_at_many_merchants_then_a_large_one(frame: pd.DataFrame) -> None:
    testing = _scenario(frame, "card_testing")
    for incident in _incidents(testing, gap_us=20 * MICROS_PER_MINUTE):
        assert incident["device_id"].nunique() == 1
        probes, final = incident.iloc[:-1], incident.iloc[-1]
        assert len(probes) >= 4
        assert (probes["amount"] <= 3.0).all()
        assert probes["merchant_id"].nunique() >= 3
        assert probes["event_time_us"].max() - probes["event_time_us"].min() < 30 * MICROS_PER_MINUTE
        assert final["amount"] >= 250
        assert final["event_time_us"] - probes["event_time_us"].max() <= 15 * MICROS_PER_MINUTE
    # Legitimate accounts almost never make four purchases under 3.00 within ten minutes.
    legit_small = _legit(frame)[_legit(frame)["amount"] <= 3.0]
    window = legit_small.groupby("account_id")["event_time_us"].transform(lambda times: times.diff(3))
    assert (window < 10 * MICROS_PER_MINUTE).sum() <= 0.001 * len(_legit(frame))


def test_account_takeover_is_a_new_device_abroad_then_high_values(frame: pd.DataFrame) -> None:
    takeover = _scenario(frame, "account_takeover")
    legit = _legit(frame)
    known_devices = set(zip(legit["account_id"], legit["device_id"], strict=True))
    home_country = legit.groupby("account_id")["country"].agg(lambda values: values.mode().iloc[0])
    typical = legit.groupby("account_id")["amount"].median()
    high_values = []
    for incident in _incidents(takeover):
        account = incident["account_id"].iloc[0]
        assert incident["device_id"].nunique() == 1
        assert (account, incident["device_id"].iloc[0]) not in known_devices
        assert (incident["country"] != home_country.get(account, "")).all()
        assert incident["channel"].isin(["online", "mobile_app"]).all()
        assert incident["amount"].iloc[1:].min() >= 200
        high_values.append(incident["amount"].max() >= 3 * typical.get(account, 0.0))
    assert np.mean(high_values) >= 0.9


def test_impossible_travel_needs_speeds_no_airliner_reaches(frame: pd.DataFrame) -> None:
    speeds = _speeds_kmh(frame)
    travel = _scenario(frame, "impossible_travel")
    first_rows = travel.groupby("account_id").head(1).index
    assert (speeds[first_rows] > 1_000).mean() >= 0.95
    legit_speeds = speeds[_legit(frame).index].dropna()
    assert (legit_speeds > 1_000).mean() < 0.01


def test_compromised_merchant_victims_share_a_shop_visited_days_before(frame: pd.DataFrame) -> None:
    cloned = _scenario(frame, "compromised_merchant")
    assert (cloned["channel"].isin(["card_present", "atm"])).all()
    legit = _legit(frame)
    shop_visits = legit[legit["channel"] == "card_present"]
    visits_of = {account: visits for account, visits in shop_visits.groupby("account_id")
                 if account in set(cloned["account_id"])}
    candidates: dict[str, set[str]] = {}
    for incident in _incidents(cloned, gap_us=MICROS_PER_DAY):
        account = incident["account_id"].iloc[0]
        first = incident["event_time_us"].min()
        visits = visits_of.get(account, shop_visits.iloc[:0])
        visits = visits[visits["event_time_us"].between(first - 10 * MICROS_PER_DAY, first - 2 * MICROS_PER_DAY)]
        candidates[f"{account}@{first}"] = set(visits["merchant_id"])
    victims_per_shop = pd.Series([shop for shops in candidates.values() for shop in shops]).value_counts()
    skimmed = set(victims_per_shop[victims_per_shop >= 3].index)
    covered = [bool(shops & skimmed) for shops in candidates.values()]
    assert np.mean(covered) >= 0.9
    assert len(skimmed) <= len(candidates) / 3


def test_dormant_spree_is_a_long_silence_then_many_high_values(history: History, frame: pd.DataFrame) -> None:
    spree = _scenario(frame, "dormant_spree")
    legit = _legit(frame)
    typical = legit.groupby("account_id")["amount"].median()
    victims = set(spree["account_id"])
    legit_times = {account: times for account, times in legit.groupby("account_id")["event_time_us"]
                   if account in victims}
    high_values = []
    for incident in _incidents(spree):
        account = incident["account_id"].iloc[0]
        start = incident["event_time_us"].min()
        times = legit_times.get(account, pd.Series(dtype="int64"))
        before = times[times < start]
        silence = start - (before.max() if len(before) else history.start_us)
        assert silence >= 14 * MICROS_PER_DAY
        assert len(incident) >= 4
        assert incident["event_time_us"].max() - start <= 8 * MICROS_PER_HOUR
        assert (incident["amount"] >= 150).all()
        high_values.append(incident["amount"].median() >= 3 * typical.get(account, 0.0))
    assert np.mean(high_values) >= 0.8


def test_stealth_spending_stays_in_range_and_only_behaviour_gives_it_away(frame: pd.DataFrame) -> None:
    stealth = _scenario(frame, "stealth_spending")
    legit = _legit(frame)
    ceiling = legit.groupby("account_id")["amount"].quantile(0.95)
    in_range = stealth["amount"].to_numpy() <= ceiling.reindex(stealth["account_id"]).to_numpy()
    assert in_range.mean() >= 0.9
    known_devices = set(zip(legit["account_id"], legit["device_id"], strict=True))
    assert np.mean([pair in known_devices for pair in zip(stealth["account_id"], stealth["device_id"],
                                                          strict=True)]) >= 0.9
    home_country = legit.groupby("account_id")["country"].agg(lambda values: values.mode().iloc[0])
    assert (stealth["country"].to_numpy() == home_country.reindex(stealth["account_id"]).to_numpy()).mean() >= 0.9
    for incident in _incidents(stealth):
        assert len(incident) >= 6
        assert incident["event_time_us"].max() - incident["event_time_us"].min() <= 2 * MICROS_PER_HOUR
        local_hour = ((incident["event_time_us"] / MICROS_PER_HOUR + np.round(incident["longitude"] / 15)) % 24)
        assert local_hour.between(0.5, 7).mean() >= 0.8
