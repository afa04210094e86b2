"""Promoting a model switches a running processor at a batch boundary, without a restart."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from local_engine_harness import new_run, private_model_state, stop, stream, wait_for_rows

from fraudstream.config import Settings
from fraudstream.model.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_promoted_model_is_used_by_the_running_processor(
    postgres_ready: Settings, database: psycopg.Connection, tmp_path: Path
) -> None:
    state = private_model_state(postgres_ready, tmp_path / "state")
    registry = Registry(state / "models")
    before = registry.production_version()
    artifact = registry.load(before)
    after = registry.publish(artifact.booster, artifact.manifest)

    run = new_run(postgres_ready, state, tmp_path / "logs")
    prefix = f"reload-{run.group}-"
    events = stream(4_000, prefix)
    processor = run.start("reload")
    run.publish(events.iloc[:2_000])
    assert wait_for_rows(database, prefix, 2_000, 120, (processor,)) == 2_000
    registry.promote(after)
    run.wait_for_log("reload", f"model switched from={before} to={after}", 1, processor)
    run.publish(events.iloc[2_000:])
    assert wait_for_rows(database, prefix, 4_000, 120, (processor,)) == 4_000
    assert stop(processor) == 0

    versions = dict(database.execute(
        "SELECT transaction_id, model_version FROM transactions WHERE transaction_id LIKE %s",
        (prefix + "%",)).fetchall())
    first, second = events["transaction_id"].iloc[:2_000], events["transaction_id"].iloc[2_000:]
    assert {versions[t] for t in first} == {before}
    assert {versions[t] for t in second} == {after}
    assert run.log_text("reload").count("engine started") == 1
