"""Forgetting a consumer group's checkpoints removes its offsets and snapshots, and nobody else's."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from fraudstream.store import writer
from fraudstream.store.groups import forget_consumer_group

pytestmark = pytest.mark.integration


def test_forget_consumer_group_deletes_only_that_groups_checkpoints(database: psycopg.Connection) -> None:
    done, kept = f"done-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    with database.transaction():
        for group in (done, kept):
            writer.advance_offsets(database, group, "topic-a", {0: 10, 1: 20})
            writer.save_snapshot(database, group, "topic-a", 0, next_offset=10, state=b"state",
                                 feature_code_version="test", label_offsets={})

    assert forget_consumer_group(database, done) == 3

    assert writer.load_checkpoint(database, done, "topic-a", 0).committed_offset is None
    assert writer.load_checkpoint(database, done, "topic-a", 0).snapshot_offset is None
    assert writer.load_checkpoint(database, kept, "topic-a", 1).committed_offset == 20
    assert writer.load_checkpoint(database, kept, "topic-a", 0).snapshot_offset == 10
    forget_consumer_group(database, kept)
