"""The live producer's parts that need no broker: traffic per mode, event stamping, label scheduling."""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pandas as pd
import pytest

from fraudstream.events import contract, fast_decode
from fraudstream.simulate import live
from fraudstream.simulate import population as population_module
from fraudstream.simulate.backfill import DEFAULT_START, LabelDelays, simulate_history, to_microseconds
from fraudstream.simulate.live import (
    Chunk,
    Labels,
    LabelSchedule,
    Mode,
    SimulatedClock,
    TrafficSource,
    accounts_for_rate,
    due_until,
    hacker_fraud_share,
    live_start_us,
    resolve_accounts,
    stamp_events,
    time_scale_for,
)
from fraudstream.simulate.normal import LEGITIMATE
from fraudstream.simulate.population import build_population
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS
from fraudstream.timeunits import MICROS_PER_DAY

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
    decoded = fast_decode.decode_transactions(payloads)
    assert decoded.rejected == []
    assert decoded.frame["account_id"].str.encode("ascii").tolist() == chunk.keys[:2_000]
    assert decoded.frame["transaction_id"].tolist() == chunk.transaction_ids[:2_000]
    assert all(set(orjson.loads(payload)) == set(contract.schema()["required"]) for payload in payloads[:100])


def test_stamped_event_times_are_spread_over_the_slice_in_order() -> None:
    bodies = [contract.encode({"schema_version": 1, "amount": 1.5})] * 4
    stamped = [orjson.loads(payload) for payload in stamp_events(bodies, 1_800_000_000.0, 1_800_000_001.0)]
    times = [contract.parse_time_us(event["event_time"]) for event in stamped]
    assert times == [1_800_000_000_000_000, 1_800_000_000_250_000, 1_800_000_000_500_000, 1_800_000_000_750_000]
    assert stamped[0]["event_time"] == contract.format_time_us(times[0])
    assert all(event["amount"] == 1.5 for event in stamped)


def test_labels_come_due_after_their_delay_fraud_sooner_than_legit() -> None:
    chunk = _first_chunk(Mode.all)
    schedule = LabelSchedule(LabelDelays(fraud_s=(5.0, 10.0), legit_s=(30.0, 60.0)), np.random.default_rng(1))
    rows = np.arange(len(chunk.bodies))
    schedule.add(chunk, rows, now_s=1_000.0)
    assert schedule.pending == len(rows)
    assert list(schedule.pop_due(1_004.9)) == []
    due = list(schedule.pop_due(1_010.0))
    early = np.concatenate([batch.numbers for batch in due]) - chunk.first_number
    assert (chunk.scenario_codes[early] != LEGITIMATE).all()
    assert len(early) == (chunk.scenario_codes != LEGITIMATE).sum()
    assert all((batch.accounts == chunk.accounts[batch.numbers - chunk.first_number]).all() for batch in due)
    due_s = np.concatenate([batch.due_s for batch in due])
    assert ((due_s >= 1_005.0) & (due_s <= 1_010.0)).all(), "each label keeps its exact due time (its labeled_at)"
    assert list(schedule.pop_due(1_029.9)) == []
    rest = np.concatenate([batch.numbers for batch in schedule.pop_due(None)]) - chunk.first_number
    assert sorted(itertools.chain(early.tolist(), rest.tolist())) == rows.tolist()
    assert schedule.pending == 0


def test_fraud_only_labels_skip_legitimate_transactions() -> None:
    chunk = _first_chunk(Mode.all)
    schedule = LabelSchedule(LabelDelays(), np.random.default_rng(1), labels=Labels.fraud_only)
    schedule.add(chunk, np.arange(len(chunk.bodies)), now_s=np.zeros(len(chunk.bodies)))
    fraud = np.flatnonzero(chunk.scenario_codes != LEGITIMATE)
    assert 0 < schedule.pending == len(fraud)
    sent = np.concatenate([batch.numbers for batch in schedule.pop_due(None)]) - chunk.first_number
    assert sorted(sent.tolist()) == fraud.tolist()


def test_a_histories_events_travel_with_exactly_their_values() -> None:
    history = simulate_history(days=2, seed=4, accounts=300, merchants=200, fraud_share=0.05)
    decoded = fast_decode.decode_transactions(contract.encode_transactions(history.transactions_table))
    assert decoded.rejected == []
    pd.testing.assert_frame_equal(decoded.frame, history.transactions)


def test_simulated_clock_runs_scale_times_faster_than_the_wall_clock_and_maps_back() -> None:
    clock = SimulatedClock(origin_wall_s=1_000.0, origin_simulated_us=1_767_225_600_000_000, scale=2_400.0)
    assert clock.simulated_us(1_000.0) == 1_767_225_600_000_000
    assert clock.simulated_us(1_036.0) == 1_767_225_600_000_000 + MICROS_PER_DAY  # a simulated day in 36 s
    assert clock.wall_s(clock.simulated_us(1_012.5)) == pytest.approx(1_012.5)
    with pytest.raises(ValueError):
        SimulatedClock(0.0, 0, 0.0)


def test_time_scale_makes_the_population_arrive_at_the_requested_rate() -> None:
    per_simulated_second = 18_000 / 86_400  # 10,000 accounts, ~1.8 transactions a day each
    scale = time_scale_for(500.0, per_simulated_second)
    assert scale == pytest.approx(2_400.0)
    assert per_simulated_second * scale == pytest.approx(500.0)
    with pytest.raises(ValueError):
        time_scale_for(0.0, per_simulated_second)


def test_hacker_share_gives_the_hacker_rate_on_the_normal_producers_clock() -> None:
    share = hacker_fraud_share(500.0, 10.0)
    legit_per_simulated_second = 0.2
    fraud_per_simulated_second = legit_per_simulated_second * share / (1 - share)
    scale = time_scale_for(500.0, legit_per_simulated_second)
    assert fraud_per_simulated_second * scale == pytest.approx(10.0)


def test_due_until_sends_what_the_simulated_clock_has_reached_and_never_goes_back() -> None:
    times = np.array([10, 20, 20, 30, 40], dtype=np.int64)
    assert due_until(times, 0, 5) == 0
    assert due_until(times, 0, 20) == 3  # inclusive: events at the clock's moment are due
    assert due_until(times, 3, 29) == 3
    assert due_until(times, 4, 10) == 4
    assert due_until(times, 0, 1_000) == 5


def test_the_source_measures_its_rate_and_chunks_follow_simulated_time_without_gaps() -> None:
    start = 1_767_225_600_000_000
    source = TrafficSource(Mode.all, seed=3, accounts=600, merchants=200, fraud_share=0.02,
                           scenarios=DEFAULT_SCENARIO_WEIGHTS, start_us=start, population_start_us=start)
    rate = source.events_per_simulated_second()
    chunks = source.chunks()
    first, second = next(chunks), next(chunks)
    chunks.close()
    assert rate == pytest.approx(len(first.bodies) / (7 * 86_400))
    assert 600 * 0.5 / 86_400 < rate < 600 * 5 / 86_400
    assert (np.diff(first.times_us) >= 0).all() and (np.diff(second.times_us) >= 0).all()
    assert start <= first.times_us[0] and first.times_us[-1] < start + 7 * MICROS_PER_DAY <= second.times_us[0]
    assert (first.first_number, second.first_number) == (0, len(first.bodies))
    assert second.transaction_ids[0] == f"{source.id_prefix}{len(first.bodies):010d}"
    stamped = fast_decode.decode_transactions(contract.add_event_times(first.bodies[:50], first.times_us[:50])).frame
    assert stamped["event_time_us"].tolist() == first.times_us[:50].tolist()


def test_same_seed_hacker_source_attacks_the_normal_sources_population_deterministically() -> None:
    def first(mode: Mode, share: float | None) -> Chunk:
        source = TrafficSource(mode, seed=3, accounts=600, merchants=200, fraud_share=share,
                               scenarios=DEFAULT_SCENARIO_WEIGHTS, start_us=0, population_start_us=0)
        return next(iter(source.chunks()))

    normal, hacker, again = first(Mode.normal, None), first(Mode.hacker, 0.1), first(Mode.hacker, 0.1)
    assert (hacker.scenario_codes != LEGITIMATE).all()
    assert hacker.times_us.tolist() == again.times_us.tolist() and hacker.keys == again.keys
    fraud_per_legit = len(hacker.bodies) / len(normal.bodies)
    assert fraud_per_legit == pytest.approx(0.1 / 0.9, rel=0.25)  # within 3 % at 10,000 accounts


def test_a_live_stream_starts_at_the_midnight_after_the_training_data_else_30_days_into_the_history() -> None:
    midnight = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    assert live_start_us(midnight - 1) == midnight
    assert live_start_us(midnight) == midnight
    assert live_start_us(None) == to_microseconds(DEFAULT_START) + 30 * MICROS_PER_DAY


def test_a_population_whose_week_exceeds_the_window_is_simulated_in_contiguous_windows_in_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    start = 1_767_225_600_000_000
    whole = TrafficSource(Mode.all, seed=3, accounts=600, merchants=200, fraud_share=0.02,
                          scenarios=DEFAULT_SCENARIO_WEIGHTS, start_us=start, population_start_us=start)
    whole_week = whole.events_per_simulated_second() * 7 * 86_400  # simulated as one window
    monkeypatch.setattr(live, "WINDOW_ROWS", 2_000)
    monkeypatch.setattr(live, "CHUNK_ROWS", 700)
    split = TrafficSource(Mode.all, seed=3, accounts=600, merchants=200, fraud_share=0.02,
                          scenarios=DEFAULT_SCENARIO_WEIGHTS, start_us=start, population_start_us=start)
    assert split.windows_per_week > 3
    chunks = split.chunks()
    taken = list(itertools.islice(chunks, 20))
    chunks.close()
    times = np.concatenate([chunk.times_us for chunk in taken])
    assert (np.diff(times) >= 0).all(), "windows follow one another in simulated time"
    assert all(len(chunk.bodies) <= 700 for chunk in taken)
    numbers = np.concatenate([chunk.first_number + np.arange(len(chunk.bodies)) for chunk in taken])
    assert numbers.tolist() == list(range(len(numbers)))
    ids = [transaction_id for chunk in taken for transaction_id in chunk.transaction_ids]
    assert len(set(ids)) == len(ids)
    assert times[-1] >= start + 7 * MICROS_PER_DAY
    assert (times < start + 7 * MICROS_PER_DAY).sum() == pytest.approx(whole_week, rel=0.1), "same volume a week"


def test_auto_accounts_size_the_wall_clock_population_to_the_rate() -> None:
    per_day = 86_400 * 10 / accounts_for_rate(10.0)
    assert 1.2 < per_day < 2.5, "the simulated mean transactions per account and day"
    assert accounts_for_rate(100.0) == pytest.approx(100 * 86_400 / per_day, rel=0.01)
    assert accounts_for_rate(1e6) == live.MAX_AUTO_ACCOUNTS
    assert resolve_accounts(None, Mode.all, 100.0, time_scale=None) == live.DEFAULT_ACCOUNTS
    assert resolve_accounts(None, Mode.hacker, 100.0, time_scale=1.0) == live.DEFAULT_ACCOUNTS
    assert resolve_accounts(None, Mode.normal, None, time_scale=1.0) == live.DEFAULT_ACCOUNTS
    assert resolve_accounts(250, Mode.normal, 100.0, time_scale=1.0) == 250


def test_large_populations_keep_habits_in_float32_and_few_bytes_per_account(monkeypatch: pytest.MonkeyPatch) -> None:
    def per_account() -> float:  # what 600 more accounts add (merchants and cities are the same)
        return (build_population(3, 1_200, 200).nbytes() - build_population(3, 600, 200).nbytes()) / 600

    exact = build_population(3, 600, 200)
    assert per_account() < 135 and exact.amount_log_median.dtype == np.float64
    monkeypatch.setattr(population_module, "EXACT_HABITS_UP_TO", 100)
    compact = build_population(3, 600, 200)
    assert per_account() < 85 and compact.payment_weights.dtype == np.float32
    assert compact.account_ids(np.array([0, 599])).to_pylist() == ["acct-000000", "acct-000599"]
    np.testing.assert_allclose(compact.amount_log_median, exact.amount_log_median, rtol=1e-6)
