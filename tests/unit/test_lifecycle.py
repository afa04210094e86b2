"""The retrain schedule's interval and clock options."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.config import get_settings
from fraudstream.lifecycle import due_times, parse_every
from fraudstream.model.registry import Registry
from fraudstream.testing.example_model import publish_example_model

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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def test_the_wall_clock_waits_the_interval_between_runs(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = get_settings().model_copy(update={"state_dir": tmp_path})
    due = due_times(settings, 6 * 3_600_000_000, "wall", None, 2_500.0, clock.sleep, clock.monotonic)
    assert [next(due), next(due)] == [None, None]
    assert clock.slept == [2_500.0] * 8 + [1_600.0]  # six hours in polls of the request file


def test_a_retraining_request_makes_a_wall_clock_run_due_at_once(tmp_path: Path) -> None:
    settings = get_settings().model_copy(update={"state_dir": tmp_path})
    version = publish_example_model(settings.models_dir)
    registry = Registry(settings.models_dir)
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.slept) == 3:  # an engine sees drift while the schedule waits
            registry.request_retrain(version, "drift")

    due = due_times(settings, 6 * 3_600_000_000, "wall", None, 60.0, sleep, clock.monotonic)
    assert [next(due), next(due)] == [None, None]
    assert clock.slept == [60.0, 60.0, 60.0]  # the second run came after three polls, not six hours
