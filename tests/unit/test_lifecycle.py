"""The retrain schedule's interval and clock options."""

from __future__ import annotations

import pytest

from fraudstream.config import get_settings
from fraudstream.lifecycle import due_times, parse_every

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "micros"), [("90s", 90_000_000), ("30m", 1_800_000_000),
                                              ("6h", 21_600_000_000), ("1.5d", 129_600_000_000)])
def test_intervals(text: str, micros: int) -> None:
    assert parse_every(text) == micros


@pytest.mark.parametrize("text", ["6", "h", "0h", "-1h", "6w", "six hours"])
def test_a_bad_interval_names_the_option_and_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"--every .*unit s, m, h or d"):
        parse_every(text)


def test_an_unknown_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="--clock must be one of wall, event-time"):
        next(due_times(get_settings(), 1, "simulated", None, 1.0))


def test_the_wall_clock_waits_the_interval_between_runs() -> None:
    slept: list[float] = []
    due = due_times(get_settings(), 6 * 3_600_000_000, "wall", None, 1.0, sleep=slept.append)
    assert [next(due), next(due)] == [None, None]
    assert len(slept) == 1 and 6 * 3600 - 1 < slept[0] <= 6 * 3600
