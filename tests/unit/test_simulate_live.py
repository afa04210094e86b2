"""The live producer's parts that need no broker: traffic per mode, event stamping, label scheduling."""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pandas as pd
import pytest

from fraudstream import events
from fraudstream.simulate.backfill import LabelDelays, simulate_history
from fraudstream.simulate.live import Chunk, LabelSchedule, Mode, TrafficSource, encode_bodies, stamp_events
from fraudstream.simulate.normal import LEGITIMATE
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS

pytestmark = pytest.mark.unit


def _first_chunk(mode: Mode) -> Chunk:
    source = TrafficSource(mode, seed=3, accounts=600, merchants=200, fraud_share=0.02,
                           scenarios=DEFAULT_SCENARIO_WEIGHTS)
    return next(iter(source.chunks()))


@pytest.mark.parametrize("mode", list(Mode))
def test_each_mode_sends_its_own_traffic_as_valid_events_keyed_by_account(mode: Mode) -> None:
    chunk = _first_chunk(mode)
    fraud = chunk.scenario_codes != LEGITIMATE
    expected_fraud = {Mode.normal: (0.0, 0.0), Mode.hacker: (1.0, 1.0), Mode.all: (0.01, 0.04)}[mode]
    assert expected_fraud[0] <= fraud.mean() <= expected_fraud[1]
    payloads = stamp_events(chunk.bodies[:2_000], 1_800_000_000.0, 1_800_000_002.0)
    decoded = events.decode_transactions(payloads)
    assert decoded.rejected == []
    assert decoded.frame["account_id"].str.encode("ascii").tolist() == chunk.keys[:2_000]
    assert decoded.frame["transaction_id"].tolist() == chunk.transaction_ids[:2_000]
    assert all(set(orjson.loads(payload)) == set(events.schema()["required"]) for payload in payloads[:100])


def test_stamped_event_times_are_spread_over_the_slice_in_order() -> None:
    bodies = [events.encode({"schema_version": 1, "amount": 1.5})] * 4
    stamped = [orjson.loads(payload) for payload in stamp_events(bodies, 1_800_000_000.0, 1_800_000_001.0)]
    times = [events.parse_time_us(event["event_time"]) for event in stamped]
    assert times == [1_800_000_000_000_000, 1_800_000_000_250_000, 1_800_000_000_500_000, 1_800_000_000_750_000]
    assert stamped[0]["event_time"] == events.format_time_us(times[0])
    assert all(event["amount"] == 1.5 for event in stamped)


def test_labels_come_due_after_their_delay_fraud_sooner_than_legit() -> None:
    chunk = _first_chunk(Mode.all)
    schedule = LabelSchedule(LabelDelays(fraud_s=(5.0, 10.0), legit_s=(30.0, 60.0)), np.random.default_rng(1))
    rows = np.arange(len(chunk.bodies))
    schedule.add(chunk, rows, now_s=1_000.0)
    assert schedule.pending == len(rows)
    assert list(schedule.pop_due(1_004.9)) == []
    early = np.concatenate([group for _, group in schedule.pop_due(1_010.0)])
    assert (chunk.scenario_codes[early] != LEGITIMATE).all()
    assert len(early) == (chunk.scenario_codes != LEGITIMATE).sum()
    assert list(schedule.pop_due(1_029.9)) == []
    rest = np.concatenate([group for _, group in schedule.pop_due(None)])
    assert sorted(itertools.chain(early.tolist(), rest.tolist())) == rows.tolist()
    assert schedule.pending == 0


def test_arrow_encoded_bodies_carry_exactly_the_history_values() -> None:
    history = simulate_history(days=2, seed=4, accounts=300, merchants=200, fraud_share=0.05)
    payloads = stamp_events(encode_bodies(history.transactions_table), 1_800_000_000.0, 1_800_000_010.0)
    decoded = events.decode_transactions(payloads)
    assert decoded.rejected == []
    expected = history.transactions.drop(columns="event_time_us")
    pd.testing.assert_frame_equal(decoded.frame.drop(columns="event_time_us"), expected)
