"""The Spark engine's grouping keys: one Kafka partition per stateful task, as Spark's hash partitioning
places them (Murmur3 values checked against Spark 4.2's ``hash(CAST(x AS BIGINT))``)."""

from __future__ import annotations

import pytest

from fraudstream.engines.spark_state import spark_hash_long, state_keys

#: SELECT hash(CAST(x AS BIGINT)) on Spark 4.2 for these x.
SPARK_HASHES = {0: -1670924195, 1: -1712319331, 2: -797927272, 3: 519220707, 4: 1344313940, 5: 1607884268}


def test_hash_is_sparks_murmur3_of_a_long() -> None:
    assert {value: spark_hash_long(value) for value in SPARK_HASHES} == SPARK_HASHES


@pytest.mark.parametrize(("partitions", "shuffle_partitions"), [(6, 6), (6, 2), (6, 3), (12, 6), (3, 6), (1, 1)])
def test_each_partition_lands_on_its_own_task_and_tasks_share_evenly(partitions: int, shuffle_partitions: int) -> None:
    keys = state_keys(partitions, shuffle_partitions)
    assert len(set(keys)) == partitions
    tasks = [spark_hash_long(key) % shuffle_partitions for key in keys]
    assert tasks == [partition % shuffle_partitions for partition in range(partitions)]


def test_partition_numbers_as_keys_would_be_skewed() -> None:
    """Why the keys are chosen: the partition number itself puts three of six partitions on one task."""
    tasks = [spark_hash_long(partition) % 6 for partition in range(6)]
    assert max(tasks.count(task) for task in set(tasks)) >= 3
