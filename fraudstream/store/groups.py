"""A consumer group's engine checkpoints as a whole: forgetting a group that will not run again."""

from __future__ import annotations

import psycopg

#: The tables where an engine keeps a group's progress, per topic and partition.
CHECKPOINT_TABLES = ("engine_state_snapshots", "engine_offsets")


def forget_consumer_group(connection: psycopg.Connection, group: str) -> int:
    """Delete ``group``'s checkpoints (offsets and feature-state snapshots, every topic and partition) in one
    transaction; returns the rows deleted.

    For groups made for one run (each demo run, each bench scenario): their snapshots would otherwise stay
    forever, a few MB per run. Rows already scored stay. A member of the group started afterwards begins
    from scratch like a new group, so never call this while one of its members runs."""
    deleted = 0
    with connection.transaction():
        for table in CHECKPOINT_TABLES:
            deleted += connection.execute(f"DELETE FROM {table} WHERE consumer_group = %s", (group,)).rowcount
    return deleted
