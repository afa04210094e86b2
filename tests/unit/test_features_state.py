"""FeatureState contract: shape of the output, snapshot/restore determinism, bounded memory."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from frames import ORIGIN_US, labels, transactions
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fraudstream.features import FEATURE_NAMES, FeatureConfig, FeatureState, MissingColumnsError, StateFormatError

pytestmark = pytest.mark.unit
DAY = 86_400


def stream(size: int = 200, seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, 4 * DAY, size))
    events = transactions(
        [
            {
                "seconds": float(s),
                "account_id": f"a{rng.integers(6)}",
                "merchant_id": f"m{rng.integers(4)}",
                "amount": float(rng.integers(100, 50_000)) / 100,
                "device_id": f"d{rng.integers(3)}",
            }
            for s in seconds
        ]
    )
    fraud = rng.random(size) < 0.2
    feedback = labels(
        [
            {
                "transaction_id": events["transaction_id"][i],
                "merchant_id": events["merchant_id"][i],
                "is_fraud": bool(fraud[i]),
                "seconds": float(seconds[i] + DAY),
            }
            for i in range(size)
        ]
    )
    return events, feedback


def test_output_has_feature_names_and_is_late_with_the_batch_index() -> None:
    batch = transactions([{"seconds": 0}, {"seconds": 1}]).set_axis([7, 3])
    frame = FeatureState().process(batch)
    assert list(frame.columns) == [*FEATURE_NAMES, "is_late"]
    assert list(frame.index) == [7, 3]
    assert frame["is_late"].dtype == bool


def test_empty_batch_and_missing_columns() -> None:
    empty = FeatureState().process(transactions([]))
    assert list(empty.columns) == [*FEATURE_NAMES, "is_late"] and len(empty) == 0
    with pytest.raises(MissingColumnsError, match="device_id"):
        FeatureState().process(transactions([{"seconds": 0}]).drop(columns="device_id"))


def test_restore_then_replay_equals_an_uninterrupted_run() -> None:
    events, feedback = stream()
    uninterrupted = FeatureState()
    uninterrupted.apply_labels(feedback)
    expected = pd.concat([uninterrupted.process(events.iloc[i : i + 37]) for i in range(0, len(events), 37)])

    first = FeatureState()
    first.apply_labels(feedback)  # labels still pending at the snapshot must survive it
    parts = [first.process(events.iloc[i : i + 37]) for i in range(0, 111, 37)]
    restored = FeatureState.restore(first.snapshot())
    parts += [restored.process(events.iloc[i : i + 37]) for i in range(111, len(events), 37)]
    pd.testing.assert_frame_equal(pd.concat(parts), expected, check_exact=True)
    assert restored.stats() == uninterrupted.stats()


def test_snapshot_is_plain_arrays_and_bad_blobs_are_refused() -> None:
    state = FeatureState(FeatureConfig(allowed_lateness_s=60))
    state.process(stream(20)[0])
    blob = state.snapshot()
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:  # would raise on object arrays
        assert "account.keys" in archive.files
    assert FeatureState.restore(blob).config.allowed_lateness_s == 60
    with pytest.raises(StateFormatError):
        FeatureState.restore(b"not a snapshot")


def busy_and_quiet_days(days: int, seed: int) -> pd.DataFrame:
    """Merchants alternating busy days (10-40 events) and quiet ones (0-2), ten new merchants a day."""
    rng = np.random.default_rng(seed)
    seconds: list[float] = []
    merchants: list[str] = []
    for day in range(days):
        for number in range(20 + 10 * day):
            count = rng.integers(10, 40) if rng.random() < 0.5 else rng.integers(0, 3)
            seconds += list(day * DAY + rng.uniform(8, 20, count) * 3_600)
            merchants += [f"m{number}"] * count
    order = np.argsort(seconds, kind="stable")
    return transactions(
        {"seconds": float(seconds[i]), "merchant_id": merchants[i], "account_id": f"a{i % 97}"} for i in order
    )


@pytest.mark.parametrize("sizes", [[250], [500], [1_000], [37, 401, 5], [2_000, 2_000, "restore"]])
def test_batch_cuttings_give_identical_features_with_the_default_config(sizes: list) -> None:
    """The local engine's restart test failed on a few merchant counts: a merchant whose 24h table
    shrank overnight regrew, within its old arena block, in the very batch whose other moves compacted
    the arena; compaction sized its block for the old rows and the new ones overran the next merchant's
    events. Bulk, mixed cuttings and restores must all give the same features."""
    events = busy_and_quiet_days(6, seed=2)
    expected = FeatureState().process(events)
    state, parts, start, turn = FeatureState(), [], 0, 0
    while start < len(events):
        size = sizes[turn % len(sizes)]
        turn += 1
        if size == "restore":
            state = FeatureState.restore(state.snapshot())
            continue
        parts.append(state.process(events.iloc[start : start + size]))
        start += size
    pd.testing.assert_frame_equal(pd.concat(parts), expected, check_exact=True)


def test_idle_keys_are_evicted_and_memory_is_reported() -> None:
    state = FeatureState(FeatureConfig(account_ttl_s=DAY, merchant_ttl_s=DAY))
    state.process(transactions([{"seconds": 0, "account_id": "old", "merchant_id": "old"}]))
    assert state.bytes_per_account() > 0
    state.process(transactions([{"seconds": 2 * DAY + number, "account_id": "new", "merchant_id": "new"}
                                for number in range(3)]))  # three events agree the clock has moved
    stats = state.stats()
    assert (stats.accounts, stats.merchants, stats.evicted_accounts, stats.evicted_merchants) == (1, 1, 1, 1)


def test_labels_for_a_merchant_without_events_survive_the_idle_sweep() -> None:
    state = FeatureState()
    state.apply_labels(labels([{"transaction_id": "old", "merchant_id": "m2", "seconds": 0}]))
    state.process(transactions([{"seconds": 10, "merchant_id": "m1"}]))
    state.process(transactions([{"seconds": 3 * 3_600 + n, "merchant_id": "m1", "transaction_id": f"t2-{n}"}
                                for n in range(3)]))  # sweeps
    assert state.stats().evicted_merchants == 0
    later = state.process(transactions([{"seconds": 4 * 3_600, "merchant_id": "m2", "transaction_id": "t3"}]))
    assert later["merchant_label_count"].tolist() == [1.0]


@pytest.mark.parametrize("size", [3, 40, 250])
def test_micro_batches_equal_one_bulk_batch(size: int) -> None:
    """What the local engine does (small batches, a restart in the middle) gives the training
    replay's features bit for bit, TTLs, eviction and label folding included. (Caps on retained
    history are the documented exception: a bulk batch sees all of itself.)

    Merchants have busy and quiet days (four busy ones a day take most events): their tables grow,
    shrink and regrow across batches while the arenas grow and compact. With merchants evenly spread
    (two events a day each), every table stayed within the smallest block and this test could not see
    a block overrun in a compaction."""
    rng = np.random.default_rng(size)
    count = 1_500
    seconds = np.sort(rng.uniform(0, 12 * DAY, count))  # in order: an out-of-order event's window
    # depends, by definition, on whether its successors were processed before it (a batch earlier)
    busy = rng.integers(5, 25, size=(12, 4))

    def merchant(s: float) -> str:
        if s < 3 * DAY and rng.random() < 0.3:
            return f"m{rng.integers(5)}"  # m0-m4 go idle
        return f"m{busy[int(s // DAY), rng.integers(4)] if rng.random() < 0.8 else rng.integers(5, 25)}"

    events = transactions(
        [
            {
                "seconds": float(s),
                "account_id": f"a{rng.integers(40) if s < 3 * DAY else rng.integers(10, 40)}",  # a0-a9 go idle
                "merchant_id": merchant(s),
                "device_id": f"d{rng.integers(8)}",
                "country": ["US", "FR", "DE", "JP"][rng.integers(4)],
                "payment_method": ["credit_card", "debit_card", "paypal"][rng.integers(3)],
                "amount": float(rng.integers(100, 90_000)) / 100,
                "latitude": float(rng.uniform(-60, 60)),
                "longitude": float(rng.uniform(-170, 170)),
            }
            for s in seconds
        ]
    )
    feedback = labels(
        [
            {"transaction_id": events["transaction_id"][i], "merchant_id": events["merchant_id"][i],
             "is_fraud": bool(rng.random() < 0.2), "seconds": float(seconds[i] + rng.uniform(0.5, 9) * DAY)}
            for i in range(0, count, 2)
        ]
    )
    config = FeatureConfig(account_ttl_s=8 * DAY, merchant_ttl_s=8 * DAY, merchant_fraud_window_s=2 * DAY)
    bulk = FeatureState(config)
    bulk.apply_labels(feedback)
    expected = bulk.process(events)

    state = FeatureState(config)
    state.apply_labels(feedback)
    parts = []
    for start in range(0, count, size):
        if start == (count // 2) // size * size:
            state = FeatureState.restore(state.snapshot())
        parts.append(state.process(events.iloc[start : start + size]))
    pd.testing.assert_frame_equal(pd.concat(parts), expected, check_exact=True)
    stats = state.stats()
    assert stats.evicted_accounts > 0 and stats.evicted_merchants > 0 and expected["merchant_fraud_count_48h"].max() > 0


def test_an_event_dated_decades_ahead_wipes_no_account() -> None:
    """Defect: one event from a producer whose clock was decades ahead moved the state's clock, the next
    sweep evicted every account as idle (a long history scored as a first transaction) and scheduled the
    next sweep decades ahead. The clock now needs CLOCK_QUORUM events to move."""
    state = FeatureState()
    state.process(transactions([{"seconds": 0, "transaction_id": "t1"}, {"seconds": 60, "transaction_id": "t2"}]))
    state.process(transactions([{"seconds": 70 * 365 * DAY, "account_id": "wrong-clock", "merchant_id": "m9",
                                 "transaction_id": "t3"}]))
    later = state.process(transactions([{"seconds": 120, "transaction_id": "t4"}]))
    assert later["account_transaction_count_24h"].tolist() == [3.0]
    assert later["merchant_transaction_count_24h"].tolist() == [3.0]
    assert state.stats().evicted_accounts == 0
    assert state.clock.next_sweep_us < ORIGIN_US + DAY * 1_000_000  # eviction still runs on the real clock


def test_the_clock_survives_a_snapshot() -> None:
    state = FeatureState()
    state.process(transactions([{"seconds": s, "transaction_id": f"t{s}"} for s in (0, 10, 20, 30)]))
    restored = FeatureState.restore(state.snapshot())
    assert restored.clock == state.clock and state.clock.now_us == ORIGIN_US + 10 * 1_000_000


@settings(max_examples=15, deadline=None)
@given(position=st.integers(0, 200),
       seconds=st.one_of(st.integers(5 * DAY, 73 * 365 * DAY), st.integers(-26 * 365 * DAY, 5 * DAY)),
       batch=st.sampled_from([1, 7, 50]))
@example(position=100, seconds=70 * 365 * DAY, batch=7)
def test_no_single_event_changes_the_features_of_other_accounts(position: int, seconds: int, batch: int) -> None:
    """Whatever its time (2000..2100), one event of an account and a merchant of its own changes no other
    event's features (eviction included, which may only drop keys that would start fresh anyway)."""
    events, _ = stream(200, seed=5)
    stranger = transactions([{"seconds": seconds, "account_id": "stranger", "merchant_id": "stranger",
                              "transaction_id": "stranger"}])
    mixed = pd.concat([events.iloc[:position], stranger, events.iloc[position:]], ignore_index=True)
    config = FeatureConfig(account_ttl_s=DAY, merchant_ttl_s=DAY)  # short TTLs: sweeps evict for real

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        state = FeatureState(config)
        return pd.concat([state.process(frame.iloc[start:start + batch]) for start in range(0, len(frame), batch)])

    expected = features(events).reset_index(drop=True)
    got = features(mixed)
    got = got[mixed["transaction_id"].to_numpy() != "stranger"].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_a_format_1_snapshot_restores_to_the_same_state_as_this_code_runs() -> None:
    """Format 1 kept every label until the fraud window + lateness (no seen table): restored, the next batches
    fold what this code folds, so features and deduplication go on exactly as an uninterrupted run."""
    import orjson

    from fraudstream.features import merchant

    class FormatOneMerchants(merchant.MerchantFeatures):
        def _fold_horizon_us(self, is_fraud: np.ndarray) -> np.ndarray:
            return np.full(is_fraud.shape, self._dedup_horizon_us())

    events, feedback = stream(400)
    uninterrupted = FeatureState()
    old = FeatureState()
    old.merchants = FormatOneMerchants(old.config)
    for state in (uninterrupted, old):
        state.apply_labels(feedback.iloc[:150])
        state.process(events.iloc[:200])
    with np.load(io.BytesIO(old.snapshot()), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files if not name.startswith("merchant.seen")}
    meta = {**orjson.loads(arrays.pop("meta").tobytes()), "format": 1}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(orjson.dumps(meta), dtype=np.uint8), **arrays)
    restored = FeatureState.restore(buffer.getvalue())
    for state in (uninterrupted, restored):
        state.apply_labels(feedback.iloc[100:])  # a third of them duplicates
    pd.testing.assert_frame_equal(restored.process(events.iloc[200:]), uninterrupted.process(events.iloc[200:]),
                                  check_exact=True)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(orjson.dumps({**meta, "format": 0}), dtype=np.uint8), **arrays)
    with pytest.raises(StateFormatError, match="snapshot format 0"):
        FeatureState.restore(buffer.getvalue())
