"""Two `process` members in one group share the partitions; on a rebalance the new owner restores the
partition's feature state from its snapshot, so the scores equal those of a single member."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from local_engine_harness import model_state_dir, new_run, scored, stop, stream, wait_for_rows

from fraudstream.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

EVENTS = 30_000
ASSIGNED = re.compile(r"partition assigned topic=\S+ partition=(\d+) resume_offset=(\S+)")


def test_second_member_takes_partitions_and_restores_their_state(
    postgres_ready: Settings, database: psycopg.Connection, tmp_path: Path
) -> None:
    models = model_state_dir(postgres_ready)
    events = stream(EVENTS, prefix="")
    half = EVENTS // 2

    alone = new_run(postgres_ready, models, tmp_path / "logs")
    alone_prefix = f"alone-{alone.group}-"
    alone.publish(events.assign(transaction_id=alone_prefix + events["transaction_id"]))
    single = alone.start("single")
    assert wait_for_rows(database, alone_prefix, EVENTS, 300, (single,)) == EVENTS
    assert stop(single) == 0

    shared = new_run(postgres_ready, models, tmp_path / "logs")
    prefix = f"shared-{shared.group}-"
    labelled = events.assign(transaction_id=prefix + events["transaction_id"])
    first = shared.start("first", "--snapshot-interval-s", "0.5")
    shared.publish(labelled.iloc[:half])
    assert wait_for_rows(database, prefix, half, 300, (first,)) == half
    second = shared.start("second", "--snapshot-interval-s", "0.5")
    shared.wait_until_assigned(second, members=2)
    shared.publish(labelled.iloc[half:])
    assert wait_for_rows(database, prefix, EVENTS, 300, (first, second)) == EVENTS
    assert stop(second) == 0 and stop(first) == 0

    taken = ASSIGNED.findall(shared.log_text("second"))
    kept = ASSIGNED.findall(shared.log_text("first"))[6:]  # after its first, whole assignment
    assert 0 < len({p for p, _ in taken}) < 6 and kept, f"the group did not share the partitions: {taken}"
    assert all(offset != "None" for _, offset in taken), f"new owner started without state: {taken}"
    assert {p for p, _ in taken} | {p for p, _ in kept} == {str(p) for p in range(6)}

    single_rows, shared_rows = scored(database, alone_prefix), scored(database, prefix)
    assert len(shared_rows) == EVENTS == shared_rows.index.nunique()
    assert (shared_rows["score"] == single_rows["score"]).all()
    assert (shared_rows["features"] == single_rows["features"]).all()
