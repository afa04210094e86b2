"""Split options of `fraudstream train`: where each period lands, edges, overlaps, and errors that name the option."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.model.exceptions import SplitError
from fraudstream.model.split import (
    SplitConfig,
    check_simulated_days,
    minimum_history_days,
    split_masks,
    split_windows,
)
from fraudstream.timeunits import MICROS_PER_DAY

pytestmark = pytest.mark.unit
DAY = MICROS_PER_DAY
#: A history of 30 days, [0, 30 days).
START, END = 0, 30 * DAY


def _days(windows: dict[str, tuple[int, int]]) -> dict[str, tuple[float, float]]:
    return {part: (low / DAY, high / DAY) for part, (low, high) in windows.items()}


def test_default_lays_the_periods_back_from_the_end_of_the_history() -> None:
    windows = split_windows(START, END, SplitConfig(burn_in_days=2, gap_days=1, validation_days=4, test_days=6))
    assert _days(windows) == {"train": (2, 18), "validation": (19, 23), "test": (24, 30)}


def test_train_days_keeps_only_the_last_days_before_the_gap() -> None:
    windows = split_windows(START, END, SplitConfig(gap_days=2, validation_days=3, test_days=5, train_days=7))
    assert _days(windows) == {"train": (11, 18), "validation": (20, 23), "test": (25, 30)}


def test_a_pinned_training_period_is_followed_by_validation_and_test() -> None:
    split = SplitConfig(gap_days=1, validation_days=2, test_days=3, train_start_us=3 * DAY, train_end_us=10 * DAY)
    assert _days(split_windows(START, END, split)) == {"train": (3, 10), "validation": (11, 13), "test": (14, 17)}
    by_days = SplitConfig(gap_days=1, validation_days=2, test_days=3, train_start_us=3 * DAY, train_days=7)
    assert split_windows(START, END, by_days) == split_windows(START, END, split)
    from_end = SplitConfig(gap_days=1, validation_days=2, test_days=3, train_end_us=10 * DAY, train_days=7)
    assert split_windows(START, END, from_end) == split_windows(START, END, split)
    only_end = SplitConfig(burn_in_days=2, gap_days=1, validation_days=2, test_days=3, train_end_us=10 * DAY)
    assert _days(split_windows(START, END, only_end))["train"] == (2, 10)


def test_a_pinned_start_alone_trains_up_to_the_first_gap() -> None:
    split = SplitConfig(gap_days=1, validation_days=4, test_days=6, train_start_us=5 * DAY)
    assert _days(split_windows(START, END, split))["train"] == (5, 18)


def test_masks_are_half_open_and_never_overlap_even_without_a_gap() -> None:
    times = np.arange(0, END, DAY // 4)
    masks = split_masks(times, SplitConfig(burn_in_days=2, gap_days=0, validation_days=4, test_days=6))
    assert not (masks["train"] & masks["validation"]).any() and not (masks["validation"] & masks["test"]).any()
    assert times[masks["train"]].max() == times[masks["validation"]].min() - DAY // 4
    assert times[masks["validation"]].max() == times[masks["test"]].min() - DAY // 4
    assert times[masks["train"]].min() == 2 * DAY
    assert times[masks["test"]].max() == times.max()


def test_the_gap_separates_the_periods() -> None:
    times = np.arange(0, END, DAY // 4)
    masks = split_masks(times, SplitConfig(burn_in_days=2, gap_days=1, validation_days=4, test_days=6))
    assert times[masks["validation"]].min() - times[masks["train"]].max() == DAY + DAY // 4
    assert times[masks["test"]].min() - times[masks["validation"]].max() == DAY + DAY // 4


@pytest.mark.parametrize(("split", "names"), [
    (SplitConfig(gap_days=-1), "--gap-days"),
    (SplitConfig(validation_days=0), "--validation-days"),
    (SplitConfig(test_days=-2), "--test-days"),
    (SplitConfig(train_days=0), "--train-days"),
    (SplitConfig(train_start_us=DAY * 3, train_end_us=DAY * 9, train_days=6), "not all three"),
    (SplitConfig(train_start_us=DAY * 9, train_end_us=DAY * 3), "--train-start .* must be before --train-end"),
    (SplitConfig(train_start_us=DAY, train_end_us=DAY * 9), "burn-in.*--train-start"),
    (SplitConfig(train_days=25), "burn-in.*--train-days"),
    (SplitConfig(train_end_us=DAY * 25), "after the history's last event.*--train-end"),
    (SplitConfig(validation_days=11, test_days=15), "shorter than a day.*--test-days"),
], ids=["negative gap", "no validation", "negative test", "no train", "all three", "start after end",
        "start in burn-in", "too many train days", "test past the end", "too short"])
def test_split_errors_name_what_to_fix(split: SplitConfig, names: str) -> None:
    with pytest.raises(SplitError, match=names):
        split_windows(START, END, split)


def test_an_empty_history_is_refused() -> None:
    with pytest.raises(SplitError, match="no transactions"):
        split_masks(np.zeros(0, dtype=np.int64), SplitConfig())


def test_manifest_form_of_the_split_names_pinned_times() -> None:
    split = SplitConfig(train_start_us=3 * DAY, train_days=7)
    recorded = split.to_dict()
    assert recorded["train_start"] == "1970-01-04T00:00:00.000000Z" and recorded["train_end"] is None
    assert recorded["train_days"] == 7


def test_a_history_of_whole_days_is_split_on_its_days_not_its_first_and_last_events() -> None:
    """`train --days 15` with the default split: the simulation covers 15 whole days, but its first event
    comes after midnight and its last before the end; laid on the events, training was under a day."""
    span = (0, 15 * DAY)
    times = np.arange(span[0] + 60_000_000, span[1] - 60_000_000, DAY // 96)
    with pytest.raises(SplitError, match="shorter than a day"):
        split_masks(times, SplitConfig())
    masks = split_masks(times, SplitConfig(), span_us=span)
    assert 2 * DAY <= times[masks["train"]].min() < times[masks["train"]].max() < 3 * DAY
    assert times[masks["test"]].max() == times.max()


def test_a_simulation_shorter_than_the_split_is_refused_before_it_runs() -> None:
    assert minimum_history_days(SplitConfig()) == 15
    with pytest.raises(SplitError, match=r"--days 14 is too short.*at least 15 days"):
        check_simulated_days(14, SplitConfig())
    check_simulated_days(15, SplitConfig())
    check_simulated_days(3, SplitConfig(train_start_us=0, train_days=1))  # pinned: checked against the history
