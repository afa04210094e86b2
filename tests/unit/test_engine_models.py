"""ModelHolder: a promoted model is loaded in the background and switched to at a boundary; a broken one
is refused while the engine keeps its model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fraudstream.engines.models import ModelHolder
from fraudstream.model.registry import MODEL_FILE, Registry
from fraudstream.testing.example_model import publish_example_model

pytestmark = pytest.mark.unit


def refresh_until(holder: ModelHolder, limit_s: float = 60.0) -> list[bool]:
    """Results of refresh() until the background load finished and was acted on."""
    results = [holder.refresh()]
    deadline = time.monotonic() + limit_s
    while holder._loading is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        results.append(holder.refresh())
    return results


def test_promotion_switches_once_loaded_and_a_broken_model_is_refused(tmp_path: Path) -> None:
    first = publish_example_model(tmp_path, seed=1)
    holder = ModelHolder(tmp_path, poll_interval_s=0.0)
    assert holder.version == first and holder.refresh() is False

    second = publish_example_model(tmp_path, seed=2)
    results = refresh_until(holder)
    assert results[0] is False  # the first boundary only starts the load
    assert results[-1] is True and results.count(True) == 1
    assert holder.version == second

    broken = publish_example_model(tmp_path, seed=3)  # promotion verifies it: damaged afterwards
    with (tmp_path / broken / MODEL_FILE).open("a") as handle:
        handle.write("\n")
    assert True not in refresh_until(holder)
    assert holder.version == second
    assert holder.refresh() is False and holder._loading is None  # refused once, not retried every batch


def test_a_rollback_switches_a_running_engine_back_at_its_next_batch(tmp_path: Path) -> None:
    first = publish_example_model(tmp_path, seed=1)
    second = publish_example_model(tmp_path, seed=2)
    holder = ModelHolder(tmp_path, poll_interval_s=0.0)
    assert holder.version == second
    assert Registry(tmp_path).rollback() == (second, first)
    assert refresh_until(holder)[-1] is True
    assert holder.version == first


def test_a_shadow_model_is_loaded_beside_production_and_dropped_when_cleared_or_promoted(tmp_path: Path) -> None:
    production = publish_example_model(tmp_path, seed=1)
    challenger = publish_example_model(tmp_path, seed=2, promote=False)
    registry = Registry(tmp_path)
    holder = ModelHolder(tmp_path, poll_interval_s=0.0)
    assert holder.shadow is None and holder.refresh() is False

    registry.set_shadow(challenger)
    assert refresh_until_shadow(holder)[-1] is True
    assert holder.shadow_version == challenger and holder.version == production

    registry.clear_shadow()
    assert holder.refresh() is True and holder.shadow is None

    registry.set_shadow(challenger)
    refresh_until_shadow(holder)
    registry.promote(challenger)  # the challenger wins: it is production now, nothing in shadow
    refresh_until(holder)
    assert holder.version == challenger and holder.shadow is None


def refresh_until_shadow(holder: ModelHolder, limit_s: float = 60.0) -> list[bool]:
    results = [holder.refresh()]
    deadline = time.monotonic() + limit_s
    while holder._shadow_loading is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        results.append(holder.refresh())
    return results
