"""The time split of a model build: burn-in, train, gap, validation, gap, test.

Timeline of a history (days from its first event)::

    | burn-in | train ............ | gap | validation | gap | test ...... |

Burn-in rows only warm the feature state (their features lack history). The gaps stand for label
delay: a model trained up to day T is only used after its labels and validation are in, so the rows
right after the training period are never evaluated. Validation picks the number of boosting rounds
and the cost thresholds; test is held out for the reported metrics.

Two ways to place the periods. By default they are laid back from the end of the history: test is the
last ``test_days``, and train gets what remains after the burn-in (or only its last ``train_days``).
When the training period is pinned (``train_end``, or ``train_start`` with ``train_days``), validation
and test follow it forward, which is how a backtest of an older window is done. Every period is
half-open, ``[start, end)``, in event time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudstream.events.contract import format_time_us
from fraudstream.model.exceptions import SplitError
from fraudstream.timeunits import MICROS_PER_DAY

PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitConfig:
    """Lengths in days, and optionally a pinned training period (microseconds since the epoch)."""

    burn_in_days: float = 2.0
    gap_days: float = 1.0
    validation_days: float = 4.0
    test_days: float = 6.0
    #: Training length; None: everything between the burn-in and the first gap.
    train_days: float | None = None
    train_start_us: int | None = None
    train_end_us: int | None = None

    def to_dict(self) -> dict[str, object]:
        """For the manifest: lengths in days, pinned times as ISO-8601."""
        return {
            "burn_in_days": self.burn_in_days,
            "gap_days": self.gap_days,
            "validation_days": self.validation_days,
            "test_days": self.test_days,
            "train_days": self.train_days,
            "train_start": None if self.train_start_us is None else format_time_us(self.train_start_us),
            "train_end": None if self.train_end_us is None else format_time_us(self.train_end_us),
        }


def _days(value: float) -> int:
    return round(value * MICROS_PER_DAY)


def check_split(split: SplitConfig) -> None:
    """The checks that need no history (signs, exclusive options), so a command can fail before loading."""
    for option, value, low in (("--gap-days", split.gap_days, 0.0), ("burn-in days", split.burn_in_days, 0.0)):
        if value < low:
            raise SplitError(f"{option} must be 0 or more (got {value:g})")
    for option, value in (("--validation-days", split.validation_days), ("--test-days", split.test_days),
                          ("--train-days", split.train_days)):
        if value is not None and value <= 0:
            raise SplitError(f"{option} must be more than 0 (got {value:g})")
    pinned = [split.train_start_us is not None, split.train_end_us is not None, split.train_days is not None]
    if all(pinned):
        raise SplitError("give --train-start and --train-end, or one of them with --train-days, not all three")
    start, end = split.train_start_us, split.train_end_us
    if start is not None and end is not None and start >= end:
        raise SplitError(f"--train-start ({format_time_us(start)}) must be before --train-end ({format_time_us(end)})")


def split_windows(start_us: int, end_us: int, split: SplitConfig) -> dict[str, tuple[int, int]]:
    """Half-open ``[start, end)`` periods train / validation / test for a history spanning
    ``[start_us, end_us)``; a SplitError names the option to change when they do not fit."""
    check_split(split)
    gap = _days(split.gap_days)
    earliest_train = start_us + _days(split.burn_in_days)
    train_end = split.train_end_us
    if train_end is None and split.train_start_us is not None and split.train_days is not None:
        train_end = split.train_start_us + _days(split.train_days)
    if train_end is None:  # laid back from the end of the history
        test = (end_us - _days(split.test_days), end_us)
        validation = (test[0] - gap - _days(split.validation_days), test[0] - gap)
        train_end = validation[0] - gap
    else:  # the pinned training period, validation and test after it
        validation = (train_end + gap, train_end + gap + _days(split.validation_days))
        test = (validation[1] + gap, validation[1] + gap + _days(split.test_days))
        if test[1] > end_us:
            raise SplitError(
                f"the test period would end at {format_time_us(test[1])}, after the history's last event "
                f"({format_time_us(end_us - 1)}): move --train-end earlier or shorten --validation-days/"
                f"--test-days/--gap-days")
    if split.train_start_us is not None:
        train_start = split.train_start_us
    elif split.train_days is not None:
        train_start = train_end - _days(split.train_days)
    else:
        train_start = earliest_train
    if train_start < earliest_train:
        raise SplitError(
            f"the training period would start at {format_time_us(train_start)}, before the end of the "
            f"{split.burn_in_days:g}-day burn-in ({format_time_us(earliest_train)}; history starts "
            f"{format_time_us(start_us)}): shorten --train-days, move --train-start later, or use a longer history")
    if train_end - train_start < MICROS_PER_DAY:
        days = (end_us - start_us) / MICROS_PER_DAY
        raise SplitError(
            f"the training period {format_time_us(train_start)} → {format_time_us(train_end)} is shorter than a "
            f"day (history spans {days:.1f} days): use a longer history or shorten --validation-days/--test-days/"
            f"--gap-days")
    return {"train": (train_start, train_end), "validation": validation, "test": test}


def split_masks(event_time_us: np.ndarray, split: SplitConfig, end_us: int | None = None,
                span_us: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Boolean masks train / validation / test over rows, by event time. The periods are laid on
    ``span_us`` (the window the history covers, e.g. whole simulated days), else on the rows' own
    first event to just after the last; and back from ``end_us`` (the matured end) when earlier."""
    if event_time_us.size == 0:
        raise SplitError("the history has no transactions")
    first, last = (int(event_time_us.min()), int(event_time_us.max()) + 1) if span_us is None else span_us
    windows = split_windows(first, last if end_us is None else min(end_us, last), split)
    return {part: (event_time_us >= low) & (event_time_us < high) for part, (low, high) in windows.items()}


def minimum_history_days(split: SplitConfig) -> float:
    """The shortest history the split fits in when laid back from its end: burn-in, a day (or
    ``train_days``) of training, the gaps, validation and test."""
    return (split.burn_in_days + (split.train_days or 1.0) + 2 * split.gap_days + split.validation_days
            + split.test_days)


def check_simulated_days(days: float, split: SplitConfig) -> None:
    """Refuse a simulation too short for the split before spending minutes on it."""
    if split.train_start_us is None and split.train_end_us is None and days < minimum_history_days(split):
        raise SplitError(
            f"--days {days:g} is too short for the split: it needs at least {minimum_history_days(split):g} days "
            f"(burn-in {split.burn_in_days:g} + training {split.train_days or 1:g} + gap {split.gap_days:g} + "
            f"validation {split.validation_days:g} + gap {split.gap_days:g} + test {split.test_days:g}): "
            "raise --days or shorten --validation-days/--test-days/--gap-days")
